"""Web UI trust actions on the node page, with the API's roles: accept the last verified
measurements as the baseline (operator), revoke a node with a reason (admin) — each asks
first, is audited as the user, and a refusal is flashed in plain words."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

import pytest
from sqlalchemy import select

from controller.store.models import AuditEvent, NodeTrust
from tests.device_sim import SimDevice, registered


def _db(app):  # type: ignore[no-untyped-def]
    return app.extensions["outpost"].db


@pytest.fixture
def node(client, admin_headers, controller_dir, tmp_path, ui_app) -> SimDevice:  # type: ignore[no-untyped-def]
    """sn-1: registered (a simulated TPM-less node), not attested yet."""
    return registered(client, admin_headers, controller_dir.bundle(tmp_path / "b"), "sn-1")


def _text(resp: Any) -> str:
    return html_lib.unescape(resp.get_data(as_text=True))


def _audited(ui_app: Any, action: str) -> list[tuple[str, str]]:
    with _db(ui_app).transaction() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [(r.actor, r.target) for r in rows]


def _trust(ui_app: Any) -> NodeTrust:
    with _db(ui_app).transaction() as s:
        row = s.scalar(select(NodeTrust))
        s.expunge(row)
    return row


def test_the_node_page_offers_each_trust_action_to_the_roles_the_api_allows(ui_client, node):
    viewer = _text(ui_client("viewer").get("/ui/nodes/sn-1"))
    assert "Accept baseline…" not in viewer and "Revoke…" not in viewer
    operator = _text(ui_client("operator").get("/ui/nodes/sn-1"))
    assert "Accept baseline…" in operator and "Revoke…" not in operator
    admin = _text(ui_client("admin").get("/ui/nodes/sn-1"))
    assert "Accept baseline…" in admin and "Revoke…" in admin


def test_accepting_a_baseline_asks_first(ui_client, ui_app, client, node):
    node.attest_with(client)
    before = _trust(ui_app).baseline
    page = _text(ui_client("operator").get("/ui/nodes/sn-1/accept-baseline"))
    assert "Accept the measurements of node sn-1 as its baseline?" in page
    assert "become its baseline: its later attestations are compared with them" in page
    assert _trust(ui_app).baseline == before and not _audited(ui_app, "trust.accept_baseline")


def test_a_confirmed_accept_baseline_is_the_apis_action_and_is_audited(
    ui_client, ui_app, client, node
):
    node.attest_with(client)
    ui = ui_client("operator")
    resp = ui.post("/ui/nodes/sn-1/accept-baseline", {"confirmed": "yes"})
    assert resp.headers["Location"] == "/ui/nodes/sn-1"
    assert "its last verified measurements are its baseline now" in _text(ui.get("/ui/nodes/sn-1"))
    assert _audited(ui_app, "trust.accept_baseline") == [("user:operator1", "sn-1")]


def test_accepting_a_baseline_without_verified_evidence_is_refused_in_plain_words(
    ui_client, ui_app, node
):
    ui = ui_client("operator")
    assert "no verified evidence yet" in _text(ui.get("/ui/nodes/sn-1/accept-baseline"))
    resp = ui.post("/ui/nodes/sn-1/accept-baseline", {"confirmed": "yes"})
    page = _text(ui.get(resp.headers["Location"]))
    assert (
        "The baseline of node sn-1 was not changed: node 'sn-1' has no verified evidence"
        " to accept yet." in page
    )
    assert not _audited(ui_app, "trust.accept_baseline")


def test_a_viewer_cannot_accept_a_baseline(ui_client, ui_app, client, node):
    node.attest_with(client)
    viewer = ui_client("viewer")
    assert viewer.get("/ui/nodes/sn-1/accept-baseline").status_code == 403
    assert viewer.post("/ui/nodes/sn-1/accept-baseline", {"confirmed": "yes"}).status_code == 403
    assert not _audited(ui_app, "trust.accept_baseline")


def test_revoking_asks_first_saying_the_node_gets_no_config_and_the_serial_stays_revoked(
    ui_client, ui_app, node
):
    admin = ui_client("admin")
    for resp in (admin.get("/ui/nodes/sn-1/revoke"), admin.post("/ui/nodes/sn-1/revoke")):
        page = _text(resp)
        assert resp.status_code == 200 and "Revoke node sn-1?" in page
        assert "Node sn-1 gets no config any more" in page
        assert "give it a new serial" in page and 'id="reason-error"' not in page
    assert _trust(ui_app).revoked_at is None


def test_a_confirmed_revoke_with_a_reason_is_the_apis_action_and_is_audited(
    ui_client, ui_app, client, admin_headers, node
):
    admin = ui_client("admin")
    resp = admin.post("/ui/nodes/sn-1/revoke", {"confirmed": "yes", "reason": "stolen"})
    assert "Node sn-1 revoked" in _text(admin.get(resp.headers["Location"]))
    shown = client.get("/api/v1/trust/nodes/sn-1", headers=admin_headers).get_json()
    assert (shown["state"], shown["reason"]) == ("revoked", "stolen")
    assert _audited(ui_app, "node.revoke") == [("user:admin1", "sn-1")]
    assert "Revoke…" not in _text(admin.get("/ui/nodes/sn-1"))  # nothing left to revoke


def test_a_revoke_without_a_reason_asks_again_and_changes_nothing(ui_client, ui_app, node):
    resp = ui_client("admin").post("/ui/nodes/sn-1/revoke", {"confirmed": "yes", "reason": " "})
    assert resp.status_code == 422
    error = re.search(r'<div class="error" id="reason-error">(.*?)</div>', _text(resp), re.S)
    assert error and "required" in error.group(1)
    assert _trust(ui_app).revoked_at is None and not _audited(ui_app, "node.revoke")


def test_revoking_needs_an_admin_as_in_the_api(ui_client, ui_app, node):
    operator = ui_client("operator")
    assert operator.get("/ui/nodes/sn-1/revoke").status_code == 403
    resp = operator.post("/ui/nodes/sn-1/revoke", {"confirmed": "yes", "reason": "x"})
    assert resp.status_code == 403
    assert _trust(ui_app).revoked_at is None and not _audited(ui_app, "node.revoke")
