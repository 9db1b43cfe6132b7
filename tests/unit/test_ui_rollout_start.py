"""Starting a rollout from the web UI: the same domain action and role as POST
/api/v1/rollouts, audited as the UI user; a bad ring value is refused next to its field
and nothing starts; the rollout page refreshes its rings while the rollout is active."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from controller.store.models import AuditEvent, Node, Rollout

V1 = {"name": "svc", "kind": "container", "image": "bb", "selector": {"ring": "1"}}


@pytest.fixture
def app_svc(ui_app, admin_headers) -> None:  # type: ignore[no-untyped-def]
    api = ui_app.test_client()
    for name in ("bb", "bb2"):
        image = {"name": name, "format": "oci-archive", "sha256": "a" * 64, "size": 1,
                 "url": f"https://d/{name}"}  # fmt: skip
        resp = api.post("/api/v1/images/register", json=image, headers=admin_headers)
        assert resp.status_code == 201
    assert api.post("/api/v1/apps", json=V1, headers=admin_headers).status_code == 201
    with ui_app.extensions["outpost"].db.transaction() as s:
        s.add(Node(serial="n-1", uuid="00000000-0000-4000-8000-000000000001",
                   state="registered", labels={"ring": "1"}))  # fmt: skip


def start_form(**over: str) -> dict[str, str]:
    form = {
        "image": "bb2",
        "command": "",
        "env": "V=2",
        "rings-0-name": "canary",
        "rings-0-selector": "ring=1",
        "rings-0-soak_s": "5",
        "rings-0-deadline_s": "60",
        "rings-0-success_threshold_pct": "100",
        "rings-0-approval": "y",
        "rings-1-name": "rest",
        "rings-1-soak_s": "10",
        "rings-1-deadline_s": "600",
        "rings-2-name": "",
        "group_by": "ring",
        "max_updating": "1",
    }
    return form | over


def rollouts(ui_app) -> list[Rollout]:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        rows = s.scalars(select(Rollout)).all()
        s.expunge_all()
        return list(rows)


def test_the_form_starts_a_rollout_like_the_api_and_it_is_audited(ui_client, ui_app, app_svc):
    client = ui_client("operator")
    page = client.get("/ui/rollouts").get_data(as_text=True)
    assert 'action="/ui/rollouts/new"' in page and '<option value="svc">' in page
    form = client.get("/ui/rollouts/new?app=svc").get_data(as_text=True)
    assert "In force now: <code>bb</code>" in form and "7 days" in form
    resp = client.post("/ui/rollouts/new?app=svc", start_form())
    assert resp.status_code == 302, resp.get_data(as_text=True)[-3000:]
    [r] = rollouts(ui_app)
    assert resp.headers["Location"].endswith(f"/ui/rollouts/{r.id}")
    assert r.to_version["image"] == "bb2" and r.to_version["spec"]["env"] == {"V": "2"}
    assert [ring["name"] for ring in r.rings] == ["canary", "rest"]
    assert r.rings[0]["selector"] == {"ring": "1"} and r.rings[0]["approval"] is True
    assert r.rings[0]["soak_s"] == 5 and r.rings[1]["deadline_s"] == 600
    assert r.budgets == [{"group_by": ["ring"], "max_updating": 1, "min_healthy": None}]
    with ui_app.extensions["outpost"].db.transaction() as s:
        actors = s.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "rollout.start")
        ).all()
    assert actors == ["user:operator1"]
    detail = client.get(f"/ui/rollouts/{r.id}").get_data(as_text=True)
    assert "data-refresh" in detail and "data-refresh-control" in detail


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"rings-0-soak_s": "ten"}, "rings-0-soak_s", "7 days"),
        ({"rings-1-deadline_s": "5", "rings-1-soak_s": "10"}, "rings-1-deadline_s", "soak"),
        ({"rings-0-selector": "ring"}, "rings-0-selector", "key=value"),
        ({"rings-0-percent": "150", "rings-0-selector": ""}, "rings-0-percent", "1 to 100"),
        ({"rings-1-batch_count": "0"}, "rings-1-batch_count", "100000"),
        ({"rings-0-name": "", "rings-1-name": ""}, "rings-0-name", "at least one ring"),
        ({"rings-1-name": "bad name!"}, "rings-1-name", "letters, digits"),
        ({"group_by": "", "max_updating": "1"}, "group_by", "label keys"),
        ({"group_by": "site", "max_updating": ""}, "group_by", "max_updating"),
    ],
)
def test_a_bad_ring_value_is_refused_next_to_its_field_and_nothing_starts(
    ui_client, ui_app, app_svc, over: dict[str, Any], field: str, words: str
):
    resp = ui_client("operator").post("/ui/rollouts/new?app=svc", start_form(**over))
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    error = page.split(f'id="{field}-error"', 1)[1].split("</div>", 1)[0]
    assert words in error and "Traceback" not in page
    assert f'href="#{field}"' in page  # listed above the form
    assert rollouts(ui_app) == []


def test_the_version_in_force_is_refused_in_plain_words(ui_client, ui_app, app_svc):
    resp = ui_client("operator").post("/ui/rollouts/new?app=svc", start_form(image="bb", env=""))
    assert resp.status_code == 422 and "the version in force" in resp.get_data(as_text=True)
    assert rollouts(ui_app) == []


def test_a_viewer_cannot_start_a_rollout(ui_client, ui_app, app_svc):
    viewer = ui_client("viewer")
    assert 'action="/ui/rollouts/new"' not in viewer.get("/ui/rollouts").get_data(as_text=True)
    assert viewer.post("/ui/rollouts/new?app=svc", start_form()).status_code == 403
    assert rollouts(ui_app) == []


def test_a_start_without_the_csrf_token_is_refused(ui_client, ui_app, app_svc):
    resp = ui_client("operator").post("/ui/rollouts/new?app=svc", start_form(), csrf=False)
    assert resp.status_code in (400, 422) and rollouts(ui_app) == []


def test_an_unknown_app_is_a_plain_404(ui_client):
    assert ui_client("operator").get("/ui/rollouts/new?app=nope").status_code == 404
