"""The agent against a real controller, with in-memory runtimes (the real runtimes have
their own integration tests and the end-to-end test): onboarding, checkpoint, autonomy."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from node_agent.agent import Agent
from node_agent.identity import OnboardingRefused
from node_agent.settings import AgentSettings
from protocol.messages import AppState
from tests.fakes import FakeRuntime
from tests.fixtures.tiny_oci import tiny_oci_archive

pytestmark = pytest.mark.integration
BLOB = tiny_oci_archive()  # the image store checks the format


@pytest.fixture
def runtimes() -> dict[str, FakeRuntime]:
    return {"container": FakeRuntime(), "vm": FakeRuntime()}


def _agent(bundle: Path, state: Path, runtimes, serial: str = "sn-a") -> Agent:  # type: ignore[no-untyped-def]
    settings = AgentSettings(state_dir=state, bundle_dir=bundle, serial=serial)
    return Agent(settings, lambda s, node_uuid: (runtimes, "tcg"))


@pytest.fixture
def assigned(controller_server, tmp_path):  # type: ignore[no-untyped-def]
    api = controller_server.api
    sha = hashlib.sha256(BLOB).hexdigest()
    api(
        "POST", "/images", params={"name": "img", "format": "oci-archive", "sha256": sha}, data=BLOB
    ).raise_for_status()
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    api("POST", "/nodes/claim", json={"serial": "sn-a"}).raise_for_status()
    api("POST", "/nodes/sn-a/apps", json={"app": "web"}).raise_for_status()
    return controller_server.bundle(tmp_path / "bundle")


def test_one_pass_onboards_fetches_runs_and_reports(
    controller_server, assigned, tmp_path, runtimes
):
    agent = _agent(assigned, tmp_path / "state", runtimes)
    agent.start()
    (status,) = agent.once()
    assert status.state is AppState.RUNNING
    assert runtimes["container"].started == ["web"]
    shown = controller_server.api("GET", "/nodes/sn-a").json()
    assert shown["info"]["apps"][0]["state"] == "RUNNING"
    assert shown["info"]["config_generation"] == shown["config_generation"]


def test_the_checkpoint_is_enforced_while_the_controller_is_unreachable(
    assigned, tmp_path, runtimes
):
    first = _agent(assigned, tmp_path / "state", runtimes)
    first.start()
    first.once()
    # the controller moves away: a restarted agent still runs what it was told
    offline = tmp_path / "offline-bundle"
    shutil.copytree(assigned, offline)
    (offline / "controller.json").write_text(json.dumps({"url": "https://127.0.0.1:9"}))
    fresh = {"container": FakeRuntime(), "vm": FakeRuntime()}
    agent = _agent(offline, tmp_path / "state", fresh)
    agent.start()
    (status,) = agent.once()
    assert status.state is AppState.RUNNING and fresh["container"].started == ["web"]


def test_a_tampered_checkpoint_is_not_enforced(assigned, tmp_path, runtimes):
    agent = _agent(assigned, tmp_path / "state", runtimes)
    agent.start()
    agent.once()
    path = tmp_path / "state" / "checkpoint.json"
    data = json.loads(path.read_text())
    data["envelope"]["signature"] = data["envelope"]["signature"][::-1]
    path.write_text(json.dumps(data))
    again = _agent(assigned, tmp_path / "state", runtimes)
    again.start()
    assert again.desired is None


def test_an_unclaimed_serial_cannot_onboard(controller_server, tmp_path, runtimes):
    bundle = controller_server.bundle(tmp_path / "bundle")
    with pytest.raises(OnboardingRefused) as err:
        _agent(bundle, tmp_path / "state", runtimes, serial="sn-unknown").start()
    assert err.value.status == 403
    assert not (tmp_path / "state" / "identity" / "node.json").exists()


def test_the_device_key_is_private(assigned, tmp_path, runtimes):
    _agent(assigned, tmp_path / "state", runtimes).start()
    ident = tmp_path / "state" / "identity"
    assert (ident / "device.key").stat().st_mode & 0o777 == 0o600
    assert ident.stat().st_mode & 0o777 == 0o700
