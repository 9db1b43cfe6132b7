"""The git source from the web UI: set, sync and delete it as the API does (same domain
functions and roles, audited as the UI user); credentials never shown back; a refused
revision shown with each error's file:line and reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.store.models import AuditEvent, GitSource


def commit(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=o", "-c", "user.email=o@x", "commit", "-qm", "x"],
        check=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "fleet"
    path.mkdir()
    subprocess.run(["git", "-C", str(path), "init", "-q", "-b", "main"], check=True)
    commit(path, {"sites/qa/a.yaml": "kind: App\nspec:\n  name: x\n  kind: pod\n"})
    return path


def source_form(url: str, **over: str) -> dict[str, str]:
    return {"git_url": url, "branch": "main", "subpath": "", "interval_s": "0"} | over


def stored(ui_app) -> GitSource | None:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        src = s.get(GitSource, 1)
        if src is not None:
            s.expunge(src)
        return src


def actions(ui_app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with ui_app.extensions["outpost"].db.transaction() as s:
        return [(e.action, e.actor) for e in s.scalars(select(AuditEvent)) if "git" in e.action]


def test_an_admin_sets_syncs_and_deletes_the_source_from_the_git_page(ui_client, ui_app, repo):
    admin = ui_client("admin")
    assert 'action="/ui/git/source"' in admin.get("/ui/git").get_data(as_text=True)
    resp = admin.post("/ui/git/source", source_form(str(repo)))
    assert resp.status_code == 302, resp.get_data(as_text=True)[-2000:]
    src = stored(ui_app)
    assert src is not None and src.url == str(repo) and src.interval_s == 0
    assert admin.post("/ui/git/sync").status_code == 302
    page = admin.get("/ui/git").get_data(as_text=True)
    assert "<code>sites/qa/a.yaml:4</code>" in page and "spec.kind" in page
    assert "Refused revision" in page
    commit(repo, {"sites/qa/a.yaml": "kind: Network\nspec:\n  name: lan\n  subnet: 10.9.0.0/24\n"})
    assert admin.post("/ui/git/sync").status_code == 302
    page = admin.get("/ui/git").get_data(as_text=True)
    good = stored(ui_app)
    assert good is not None and good.revision and good.synced_at is not None
    assert f"<code>{good.revision[:12]}</code>" in page and "Refused revision" not in page
    assert "Yes, stop following it" in admin.post("/ui/git/delete").get_data(as_text=True)
    assert stored(ui_app) is not None  # asked first
    assert admin.post("/ui/git/delete", {"confirmed": "yes"}).status_code == 302
    assert stored(ui_app) is None
    assert ("git.source", "user:admin1") in actions(ui_app)
    assert ("git.source.delete", "user:admin1") in actions(ui_app)


def test_credentials_in_the_url_are_never_shown_and_kept_when_the_url_comes_back(ui_client, ui_app):
    admin = ui_client("admin")
    url = "https://bob:s3cr3t-token@git.example/fleet.git"
    assert admin.post("/ui/git/source", source_form(url)).status_code == 302
    src = stored(ui_app)
    assert src is not None and src.credentials == "bob:s3cr3t-token"
    with ui_app.extensions["outpost"].db.transaction() as s:  # a fetch error naming them
        row = s.get(GitSource, 1)
        assert row is not None
        row.errors = [{"file": "", "line": 0, "reason": f"git fetch failed: {url} 403"}]
    page = admin.get("/ui/git").get_data(as_text=True)
    assert "s3cr3t" not in page and "https://git.example/fleet.git" in page
    assert "credentials kept apart" in page
    assert 'name="keep_credentials" type="checkbox" value="y" checked' in page.replace(
        'checked id="keep_credentials" name="keep_credentials" type="checkbox" value="y"',
        'name="keep_credentials" type="checkbox" value="y" checked',
    )
    shown = source_form("https://git.example/fleet.git", keep_credentials="y")
    assert admin.post("/ui/git/source", shown).status_code == 302
    kept = stored(ui_app)
    assert kept is not None and kept.credentials == "bob:s3cr3t-token"
    with ui_app.extensions["outpost"].db.transaction() as s:
        events = s.scalars(select(AuditEvent)).all()
        assert all("s3cr3t" not in f"{e.target}{e.detail}{e.before}{e.after}" for e in events)
    bad = admin.post("/ui/git/source", source_form(url, branch="a..b"))
    assert bad.status_code == 422 and "s3cr3t" not in bad.get_data(as_text=True)
    admin.post("/ui/git/source", source_form("https://git.example/fleet.git"))  # unticked
    dropped = stored(ui_app)
    assert dropped is not None and dropped.credentials == ""


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"git_url": "ftp://x/y"}, "git_url", "https://"),
        ({"branch": "a b"}, "branch", "branch name"),
        ({"interval_s": "99999"}, "interval_s", "86400"),
        ({"verify_signatures": "y"}, "allowed_signers", "allowed_signers"),
    ],
)
def test_a_bad_source_is_refused_next_to_its_field_and_nothing_is_set(
    ui_client, ui_app, repo, over: dict[str, str], field: str, words: str
):
    resp = ui_client("admin").post("/ui/git/source", source_form(str(repo), **over))
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert words in page.split(f'id="{field}-error"', 1)[1].split("</div>", 1)[0]
    assert stored(ui_app) is None


def test_an_operator_may_sync_but_not_set_or_delete_the_source(ui_client, ui_app, repo):
    operator = ui_client("operator")
    assert 'action="/ui/git/source"' not in operator.get("/ui/git").get_data(as_text=True)
    assert operator.post("/ui/git/source", source_form(str(repo))).status_code == 403
    assert stored(ui_app) is None
    ui_client("admin").post("/ui/git/source", source_form(str(repo)))
    assert operator.post("/ui/git/delete", {"confirmed": "yes"}).status_code == 403
    assert stored(ui_app) is not None
    assert ui_client("viewer").post("/ui/git/sync").status_code == 403
