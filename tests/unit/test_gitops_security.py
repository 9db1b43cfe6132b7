"""GitOps against hostile repositories and careless URLs: a YAML alias bomb is refused at
once (time and memory measured), only https/ssh/file sources are followed, credentials
in a URL are never shown nor audited, and with commit verification on an unsigned or
wrongly signed commit is refused whole while the last good revision stays."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.cli import _settings
from controller.domain.tokens import create_token
from controller.gitops import repo
from controller.gitops.source import fetch_url
from controller.store.models import GitSource
from tests.unit.test_gitops_sync import Repo, app_doc

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
"""Nine levels of nine aliases: 9**9 strings when expanded (the reviewer's was 423 bytes)."""
MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time, tracemalloc
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a regression dies, not the host
    from controller.gitops.manifests import ManifestErrorList, load_sites
    bomb = sys.stdin.read()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        load_sites({"sites/qa/bomb.yaml": bomb})
        errors = []
    except ManifestErrorList as exc:
        errors = [str(e) for e in exc.errors]
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"seconds": seconds, "peak": peak, "errors": errors}))
    """
)


def test_the_alias_bomb_is_refused_in_under_a_second_and_50_mb():
    assert len(BOMB.encode()) < 450  # the reviewer's bomb was 423 bytes
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], input=BOMB, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout)
    assert measured["seconds"] < 1.0 and measured["peak"] < 50 * 2**20, measured
    assert measured["errors"] == [
        "sites/qa/bomb.yaml:1: not valid YAML: anchors and aliases are not allowed in manifests"
    ]


@pytest.fixture
def api(api):  # type: ignore[no-untyped-def]
    image = {"name": "bb", "format": "oci-archive", "sha256": "a" * 64, "size": 1}
    assert api("POST", "/images/register", json=image | {"url": "https://d/x"}).status_code == 201
    return api


def test_a_bomb_committed_to_the_repository_is_refused_whole(api, tmp_path: Path):
    repo = Repo(tmp_path / "repo")
    api("PUT", "/git/source", json={"url": str(repo.path), "interval_s": 0})
    good = repo.commit({"sites/qa/web.yaml": [app_doc()]})
    assert api("POST", "/git/sync").json["applied"] is True
    repo.commit({"sites/qa/bomb.yaml": BOMB})
    r = api("POST", "/git/sync")
    assert r.status_code == 409  # the revision is refused (the request itself was fine)
    assert "anchors and aliases" in json.dumps(r.json)
    assert api("GET", "/git/source").json["revision"] == good


@pytest.mark.parametrize(
    "url", ["http://git.example/sites.git", "git://git.example/sites.git", "ext::sh -c x", "./rel"]
)
def test_only_https_ssh_and_file_sources_are_followed(api, url):
    r = api("PUT", "/git/source", json={"url": url})
    assert r.status_code == 422 and r.json["error"]["details"][0]["field"] == "url"


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example/sites.git",
        "ssh://git@git.example/sites.git",
        "git@git.example:sites.git",
        "file:///srv/sites.git",
        "/srv/sites.git",
    ],
)
def test_https_ssh_file_and_local_paths_are_accepted(api, url):
    assert api("PUT", "/git/source", json={"url": url, "interval_s": 0}).status_code == 200


@pytest.mark.parametrize("url", ["/srv/a\x00b.git", "https://git.example/\ud800.git", "/srv/\x07"])
def test_a_url_git_could_not_be_given_is_refused_and_a_sync_never_fails_with_500(api, url):
    r = api("PUT", "/git/source", data=json.dumps({"url": url}), content_type="application/json")
    assert r.status_code == 422, r.json
    assert api("POST", "/git/sync").status_code == 409  # no source was set


def test_a_sync_whose_git_arguments_cannot_be_passed_is_a_refused_revision(api, client):
    api("PUT", "/git/source", json={"url": "/srv/none.git", "interval_s": 0})
    with client.application.extensions["outpost"].db.transaction() as s:
        source = s.get(GitSource, 1)
        source.url = "/srv/a\x00b.git"  # stored by an older release without the check
    r = api("POST", "/git/sync")
    assert r.status_code == 409, r.json
    assert "could not be passed to git" in json.dumps(r.json)


def test_credentials_in_a_url_are_never_shown_nor_audited(api, client):
    url = "https://deploy:ghp_T0kenValue@git.example/org/sites.git"
    r = api("PUT", "/git/source", json={"url": url, "interval_s": 0})
    assert r.status_code == 200
    assert r.json["url"] == "https://git.example/org/sites.git"
    assert r.json["credentials"] == "set"
    with client.application.extensions["outpost"].db.transaction() as s:
        viewer = create_token(s, "v", "viewer")
    shown = client.get("/api/v1/git/source", headers={"Authorization": f"Bearer {viewer}"})
    audit = api("GET", "/audit").get_data(as_text=True)
    for text in (shown.get_data(as_text=True), audit):
        assert "ghp_T0kenValue" not in text and "deploy" not in text
    with client.application.extensions["outpost"].db.transaction() as s:
        assert fetch_url(s.get(GitSource, 1)) == url  # git still gets them


class SigningRepo(Repo):
    """A repository whose commits can be signed with an ssh key (git's gpg.format=ssh)."""

    def __init__(self, path: Path, keys: Path) -> None:
        super().__init__(path)
        keys.mkdir()
        self.keys = keys
        for name in ("ops", "intruder"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                check=True,
            )
        self.git("config", "gpg.format", "ssh")

    def allowed_signers(self) -> str:
        return f"ops@example.test {(self.keys / 'ops.pub').read_text().strip()}\n"

    def commit_signed(self, files: dict[str, object], key: str | None) -> str:
        if key is None:
            self.git("config", "commit.gpgsign", "false")
        else:
            self.git("config", "commit.gpgsign", "true")
            self.git("config", "user.signingkey", str(self.keys / f"{key}.pub"))
        return self.commit(files)


@pytest.fixture
def signed_repo(api, tmp_path: Path) -> SigningRepo:  # type: ignore[no-untyped-def]
    repo = SigningRepo(tmp_path / "repo", tmp_path / "keys")
    body = {
        "url": str(repo.path),
        "interval_s": 0,
        "verify_signatures": True,
        "allowed_signers": repo.allowed_signers(),
    }
    r = api("PUT", "/git/source", json=body)
    assert r.status_code == 200 and r.json["allowed_signers"] == ["ops@example.test"]
    return repo


def test_a_signed_commit_is_applied(api, signed_repo: SigningRepo):
    sha = signed_repo.commit_signed({"sites/qa/web.yaml": [app_doc()]}, "ops")
    assert api("POST", "/git/sync").json["revision"] == sha
    assert api("GET", "/apps/web").status_code == 200


@pytest.mark.parametrize("key", [None, "intruder"], ids=["unsigned", "wrong-key"])
def test_an_unsigned_or_wrongly_signed_commit_is_refused_whole(api, signed_repo, key):
    good = signed_repo.commit_signed({"sites/qa/web.yaml": [app_doc()]}, "ops")
    api("POST", "/git/sync")
    bad = signed_repo.commit_signed(
        {"sites/qa/web.yaml": [app_doc(command=["sh", "-c", "evil"])]}, key
    )

    r = api("POST", "/git/sync")

    assert r.status_code == 409
    assert "not signed by an allowed key" in json.dumps(r.json)
    status = api("GET", "/git/source").json
    assert (status["revision"], status["error_revision"]) == (good, bad)
    assert api("GET", "/apps/web").json["command"] == []
    assert api("POST", "/git/sync").status_code == 409  # still refused, not re-read


def test_verification_needs_allowed_signers(api, tmp_path: Path):
    body = {"url": str(tmp_path), "verify_signatures": True}
    assert api("PUT", "/git/source", json=body).status_code == 422


def _strict_api(make_app, controller_dir):  # type: ignore[no-untyped-def]
    """The operator API of a controller that does not allow unpinned claims."""
    app = make_app(
        dataclasses.replace(_settings(controller_dir.data_dir), allow_unpinned_claims=False)
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {controller_dir.token}"}
    return lambda method, path, **kw: client.open(
        f"/api/v1{path}", method=method, headers=headers, **kw
    )


def test_node_documents_claim_pinned_and_a_bare_serial_is_refused(
    controller_dir, tmp_path, make_app
):
    api = _strict_api(make_app, controller_dir)
    repo = Repo(tmp_path / "repo")
    api("PUT", "/git/source", json={"url": str(repo.path), "interval_s": 0})
    node = {"kind": "Node", "spec": {"serial": "sn-7", "device_cert_sha256": "ab" * 32}}
    repo.commit({"sites/qa/nodes.yaml": [node]})
    assert api("POST", "/git/sync").status_code == 200
    claims = [e for e in api("GET", "/audit").json["events"] if e["action"] == "node.claim"]
    assert claims[0]["after"]["device_cert_sha256"] == "ab" * 32
    assert api("GET", "/nodes/sn-7").json["state"] == "claimed"

    bare = repo.commit({"sites/qa/site.yaml": [{"kind": "Site", "spec": {"nodes": ["sn-8"]}}]})
    r = api("POST", "/git/sync")

    assert r.status_code == 409 and "pin the node's identity" in json.dumps(r.json)
    assert api("GET", "/git/source").json["error_revision"] == bare
    assert api("GET", "/nodes/sn-8").status_code == 404


@pytest.mark.parametrize(
    ("asked", "allowed"),
    [(None, "file:https:ssh"), ("file", "file"), ("https:ext:git:http", "https"), ("", "")],
)
def test_the_environment_narrows_the_git_protocols_and_never_widens_them(
    monkeypatch, asked, allowed
):
    if asked is None:
        monkeypatch.delenv(repo.PROTOCOLS_ENV, raising=False)
    else:
        monkeypatch.setenv(repo.PROTOCOLS_ENV, asked)
    assert repo.allowed_protocols() == allowed


def test_a_controller_limited_to_file_refuses_an_https_source_before_any_connection(
    monkeypatch, tmp_path: Path
):
    monkeypatch.setenv(repo.PROTOCOLS_ENV, "file")
    with pytest.raises(repo.GitError, match="transport 'https' not allowed"):
        repo.fetch("https://git.invalid/fleet.git", "main", tmp_path / "mirror")
