"""Rollouts from git: a new app version committed next to a ``Rollout`` document moves
through the rings instead of everywhere at once; reverting the commit rolls it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller.rollouts.engine import tick
from controller.store.models import App, Node
from tests.unit.test_gitops_sync import Repo, app_doc

POLICY = {
    "kind": "Rollout",
    "spec": {"app": "web", "rings": [{"name": "canary", "percent": 50, "soak_s": 5}, {}]},
}


@pytest.fixture
def api(api):  # type: ignore[no-untyped-def]
    call = api
    image = {
        "name": "bb",
        "format": "oci-archive",
        "sha256": "a" * 64,
        "size": 1,
        "url": "https://d/x",
    }
    assert call("POST", "/images/register", json=image).status_code == 201
    return call


@pytest.fixture
def repo(tmp_path: Path, api) -> Repo:  # type: ignore[no-untyped-def]
    r = Repo(tmp_path / "repo")
    assert api("PUT", "/git/source", json={"url": str(r.path), "interval_s": 0}).status_code == 200
    r.commit({"sites/qa/web.yaml": [app_doc(), POLICY]})
    assert api("POST", "/git/sync").json["changes"] == ["app/web created"]
    return r


def rollouts(api) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return api("GET", "/rollouts").json["rollouts"]


def test_a_new_version_starts_a_rollout_and_leaves_the_definition(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), POLICY]})
    assert api("POST", "/git/sync").json["changes"] == ["app/web: rollout 1 started"]
    (r,) = rollouts(api)
    assert (r["state"], r["created_by"][:4]) == ("progressing", "git:")
    assert api("GET", "/apps/web").json["env"] == {}


def test_an_unrelated_commit_during_the_rollout_leaves_it_alone(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), POLICY]})
    api("POST", "/git/sync")
    repo.commit({"sites/qa/other.yaml": [app_doc("other")]})
    assert api("POST", "/git/sync").json["changes"] == ["app/other created"]
    assert len(rollouts(api)) == 1


def test_another_version_during_the_rollout_is_refused(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), POLICY]})
    api("POST", "/git/sync")
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "3"}), POLICY]})
    r = api("POST", "/git/sync")
    assert r.status_code == 409
    (err,) = r.json["error"]["details"]
    assert err["file"] == "sites/qa/web.yaml" and "is being rolled out" in err["reason"]


def test_reverting_the_version_in_git_rolls_the_rollout_back(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), POLICY]})
    api("POST", "/git/sync")
    repo.commit({"sites/qa/web.yaml": [app_doc(), POLICY]})
    changes = api("POST", "/git/sync").json["changes"]
    assert changes == ["app/web: rollout 1 rolled back (reverted in git)"]
    assert rollouts(api)[0]["state"] == "rolled_back"


def test_a_rolled_back_version_is_not_retried_by_a_later_commit(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), POLICY]})
    api("POST", "/git/sync")
    api("POST", "/rollouts/1/rollback")
    repo.commit({"sites/qa/other.yaml": [app_doc("other")]})
    changes = api("POST", "/git/sync").json["changes"]
    assert "app/web: this version was rolled back (rollout 1); not retried" in changes
    assert len(rollouts(api)) == 1 and api("GET", "/apps/web").json["env"] == {}


def test_a_finished_git_rollout_makes_the_definition_match_the_repository(
    api, repo: Repo, controller_app
):
    services = controller_app.extensions["outpost"]
    with services.db.transaction() as s:
        s.add(
            Node(
                serial="n-1",
                uuid="00000000-0000-4000-8000-000000000001",
                state="registered",
                labels={"site": "qa"},
            )
        )
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), POLICY]})
    api("POST", "/git/sync")
    now = 100.0
    with controller_app.app_context():
        tick(services, now=now)  # canary: 50 % of one node = n-1
        with services.db.transaction() as s:
            node = s.scalar(select(Node))
            uuid = s.scalar(select(App.uuid))
            node.info = {
                "agent_version": "0.1",
                "config_generation": node.config_generation,
                "apps": [{"uuid": uuid, "name": "web", "state": "RUNNING"}],
            }
        for step in (1, 6, 1, 1):
            now += step
            tick(services, now=now)
    assert rollouts(api)[0]["state"] == "succeeded"
    assert api("GET", "/apps/web").json["env"] == {"V": "2"}
    repo.commit({"sites/qa/other.yaml": [app_doc("other")]})
    assert api("POST", "/git/sync").json["changes"] == ["app/other created"]


def test_a_rollout_document_brings_its_batches_and_budgets(api, repo: Repo):
    policy = {
        "kind": "Rollout",
        "spec": {
            "app": "web",
            "rings": [{"batches": {"percent": 25, "success_threshold_pct": 90}}],
            "budgets": [{"group_by": ["site"], "max_updating": 1}],
        },
    }
    repo.commit({"sites/qa/web.yaml": [app_doc(env={"V": "2"}), policy]})
    assert api("POST", "/git/sync").json["changes"] == ["app/web: rollout 1 started"]
    r = api("GET", "/rollouts/1").json
    assert r["budgets"] == [{"group_by": ["site"], "max_updating": 1, "min_healthy": None}]
    assert r["rings"][0]["batches"]["success_threshold_pct"] == 90
