"""A change made through the operator API reaches a running agent: with long-poll (the
default) in the answer to the request already parked at the controller, though the poll
interval is an hour; without long-poll, within one poll interval.

Real controller process and agent loop; in-memory runtimes (the end-to-end tests cover
the real ones).  The time taken is printed, not asserted.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from tests.fakes import FakeRuntime
from tests.fixtures.tiny_oci import tiny_oci_archive

pytestmark = pytest.mark.integration
BLOB = tiny_oci_archive()  # the image store checks the format


def _wait(predicate, timeout: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.02)
    pytest.fail("the change did not reach the agent")


LONG_POLL = {"long_poll_s": 30.0, "config_interval_s": 3600.0}
POLL = {"long_poll_s": 0.0, "config_interval_s": 2.0}


@pytest.mark.parametrize(("mode", "settings"), [("long-poll", LONG_POLL), ("poll every 2 s", POLL)])
def test_an_assignment_reaches_a_running_agent(controller_server, tmp_path, mode, settings):
    api = controller_server.api
    sha = hashlib.sha256(BLOB).hexdigest()
    api(
        "POST", "/images", params={"name": "img", "format": "oci-archive", "sha256": sha}, data=BLOB
    ).raise_for_status()
    api("POST", "/apps", json={"name": "web", "kind": "container", "image": "img"})
    api("POST", "/nodes/claim", json={"serial": "sn-p"}).raise_for_status()
    runtime = FakeRuntime()
    agent = Agent(
        AgentSettings(
            state_dir=tmp_path / "state",
            bundle_dir=controller_server.bundle(tmp_path / "bundle"),
            serial="sn-p",
            tpm="none",
            reconcile_interval_s=30.0,
            **settings,
        ),
        lambda s, node_uuid: ({"container": runtime, "vm": FakeRuntime()}, "tcg"),
    )
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    loop.start()
    try:
        _wait(lambda: agent.desired is not None and agent.config_requests >= 2)
        parked = agent.config_requests  # long-poll: this request waits at the controller
        api("POST", "/nodes/sn-p/apps", json={"app": "web"}).raise_for_status()
        took = _wait(lambda: runtime.started == ["web"])
        print(f"\n{mode}: assignment → app started on the node in {took:.2f} s")
        if mode == "long-poll":  # no poll in an hour: only the parked request can bring it
            assert agent.config_changed_by == parked
    finally:
        stop.set()
        loop.join(10)
