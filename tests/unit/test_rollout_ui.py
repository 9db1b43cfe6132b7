"""The rollouts and git pages of the web UI: rendering, per-ring progress, CSRF-protected
approve after a confirmation, roles checked on the server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.store.models import AuditEvent, Node, Rollout

V1 = {"name": "svc", "kind": "container", "image": "bb", "selector": {"ring": "1"}}
RING = {"name": "canary", "selector": {"ring": "1"}, "approval": True, "soak_s": 5}


@pytest.fixture
def rollout_id(ui_app, admin_headers) -> int:  # type: ignore[no-untyped-def]
    api = ui_app.test_client()
    image = {
        "name": "bb",
        "format": "oci-archive",
        "sha256": "a" * 64,
        "size": 1,
        "url": "https://d/x",
    }
    assert api.post("/api/v1/images/register", json=image, headers=admin_headers).status_code == 201
    assert api.post("/api/v1/apps", json=V1, headers=admin_headers).status_code == 201
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(
            Node(
                serial="n-1",
                uuid="00000000-0000-4000-8000-000000000001",
                state="registered",
                labels={"ring": "1"},
            )
        )
    body = {"app": {**V1, "env": {"V": "2"}}, "rings": [RING, {}]}
    r = api.post("/api/v1/rollouts", json=body, headers=admin_headers)
    assert r.status_code == 201
    with ui_app.app_context():
        from controller.rollouts.engine import tick

        tick(ui_app.extensions["outpost"])
    return int(r.json["id"])


def state(ui_app, rid: int) -> str:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        return s.get(Rollout, rid).state  # type: ignore[union-attr]


def test_the_rollouts_page_lists_rollouts(ui_client, rollout_id):
    page = ui_client("viewer").get("/ui/rollouts").get_data(as_text=True)
    assert f'href="/ui/rollouts/{rollout_id}"' in page and "awaiting approval" in page


def test_the_detail_page_shows_each_ring_and_the_approve_button(ui_client, rollout_id):
    page = ui_client("operator").get(f"/ui/rollouts/{rollout_id}").get_data(as_text=True)
    assert "canary" in page and "approval" in page and "Approve the waiting ring" in page


def test_a_viewer_sees_no_action_buttons_and_cannot_post_one(ui_client, ui_app, rollout_id):
    viewer = ui_client("viewer")
    assert "Approve the waiting ring" not in viewer.get(f"/ui/rollouts/{rollout_id}").get_data(
        as_text=True
    )
    resp = viewer.post(f"/ui/rollouts/{rollout_id}/approve", {"confirmed": "yes"})
    assert resp.status_code == 403 and state(ui_app, rollout_id) == "awaiting_approval"


def test_approve_asks_for_confirmation_first(ui_client, ui_app, rollout_id):
    page = ui_client("operator").post(f"/ui/rollouts/{rollout_id}/approve")
    assert "Yes, approve" in page.get_data(as_text=True)
    assert state(ui_app, rollout_id) == "awaiting_approval"


def test_a_confirmed_approve_is_applied_and_audited(ui_client, ui_app, rollout_id):
    resp = ui_client("operator").post(f"/ui/rollouts/{rollout_id}/approve", {"confirmed": "yes"})
    assert resp.status_code == 302 and state(ui_app, rollout_id) == "progressing"
    with ui_app.extensions["outpost"].db.transaction() as s:
        actors = s.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "rollout.approve")
        ).all()
    assert actors == ["user:operator1"]


def test_an_approve_without_the_csrf_token_is_refused(ui_client, ui_app, rollout_id):
    client = ui_client("operator")
    resp = client.post(f"/ui/rollouts/{rollout_id}/approve", {"confirmed": "yes"}, csrf=False)
    assert resp.status_code == 400 and state(ui_app, rollout_id) == "awaiting_approval"


def test_the_git_page_shows_the_refused_revision_with_file_line_and_reason(
    ui_client, ui_app, admin_headers, tmp_path: Path
):
    repo = tmp_path / "repo"
    (repo / "sites" / "qa").mkdir(parents=True)
    (repo / "sites/qa/a.yaml").write_text("kind: App\nspec:\n  name: x\n  kind: pod\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=o", "-c", "user.email=o@x", "commit", "-qm", "x"],
        check=True,
    )
    api = ui_app.test_client()
    body = {"url": str(repo), "interval_s": 0}
    assert api.put("/api/v1/git/source", json=body, headers=admin_headers).status_code == 200
    client = ui_client("operator")
    client.get("/ui/git")
    assert client.post("/ui/git/sync").status_code == 302
    page = client.get("/ui/git").get_data(as_text=True)
    assert "<code>sites/qa/a.yaml:4</code>" in page and "spec.kind" in page


def test_the_detail_page_says_what_each_node_waits_for_and_when_it_should_end(
    ui_app, ui_client, admin_headers
):  # type: ignore[no-untyped-def]
    api = ui_app.test_client()
    image = {"name": "bb", "format": "oci-archive", "sha256": "a" * 64, "size": 1,
             "url": "https://d/x"}  # fmt: skip
    api.post("/api/v1/images/register", json=image, headers=admin_headers)
    api.post("/api/v1/apps", json=V1, headers=admin_headers)
    with ui_app.extensions["outpost"].db.transaction() as s:
        for i in (1, 2):
            s.add(Node(serial=f"n-{i}", uuid=f"00000000-0000-4000-8000-00000000000{i}",
                       state="registered", labels={"ring": "1", "site": "a"}))  # fmt: skip
    body = {
        "app": {**V1, "env": {"V": "2"}},
        "rings": [{"selector": {"ring": "1"}, "batches": {"count": 2}}],
        "budgets": [{"group_by": ["site"], "max_updating": 1}],
    }
    assert api.post("/api/v1/rollouts", json=body, headers=admin_headers).status_code == 201
    with ui_app.app_context():
        from controller.rollouts.engine import tick

        tick(ui_app.extensions["outpost"])
    page = ui_client("viewer").get("/ui/rollouts/1").get_data(as_text=True)
    assert "budget site=a: 1 updating (at most 1)" in page
    assert "Budget per site" in page and "at most 1 updating" in page
    assert "Expected to finish" in page
    assert "batches of 2, 100 % healthy" in page
