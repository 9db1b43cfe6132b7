"""The page of a claimed node that has not registered yet says what to do on the node side
(bundle, agent command or node image) and what the controller waits for; once the node
registers, the normal node information replaces it."""

from __future__ import annotations

from sqlalchemy import select

from controller.store.models import Node

DEVICE = "ab" * 32
EK = "cd" * 32


def test_a_claimed_node_not_yet_registered_shows_the_onboarding_steps(ui_client, ui_app):
    admin = ui_client("admin")
    resp = admin.post(
        "/ui/onboarding/claim",
        {"serial": "sn-wait", "device_cert_sha256": DEVICE, "ek_sha256": EK},
    )
    assert resp.status_code in (200, 302)
    page = admin.get("/ui/nodes/sn-wait").get_data(as_text=True)
    assert "Waiting for this node to register" in page
    assert "--bundle /etc/outpost/bundle --serial sn-wait run" in page
    assert "--serial sn-wait identity" in page and "OUTPOSTCFG" in page
    assert f"<code>{DEVICE}</code>" in page and f"<code>{EK}</code>" in page
    assert 'href="/ui/onboarding#bundle"' in page  # admins download the bundle there
    assert 'id="bundle"' in admin.get("/ui/onboarding").get_data(as_text=True)
    viewer = ui_client("viewer").get("/ui/nodes/sn-wait").get_data(as_text=True)
    assert "An admin downloads one" in viewer and "Waiting for this node to register" in viewer


def test_an_unpinned_claim_says_the_attempt_needs_an_approval(ui_client, ui_app):
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(Node(serial="sn-bare", state="claimed"))
    page = ui_client("operator").get("/ui/nodes/sn-bare").get_data(as_text=True)
    assert "pins no fingerprint" in page and "pending nodes" in page


def test_a_registered_node_shows_no_onboarding_steps(ui_client, ui_app):
    ui_client("admin").post(
        "/ui/onboarding/claim", {"serial": "sn-reg", "device_cert_sha256": DEVICE}
    )
    with ui_app.extensions["outpost"].db.transaction() as s:
        node = s.scalar(select(Node).where(Node.serial == "sn-reg"))
        assert node is not None
        node.state, node.uuid = "registered", "00000000-0000-4000-8000-0000000000aa"
    page = ui_client("viewer").get("/ui/nodes/sn-reg").get_data(as_text=True)
    assert "Waiting for this node to register" not in page and "data-onboarding-steps" not in page
    assert "00000000-0000-4000-8000-0000000000aa" in page
