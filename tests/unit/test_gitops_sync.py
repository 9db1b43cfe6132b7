"""The git source through the operator API (Flask test client, a local git repository):
one sync is one transaction, a bad commit changes nothing, git-owned objects are
read-only, nodes' generations map to revisions."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.domain.desired import current_desired_state
from controller.store.models import Node


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "ops@example.test")
        self.git("config", "user.name", "ops")

    def git(self, *args: str) -> str:
        out = subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True)
        return out.stdout.decode().strip()

    def commit(self, files: dict[str, Any]) -> str:
        for rel, docs in files.items():
            p = self.path / rel
            if docs is None:
                p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(docs if isinstance(docs, str) else yaml.safe_dump_all(docs))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "change")
        return self.git("rev-parse", "HEAD")


def app_doc(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"kind": "App", "spec": {"name": name, "kind": "container", "image": "bb", **spec}}


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
    return r


def test_a_commit_defines_apps_with_the_site_selector(api, repo: Repo):
    sha = repo.commit({"sites/qa/web.yaml": [app_doc()]})
    out = api("POST", "/git/sync").json
    assert out == {"revision": sha, "applied": True, "changes": ["app/web created"], "errors": []}
    assert api("GET", "/apps/web").json["selector"] == {"site": "qa"}
    assert api("GET", "/git/source").json["objects"] == [
        {"kind": "App", "name": "web", "site": "qa", "file": "sites/qa/web.yaml"}
    ]


def test_a_sync_of_the_same_revision_changes_nothing(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    assert api("POST", "/git/sync").json["applied"] is False


def test_a_bad_commit_is_refused_whole_and_the_last_good_revision_stays(api, repo: Repo):
    good = repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    repo.commit(
        {
            "sites/qa/web.yaml": [app_doc(env={"V": "2"})],  # valid on its own
            "sites/qa/db.yaml": [app_doc("db", image="no-such-image")],
        }
    )
    r = api("POST", "/git/sync")
    assert r.status_code == 409
    (err,) = r.json["error"]["details"]
    assert (err["file"], err["line"]) == ("sites/qa/db.yaml", 3)
    assert "no image named 'no-such-image'" in err["reason"]
    assert api("GET", "/apps/web").json["env"] == {}
    assert api("GET", "/apps/db").status_code == 404
    status = api("GET", "/git/source").json
    assert status["revision"] == good and status["errors"][0]["file"] == "sites/qa/db.yaml"


def test_a_good_commit_after_a_bad_one_clears_the_error(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc(resources={"memory_mib": 1})]})
    assert api("POST", "/git/sync").status_code == 409
    sha = repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    status = api("GET", "/git/source").json
    assert (status["revision"], status["errors"]) == (sha, [])


def test_git_owned_objects_are_read_only_through_the_api(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    body = {"name": "web", "kind": "container", "image": "bb", "env": {"X": "1"}}
    for method, path, kwargs in (
        ("PUT", "/apps/web", {"json": body}),
        ("DELETE", "/apps/web", {}),
    ):
        r = api(method, path, **kwargs)
        assert r.status_code == 409 and r.json["error"]["code"] == "owned_by_git"
        assert "owned by git source" in r.json["error"]["message"]


def test_objects_not_from_git_stay_editable(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    assert api("POST", "/apps", json=app_doc("mine")["spec"]).status_code == 201
    assert api("PUT", "/apps/mine", json=app_doc("mine", env={"A": "b"})["spec"]).status_code == 200


def test_an_app_removed_from_the_repository_is_deleted(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    repo.commit({"sites/qa/web.yaml": None, "sites/qa/keep.yaml": [app_doc("keep")]})
    assert "app/web deleted" in api("POST", "/git/sync").json["changes"]
    assert api("GET", "/apps/web").status_code == 404


def test_site_nodes_get_the_site_label_and_become_read_only(api, repo: Repo):
    api("POST", "/nodes/claim", json={"serial": "n-1"})
    site = {"kind": "Site", "spec": {"nodes": ["n-1"]}}
    node = {"kind": "Node", "spec": {"serial": "n-2", "labels": {"rack": "a"}}}
    repo.commit({"sites/qa/site.yaml": [site, node]})
    api("POST", "/git/sync")
    assert api("GET", "/nodes/n-1").json["labels"] == {"site": "qa"}
    assert api("GET", "/nodes/n-2").json["labels"] == {"rack": "a", "site": "qa"}  # claimed
    r = api("PATCH", "/nodes/n-1", json={"labels": {}})
    assert r.status_code == 409 and "owned by git source" in r.json["error"]["message"]


def test_removing_the_source_makes_its_objects_editable(api, repo: Repo):
    repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    assert api("DELETE", "/git/source").status_code == 200
    assert api("PUT", "/apps/web", json=app_doc(env={"A": "b"})["spec"]).status_code == 200


def test_an_unreachable_repository_is_reported_and_changes_nothing(api, tmp_path: Path):
    api("PUT", "/git/source", json={"url": str(tmp_path / "missing"), "interval_s": 0})
    r = api("POST", "/git/sync")
    assert r.status_code == 409 and "git fetch failed" in r.json["error"]["details"][0]["reason"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "--upload-pack=touch /tmp/x"},
        {"url": "/srv/repo", "branch": "-x"},
        {"url": "/srv/repo", "path": "../etc"},
        {"url": "/srv/repo", "interval_s": -1},
    ],
)
def test_a_bad_source_is_refused(api, body):
    assert api("PUT", "/git/source", json=body).status_code == 422


def test_a_node_generation_maps_to_the_revision_that_produced_it(api, repo: Repo, controller_app):
    api("POST", "/nodes/claim", json={"serial": "n-1"})
    sha = repo.commit({"sites/qa/site.yaml": [{"kind": "Site", "spec": {"nodes": ["n-1"]}}]})
    api("POST", "/git/sync")
    db = controller_app.extensions["outpost"].db
    with controller_app.app_context(), db.transaction() as s:
        node = s.query(Node).filter_by(serial="n-1").one()
        node.uuid, node.state = "00000000-0000-4000-8000-000000000001", "registered"
        s.flush()
        generation = current_desired_state(s, node, "https://c").generation
        node.info = {"agent_version": "0.1", "config_generation": generation, "apps": []}
    (row,) = api("GET", "/git/source").json["nodes"]
    assert row == {"serial": "n-1", "generation": generation, "revision": sha}


def test_reverting_a_bad_commit_clears_the_stored_error(api, repo: Repo):
    good = repo.commit({"sites/qa/web.yaml": [app_doc()]})
    api("POST", "/git/sync")
    repo.commit({"sites/qa/web.yaml": "kind: App\nspec: [\n"})
    assert api("POST", "/git/sync").status_code == 409
    repo.git("reset", "-q", "--hard", good)
    assert api("POST", "/git/sync").status_code == 200
    status = api("GET", "/git/source").json
    assert (status["revision"], status["errors"]) == (good, [])
