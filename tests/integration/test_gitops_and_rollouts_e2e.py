"""GitOps and staged rollouts end to end: a git repository of site folders drives three
real agents, and an app version moves through three rings with health gates, an approval
gate and an automatic rollback.

One controller process (its background git sync and rollout engine running) and three
agent processes on real podman; the tests share them and run in file order:
git (qa only → a refused commit) → the git source removed → rollouts.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_agent.heartbeat import read_heartbeat
from outpost_cli.main import main as outpost_main
from tests.fixtures.e2e import WAIT_S, E2ENode, agent_progressed, e2e_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LOOP = ["sh", "-c", "while true; do sleep 1; done"]
MEASURED: dict[str, float] = {}


@dataclass
class Agent:
    serial: str
    state_dir: Path
    settings: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    uuid: str = ""


@dataclass
class Fleet:
    ctl: E2ENode
    agents: dict[str, Agent]
    repo: Path

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.ctl.api(method, path, **kwargs)
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def states(self, serial: str) -> dict[str, str]:
        node = self.api("GET", f"/nodes/{serial}")
        return {a["name"]: a["state"] for a in (node.get("info") or {}).get("apps", [])}

    def containers(self, serial: str) -> list[dict[str, Any]]:
        node = self.api("GET", f"/nodes/{serial}")
        return self.ctl.podman.ps(node["uuid"]) if node["uuid"] else []

    def wait(self, what: str, predicate: Any, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a in self.agents.values():
                if a.process is not None and a.process.poll() is not None:
                    pytest.fail(f"agent {a.serial} exited:\n{a.log.read_text()[-3000:]}")
            if predicate():
                return
            time.sleep(0.25)
        logs = "\n".join(a.log.read_text()[-1500:] for a in self.agents.values())
        pytest.fail(f"timed out waiting for {what}\n{logs}")

    def wait_passes(self, passes: int) -> None:
        """Until every agent has done ``passes`` more reconcile passes from now."""
        start = {s: read_heartbeat(a.state_dir) for s, a in self.agents.items()}
        for serial, a in self.agents.items():
            done = start[serial].passes if start[serial] is not None else 0
            self.wait(
                f"{passes} more passes of {serial}",
                lambda a=a, done=done: agent_progressed(a.state_dir, a.process, done + passes),
            )

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.repo), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, files: dict[str, Any], message: str) -> str:
        for rel, content in files.items():
            path = self.repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content if isinstance(content, str) else yaml.safe_dump_all(content))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def outpost(self, *args: str) -> int:
        c = self.ctl
        return outpost_main(["--url", c.url, "--token", c.token, "--ca", str(c.root_ca), *args])


def _agent(ctl: E2ENode, serial: str, base: Path) -> Agent:
    state_dir = Path(tempfile.mkdtemp(prefix="outpost-gitops-", dir="/tmp"))
    state_dir.chmod(0o755)
    conf = yaml.safe_load(ctl.settings.read_text())
    conf.update(serial=serial, state_dir=str(state_dir))
    settings = base / f"agent-{serial}.yaml"
    settings.write_text(yaml.safe_dump(conf))
    return Agent(serial, state_dir, settings, base / f"agent-{serial}.log")


def _start(ctl: E2ENode, a: Agent) -> None:
    a.process = subprocess.Popen(
        [sys.executable, "-m", "node_agent.cli", "--config", str(a.settings), "run"],
        stdout=a.log.open("ab"),
        stderr=subprocess.STDOUT,
        env=ctl.env,
    )


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory, built_images, podman_engine, libvirt_uri, hypervisor_accel
) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("gitops")
    with e2e_node(base, "qa-1", built_images, podman_engine, libvirt_uri, hypervisor_accel) as ctl:
        agents = {s: _agent(ctl, s, base) for s in ("qa-1", "prod-1", "prod-2")}
        repo = base / "repo"
        repo.mkdir()
        fleet = Fleet(ctl, agents, repo)
        fleet.git("init", "-q", "-b", "main")
        fleet.git("config", "user.email", "ops@example.test")
        fleet.git("config", "user.name", "ops")
        try:
            for a in agents.values():
                if a.serial != "qa-1":
                    fleet.api("POST", "/nodes/claim", json={"serial": a.serial})
                _start(ctl, a)
            fleet.wait(
                "every node registered",
                lambda: all(
                    fleet.api("GET", f"/nodes/{s}")["state"] == "registered" for s in agents
                ),
            )
            for a in agents.values():
                a.uuid = fleet.api("GET", f"/nodes/{a.serial}")["uuid"]
            yield fleet
        finally:
            for a in agents.values():
                if a.process is not None and a.process.poll() is None:
                    a.process.kill()
                    a.process.wait(10)
                if a.uuid and a.serial != "qa-1":
                    with contextlib.suppress(Exception):
                        podman_engine.remove_node(a.uuid)
                shutil.rmtree(a.state_dir, ignore_errors=True)
            ctl._uuid = agents["qa-1"].uuid


SITES = {
    "sites/qa/site.yaml": [{"kind": "Site", "spec": {"nodes": ["qa-1"]}}],
    "sites/production/site.yaml": [{"kind": "Site", "spec": {"nodes": ["prod-1", "prod-2"]}}],
}
WEB = {
    "kind": "App",
    "spec": {"name": "web", "kind": "container", "image": "busybox", "command": LOOP},
}


def test_a_committed_app_runs_on_the_qa_nodes_only(fleet: Fleet):
    fleet.commit(SITES, "sites")
    assert fleet.outpost("git", "set", str(fleet.repo), "--interval", "0") == 0
    assert fleet.api("POST", "/git/sync")["applied"]
    assert fleet.api("GET", "/nodes/prod-1")["labels"] == {"site": "production"}

    t0 = time.monotonic()
    sha = fleet.commit({"sites/qa/web.yaml": [WEB]}, "web on qa")
    assert fleet.api("POST", "/git/sync")["revision"] == sha
    fleet.wait("web RUNNING on qa-1", lambda: fleet.states("qa-1") == {"web": "RUNNING"})
    MEASURED["git_commit_to_running_s"] = round(time.monotonic() - t0, 2)
    print(f"\ngit commit + sync → RUNNING on the qa node: {MEASURED['git_commit_to_running_s']} s")

    fleet.wait_passes(3)  # several agent passes: production nodes stay without the app
    assert fleet.states("prod-1") == {} and fleet.states("prod-2") == {}
    assert fleet.containers("prod-1") == [] and fleet.containers("prod-2") == []
    fleet.wait(
        "qa-1 reports the revision it runs",
        lambda: (
            {n["serial"]: n["revision"] for n in fleet.api("GET", "/git/source")["nodes"]}["qa-1"]
            == sha
        ),
    )


def test_an_edit_through_the_api_of_a_git_owned_app_is_refused(fleet: Fleet):
    r = fleet.ctl.api("PUT", "/apps/web", json={**WEB["spec"], "env": {"X": "1"}})
    assert r.status_code == 409
    assert "owned by git source" in r.json()["error"]["message"]


def test_a_commit_with_a_schema_error_is_refused_and_the_nodes_keep_the_last_good_one(
    fleet: Fleet,
):
    good = fleet.api("GET", "/git/source")["revision"]
    generation = fleet.api("GET", "/nodes/qa-1")["config_generation"]
    cid = fleet.containers("qa-1")[0]["Id"]
    bad = {**WEB, "spec": {**WEB["spec"], "resources": {"memory_mib": 4}}}
    fleet.commit({"sites/qa/web.yaml": [bad]}, "too little memory")
    text = (fleet.repo / "sites/qa/web.yaml").read_text().splitlines()
    line = next(i for i, s in enumerate(text, start=1) if "memory_mib: 4" in s)

    r = fleet.ctl.api("POST", "/git/sync")
    assert r.status_code == 409
    (err,) = r.json()["error"]["details"]
    assert (err["file"], err["line"]) == ("sites/qa/web.yaml", line)
    assert "memory_mib" in err["reason"]
    status = fleet.api("GET", "/git/source")
    assert status["revision"] == good and status["errors"][0]["line"] == line
    fleet.wait_passes(3)
    assert fleet.api("GET", "/nodes/qa-1")["config_generation"] == generation
    assert fleet.states("qa-1") == {"web": "RUNNING"}
    assert fleet.containers("qa-1")[0]["Id"] == cid


# -- rollouts ------------------------------------------------------------------------------

SVC = {"name": "svc", "kind": "container", "image": "busybox", "selector": {"fleet": "yes"}}


def _rollout(fleet: Fleet, rid: int) -> dict[str, Any]:
    return fleet.api("GET", f"/rollouts/{rid}")


def _ids(fleet: Fleet) -> dict[str, str]:
    return {s: c["Id"] for s in fleet.agents for c in fleet.containers(s) if _is_svc(c)}


def _is_svc(c: dict[str, Any]) -> bool:
    return c["Labels"].get("outpost.name") == "svc"


def test_rings_are_set_up_once_the_git_source_is_removed(fleet: Fleet):
    fleet.api("DELETE", "/git/source")
    for ring, serial in enumerate(("qa-1", "prod-1", "prod-2"), start=1):
        fleet.api("PATCH", f"/nodes/{serial}", json={"labels": {"fleet": "yes", "ring": str(ring)}})
    fleet.api("POST", "/apps", json={**SVC, "command": LOOP, "env": {"VERSION": "1"}})
    fleet.wait(
        "svc v1 RUNNING everywhere",
        lambda: all(fleet.states(s).get("svc") == "RUNNING" for s in fleet.agents),
    )


def _write_app(tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"kind": "App", "spec": spec}))
    return str(path)


RINGS = ("one:ring=1", "two:ring=2", "three:ring=3")


def test_a_healthy_version_passes_ring_one_then_waits_for_approval(fleet: Fleet, tmp_path):
    before = _ids(fleet)
    spec = {**SVC, "command": LOOP, "env": {"VERSION": "2"}}
    t0 = time.monotonic()
    assert (
        fleet.outpost(
            "rollout",
            "start",
            "-f",
            _write_app(tmp_path, spec),
            "--ring",
            RINGS[0],
            "--ring",
            RINGS[1] + ",approval",
            "--ring",
            RINGS[2],
            "--soak",
            "3",
            "--deadline",
            "120",
        )
        == 0
    )
    (rid,) = [r["id"] for r in fleet.api("GET", "/rollouts?app=svc")["rollouts"]]
    fleet.wait(
        "ring two waits for approval", lambda: _rollout(fleet, rid)["state"] == "awaiting_approval"
    )
    MEASURED["ring_one_s"] = round(time.monotonic() - t0, 2)
    r = _rollout(fleet, rid)
    assert [ring["status"] for ring in r["rings"]] == ["passed", "awaiting_approval", "waiting"]
    assert [n["serial"] for n in r["rings"][0]["nodes"]] == ["qa-1"]
    now = _ids(fleet)
    assert now["qa-1"] != before["qa-1"]  # recreated with VERSION=2
    assert (now["prod-1"], now["prod-2"]) == (before["prod-1"], before["prod-2"])

    time.sleep(3)  # the engine keeps waiting: no approval, no progress
    assert _rollout(fleet, rid)["state"] == "awaiting_approval"
    t_approve = time.monotonic()
    assert fleet.outpost("rollout", "approve", str(rid)) == 0
    fleet.wait("the rollout succeeded", lambda: _rollout(fleet, rid)["state"] == "succeeded")
    MEASURED["rings_two_three_s"] = round(time.monotonic() - t_approve, 2)
    MEASURED["three_ring_rollout_s"] = round(time.monotonic() - t0, 2)
    after = _ids(fleet)
    assert all(after[s] != now[s] for s in ("prod-1", "prod-2"))
    assert fleet.api("GET", "/apps/svc")["env"] == {"VERSION": "2"}
    audit = fleet.api("GET", "/audit?action=rollout.approve")["events"]
    assert [e["detail"]["rollout"] for e in audit] == [rid]


def test_a_version_that_exits_at_start_fails_ring_one_and_is_rolled_back(fleet: Fleet, tmp_path):
    before = _ids(fleet)
    spec = {**SVC, "command": ["sh", "-c", "exit 1"], "env": {"VERSION": "3"}}
    assert (
        fleet.outpost(
            "rollout",
            "start",
            "-f",
            _write_app(tmp_path, spec),
            *[x for ring in RINGS for x in ("--ring", ring)],
            "--soak",
            "3",
            "--deadline",
            "20",
        )
        == 0
    )
    t0 = time.monotonic()
    rid = fleet.api("GET", "/rollouts?app=svc")["rollouts"][0]["id"]
    fleet.wait("the rollout rolled back", lambda: _rollout(fleet, rid)["state"] == "rolled_back")
    MEASURED["broken_to_rolled_back_s"] = round(time.monotonic() - t0, 2)
    r = _rollout(fleet, rid)
    assert "ring one failed its health gate" in r["reason"]
    assert [ring["status"] for ring in r["rings"]] == ["failed", "waiting", "waiting"]
    assert r["rings"][1]["nodes"] == [] and r["rings"][2]["nodes"] == []
    fleet.wait("qa-1 back on VERSION=2", lambda: fleet.states("qa-1").get("svc") == "RUNNING")
    assert fleet.api("GET", "/apps/svc")["env"] == {"VERSION": "2"}
    after = _ids(fleet)
    assert (after["prod-1"], after["prod-2"]) == (before["prod-1"], before["prod-2"])
    print(f"\nGITOPS-MEASURED {json.dumps(MEASURED)}")  # read by benchmarks/gitops_rollout.py
