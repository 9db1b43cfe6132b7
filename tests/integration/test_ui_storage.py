"""The web UI's queries on SQLite and on a real PostgreSQL: every page of a seeded fleet
renders, and searches, filters and pages count the same on both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.ui_fleet import seed_fleet
from controller.app import create_app
from controller.cli import _settings
from controller.cli import main as controller_main
from controller.domain.users import create_user
from tests.fixtures.browser import UiClient

pytestmark = pytest.mark.integration


def _in_all(html: str) -> int:
    found = re.search(r"[\d,]+\u2013[\d,]+ of ([\d,]+)", html)  # the pager
    assert found, "no count on the page"
    return int(found.group(1).replace(",", ""))


def test_every_page_renders_and_counts_agree(db_url: str, tmp_path: Path):
    data = tmp_path / "ctl"
    args = ["--data-dir", str(data), "init", "--token-file", str(tmp_path / "t")]
    assert controller_main([*args, "--db-url", db_url]) == 0
    app = create_app(_settings(data))
    db = app.extensions["outpost"].db
    fleet = seed_fleet(db, 120, samples=120, audit=300)
    with db.transaction() as s:
        create_user(s, "alice", "admin", "alice-password-1")
    ui = UiClient(app)
    assert ui.login("alice", "alice-password-1").status_code == 302
    for path in (
        "/ui/",
        "/ui/onboarding",
        f"/ui/nodes/{fleet.detailed}?window=6h",
        "/ui/apps",
        "/ui/apps/node-cache",
        "/ui/images",
        "/ui/audit?action=node.claim",
    ):
        assert ui.get(path).status_code == 200, path
    counts = {
        query: _in_all(ui.get(f"/ui/nodes?{query}").get_data(as_text=True))
        for query in (
            "",
            "q=node-002",
            "q=NODE-002",
            "status=online",
            "status=offline",
            "status=attention",
            "q=site%3Dlab",
            "status=attested&q=node-000",
        )
    }
    assert counts[""] == 120
    assert counts["q=node-002"] == counts["q=NODE-002"] == 10  # case-insensitive everywhere
    assert counts["status=online"] + counts["status=offline"] == 120
    assert counts["status=attention"] >= counts["status=offline"]
    assert 0 < counts["q=site%3Dlab"] < 120
    assert counts["status=attested&q=node-000"] <= 10
    audit = ui.get("/ui/audit?target=node_0").get_data(as_text=True)  # '_' is not a wildcard
    assert "No entry matches" in audit
