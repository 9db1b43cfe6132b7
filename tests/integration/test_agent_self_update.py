"""Agent self-update end to end: a real controller, a real agent under
``outpost-agent-launcher`` (real libvirt and podman runtimes, attesting with swtpm),
releases built from this tree and uploaded through the operator API, and a short
commit window.

The launcher and its built-in agent run from a snapshot of this tree taken when the test
starts (other work may edit the tree meanwhile; an installed agent never changes), and
every release is built from that snapshot.

A good release is installed, switched to, re-attests, reports and commits; a release
that crashes at start or cannot re-attest is abandoned by the launcher on its own and
the node is back on its previous version, reporting why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from node_agent.self_update.version import AGENT_VERSION
from protocol.agent_bundle import build as build_bundle
from tests.fixtures.e2e import E2ENode, e2e_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WINDOW_S = 25
WAIT_S = 180.0
SERIAL = "upd-node-1"


PACKAGES = ("node_agent", "attestation", "protocol")
REPO = Path(__file__).parents[2]


@dataclass
class UpdNode:
    node: E2ENode
    launcher: subprocess.Popen[bytes]
    log: Path
    source: Path
    """The snapshot the built-in agent runs and releases are built from."""

    @property
    def state_file(self) -> Path:
        return self.node.state_dir / "agent" / "launcher.json"

    def launcher_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def info(self) -> dict[str, Any]:
        return self.node.node().get("info") or {}

    def trust(self) -> dict[str, Any]:
        r = self.node.api("GET", f"/trust/nodes/{SERIAL}")
        r.raise_for_status()
        return r.json()

    def wait_for(self, what: str, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.launcher.poll() is not None:
                pytest.fail(f"launcher exited:\n{self.log.read_text()[-4000:]}")
            if predicate():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}\n{self.log.read_text()[-4000:]}")

    def release(self, version: str, replace: dict[str, str] | None = None) -> None:
        """Build ``version`` from this tree, upload it and point the node at it."""
        tarball = build_bundle(
            version, self.node.base / f"agent-{version}.tgz", self.source, replace
        )
        data = tarball.read_bytes()
        r = self.node.api(
            "POST",
            "/agent-releases",
            params={"version": version, "sha256": hashlib.sha256(data).hexdigest()},
            data=data,
        )
        assert r.status_code == 201, r.text
        body = {"version": version, "accept_baseline": True}  # the admin accepts its digest
        r = self.node.api("PUT", f"/nodes/{SERIAL}/agent-release", json=body)
        assert r.status_code == 200, r.text


@pytest.fixture
def upd_node(tmp_path, podman_engine, libvirt_uri, swtpm_with_ek) -> Iterator[UpdNode]:  # type: ignore[no-untyped-def]
    no_images = SimpleNamespace(images=[])
    with e2e_node(
        tmp_path,
        SERIAL,
        no_images,
        podman_engine,
        libvirt_uri,
        "tcg",
        ek_ca_bundle=swtpm_with_ek.ek_ca_bundle,
        tpm=swtpm_with_ek.tcti,
    ) as node:
        source = node.base / "builtin"
        for package in PACKAGES:
            shutil.copytree(
                REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        log = node.base / "launcher.log"
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "node_agent.launcher",
                "--config",
                str(node.settings),
                "--commit-window",
                str(WINDOW_S),
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env={**node.env, "PYTHONPATH": str(source)},
        )
        upd = UpdNode(node, launcher, log, source)
        try:
            upd.wait_for(
                "the built-in agent to attest and report",
                lambda: (
                    upd.info().get("agent_version") == AGENT_VERSION
                    and upd.trust()["state"] == "attested"
                ),
            )
            yield upd
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(60)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait(10)


def _update(upd: UpdNode) -> dict[str, Any]:
    return upd.info().get("agent_update") or {}


def test_a_good_release_is_switched_to_and_committed_after_it_re_attests(upd_node: UpdNode):
    upd_node.release("0.1.1")
    upd_node.wait_for(
        "0.1.1 committed",
        lambda: (
            upd_node.launcher_state().get("current") == "0.1.1"
            and upd_node.info().get("agent_version") == "0.1.1"
            and _update(upd_node).get("state") == "committed"
        ),
    )
    state = upd_node.launcher_state()
    assert state["previous"] is None  # the built-in agent
    assert state["trial"] is None
    assert state["last"]["result"] == "committed"
    assert upd_node.trust()["state"] == "attested"
    assert (upd_node.node.state_dir / "agent" / "versions" / "0.1.1" / "manifest.json").is_file()


def test_a_committed_release_is_the_previous_one_of_the_next_update(upd_node: UpdNode):
    for version in ("0.1.1", "0.1.4"):
        upd_node.release(version)
        upd_node.wait_for(
            f"{version} committed and reported",
            lambda v=version: (
                upd_node.launcher_state().get("current") == v
                and upd_node.info().get("agent_version") == v
            ),
        )
    assert upd_node.launcher_state()["previous"] == "0.1.1"
    versions = upd_node.node.state_dir / "agent" / "versions"
    assert sorted(p.name for p in versions.iterdir()) == ["0.1.1", "0.1.4"]


def test_a_release_that_crashes_at_start_falls_back_to_the_previous_version(upd_node: UpdNode):
    cli = upd_node.source / "node_agent" / "cli.py"
    future = "from __future__ import annotations\n"
    broken = cli.read_text().replace(future, f'{future}raise RuntimeError("broken release")\n')
    upd_node.release("0.1.2", replace={"node_agent/cli.py": broken})
    upd_node.wait_for(
        "the fallback from 0.1.2",
        lambda: (upd_node.launcher_state().get("last") or {}).get("result") == "failed",
    )
    state = upd_node.launcher_state()
    assert state["current"] is None
    assert state["failed"] == ["0.1.2"]
    assert "before committing" in state["last"]["reason"]
    upd_node.wait_for(
        "the previous version to report the failure",
        lambda: (
            upd_node.info().get("agent_version") == AGENT_VERSION
            and _update(upd_node).get("state") == "failed"
            and _update(upd_node).get("version") == "0.1.2"
        ),
    )
    assert "before committing" in _update(upd_node)["reason"]
    assert not (upd_node.node.state_dir / "agent" / "versions" / "0.1.2").exists()


def test_a_release_that_cannot_re_attest_is_abandoned_when_the_window_closes(upd_node: UpdNode):
    attest = upd_node.source / "node_agent" / "attest.py"
    source = attest.read_text()
    wrong_nonce = "nonce=nonce.nonce[::-1],"  # its quotes answer a nonce never issued
    assert source.count("nonce=nonce.nonce,") == 2
    upd_node.release(
        "0.1.3", replace={"node_agent/attest.py": source.replace("nonce=nonce.nonce,", wrong_nonce)}
    )
    upd_node.wait_for(
        "0.1.3 on trial",
        lambda: (upd_node.launcher_state().get("trial") or {}).get("version") == "0.1.3",
    )
    upd_node.wait_for(
        "the fallback from 0.1.3",
        lambda: (upd_node.launcher_state().get("last") or {}).get("result") == "failed",
    )
    state = upd_node.launcher_state()
    assert state["current"] is None
    assert f"did not commit within {WINDOW_S} s" in state["last"]["reason"]
    upd_node.wait_for(
        "the previous version to attest and report the failure",
        lambda: (
            upd_node.info().get("agent_version") == AGENT_VERSION
            and _update(upd_node).get("version") == "0.1.3"
            and _update(upd_node).get("state") == "failed"
            and upd_node.trust()["state"] == "attested"
        ),
    )
