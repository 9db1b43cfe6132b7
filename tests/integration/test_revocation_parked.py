"""Revocation is final for a config request already parked in a long-poll: a real agent
process (podman runtime) runs its container and parks its config poll; the node is
revoked, then its app is changed and a new app selects it.  The parked poll ends at once
with 403 ``revoked`` (not when its 55 s are up), the agent never receives the changed
config (no new container, the old one untouched: autonomy), and every list shows the node
revoked."""

from __future__ import annotations

import time

import pytest
import requests

from tests.fixtures.e2e import E2ENode, e2e_node

pytestmark = pytest.mark.integration
SERIAL = "sn-parked"
COMMAND = ["sh", "-c", "while true; do sleep 5; done"]
REVOKED_LINE = "the controller revoked this node"


def _parked(node: E2ENode) -> int:
    r = requests.get(f"{node.url}/healthz", verify=str(node.root_ca), timeout=10)
    return int(r.json()["long_polls_parked"])


def _by_name(node: E2ENode) -> dict[str, dict[str, object]]:
    return {c["Labels"]["outpost.name"]: c for c in node.containers()}


def test_a_node_revoked_while_its_config_poll_is_parked_gets_403_not_the_new_config(
    tmp_path, built_images, podman_engine, libvirt_uri
):
    with e2e_node(tmp_path, SERIAL, built_images, podman_engine, libvirt_uri, "tcg") as node:
        app = {"name": "c1", "kind": "container", "image": "busybox", "command": COMMAND}
        node.api("POST", "/apps", json=app).raise_for_status()
        node.api("POST", f"/nodes/{SERIAL}/apps", json={"app": "c1"}).raise_for_status()
        node.api("PATCH", f"/nodes/{SERIAL}", json={"labels": {"ring": "a"}}).raise_for_status()
        node.start_agent()
        node.wait_states({"c1": "RUNNING"})
        before = _by_name(node)["c1"]
        node.wait_for("the agent's config poll to park", lambda: _parked(node) >= 1)

        revoked_at = time.monotonic()
        node.api("POST", f"/trust/nodes/{SERIAL}/revoke", json={"reason": "stolen"})
        changed = {**app, "command": ["sh", "-c", "echo changed; sleep 3600"]}
        node.api("PUT", "/apps/c1", json=changed).raise_for_status()
        new = {**app, "name": "c2", "selector": {"ring": "a"}}
        node.api("POST", "/apps", json=new).raise_for_status()
        node.wait_for(
            "the parked poll to end with 403 revoked",
            lambda: REVOKED_LINE in node.agent_log.read_text(errors="replace"),
        )
        ended_after = time.monotonic() - revoked_at
        node.wait_for("no poll parked any more", lambda: _parked(node) == 0)

        assert ended_after < 20.0, f"the parked poll ended {ended_after:.1f} s after the revoke"
        log = node.agent_log.read_text(errors="replace")
        assert log.count(REVOKED_LINE) == 1 and "controller away" not in log
        containers = _by_name(node)
        assert set(containers) == {"c1"}  # c2 never arrived
        assert containers["c1"]["Id"] == before["Id"]  # c1 not recreated with the new spec
        assert containers["c1"]["Labels"] == before["Labels"]
        assert node.node()["state"] == "revoked"
        (trust,) = node.api("GET", "/trust/nodes").json()["nodes"]
        assert trust["state"] == "revoked"
        refused = node.api("POST", f"/nodes/{SERIAL}/apps", json={"app": "c1"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "revoked")
