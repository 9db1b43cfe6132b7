"""The agent's side of self-update: install a new target and ask the launcher to switch,
never retry a release that failed its trial, report each step, and commit a trial only
once attested and with a report accepted."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import envelope, pki
from controller.domain.agent_releases import inspect_bundle
from node_agent.config_verifier import ConfigVerifier
from node_agent.self_update.state import LauncherState, Outcome, Paths, read_marker
from node_agent.self_update.updater import SelfUpdater
from protocol.agent_bundle import PACKAGES
from protocol.agent_bundle import build as build_bundle
from protocol.desired_state import AgentManifest, AgentTarget, DesiredState, NodeSettings
from tests.unit.test_agent_release import FakeClient

REPO = Path(__file__).parents[2]
NODE = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def pki_pair() -> tuple[pki.Identity, pki.Identity]:
    root = pki.make_ca("root")
    return root, pki.issue_cert(root, "signing", usage=ExtendedKeyUsageOID.CODE_SIGNING)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, pki_pair) -> tuple[AgentTarget, bytes]:  # type: ignore[no-untyped-def]
    src = tmp_path_factory.mktemp("src")
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    tarball = build_bundle("3.0.0", tmp_path_factory.mktemp("rel") / "a.tgz", src)
    data = tarball.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    manifest = AgentManifest(
        version="3.0.0",
        sha256=sha,
        size=len(data),
        code_digest=inspect_bundle(tarball)[1],
        created=0,
    )
    target = AgentTarget(
        version="3.0.0",
        image={"sha256": sha, "size": len(data), "url": f"https://c/{sha}"},
        manifest=envelope.seal(manifest.model_dump(mode="json"), pki_pair[1]),
    )
    return target, data


def _desired(target: AgentTarget | None) -> DesiredState:
    return DesiredState(node_uuid=NODE, generation=1, settings=NodeSettings(agent=target))


def _updater(tmp_path: Path, pki_pair, blobs: dict[str, bytes], trial: bool = False) -> SelfUpdater:  # type: ignore[no-untyped-def]
    root, signer = pki_pair
    verifier = ConfigVerifier(root.cert, [signer.cert])
    return SelfUpdater(
        Paths(tmp_path / "agent"), FakeClient(blobs), verifier, running="0.1.0", trial=trial
    )  # type: ignore[arg-type]


def _settle(updater: SelfUpdater) -> None:
    deadline = time.monotonic() + 30
    while updater._worker is not None and updater._worker.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_new_target_is_installed_and_the_launcher_asked_to_switch(tmp_path, pki_pair, release):  # type: ignore[no-untyped-def]
    target, data = release
    updater = _updater(tmp_path, pki_pair, {target.image.url: data})
    updater.consider(_desired(target))
    _settle(updater)
    status = updater.status()
    assert status is not None and (status.version, status.state) == ("3.0.0", "installed")
    marker = read_marker(updater.paths.pending)
    assert marker is not None and marker.version == "3.0.0"


def test_the_running_version_as_target_changes_nothing(tmp_path, pki_pair, release):  # type: ignore[no-untyped-def]
    target, _ = release
    updater = _updater(tmp_path, pki_pair, {})
    updater.running = "3.0.0"
    updater.consider(_desired(target))
    assert updater._worker is None and updater.status() is None


def test_a_release_that_failed_its_trial_is_reported_and_not_installed_again(
    tmp_path, pki_pair, release
):  # type: ignore[no-untyped-def]
    target, _ = release
    paths = Paths(tmp_path / "agent")
    paths.save(
        LauncherState(
            failed=["3.0.0"],
            last=Outcome(
                version="3.0.0", result="failed", reason="did not commit within 600 s", at=1
            ),
        )
    )
    updater = _updater(tmp_path, pki_pair, {})  # any download would fail
    status = updater.status()
    assert status is not None and (status.state, status.reason) == (
        "failed",
        "did not commit within 600 s",
    )
    updater.consider(_desired(target))
    assert updater._worker is None
    assert not paths.pending.exists()


def test_a_download_failure_is_reported_and_retried_later(tmp_path, pki_pair, release):  # type: ignore[no-untyped-def]
    target, data = release
    blobs: dict[str, bytes] = {target.image.url: data[:-1] + bytes([data[-1] ^ 1])}
    updater = _updater(tmp_path, pki_pair, blobs)
    updater.consider(_desired(target))
    _settle(updater)
    status = updater.status()
    assert status is not None and status.state == "failed" and "retrying" in status.reason
    blobs[target.image.url] = data
    updater.consider(_desired(target))
    assert updater._worker is None or not updater._worker.is_alive()  # waits RETRY_S first
    updater._retry_at = 0.0
    updater.consider(_desired(target))
    _settle(updater)
    assert updater.status().state == "installed"  # type: ignore[union-attr]


def test_a_trial_commits_only_when_attested_and_a_report_was_accepted(tmp_path, pki_pair):  # type: ignore[no-untyped-def]
    updater = _updater(tmp_path, pki_pair, {}, trial=True)
    assert updater.status().state == "testing"  # type: ignore[union-attr]
    assert not updater.maybe_commit(attested=False, report=lambda: True)
    assert not updater.maybe_commit(attested=True, report=lambda: False)
    assert not updater.paths.commit.exists()
    assert updater.maybe_commit(attested=True, report=lambda: True)
    marker = read_marker(updater.paths.commit)
    assert marker is not None and marker.version == "0.1.0"
    assert updater.status().state == "committed"  # type: ignore[union-attr]


def test_an_agent_not_on_trial_never_commits(tmp_path, pki_pair):  # type: ignore[no-untyped-def]
    updater = _updater(tmp_path, pki_pair, {}, trial=False)
    assert not updater.maybe_commit(attested=True, report=lambda: True)
    assert not updater.paths.commit.exists()


def test_a_committed_trial_agent_installs_the_next_release(tmp_path, pki_pair, release):  # type: ignore[no-untyped-def]
    target, data = release
    updater = _updater(tmp_path, pki_pair, {target.image.url: data}, trial=True)
    updater.consider(_desired(target))
    assert updater._worker is None  # not before its own commit
    assert updater.maybe_commit(attested=True, report=lambda: True)
    updater.consider(_desired(target))
    _settle(updater)
    assert updater.status().state == "installed"  # type: ignore[union-attr]
