"""``outpost rollout`` / ``outpost git``: ring syntax and what the commands send and print
(a recording fake stands in for the HTTP client)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from outpost_cli.main import build_parser
from outpost_cli.resources import UsageError
from outpost_cli.rollout import parse_batch, parse_budget, parse_ring


class Recorder:
    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, []

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, kwargs.get("json")))
        return self.answer


def parse(*argv: str) -> argparse.Namespace:
    """The real ``outpost`` parser, global options included."""
    return build_parser().parse_args(["--url", "https://c:8443", *argv])


@pytest.mark.parametrize(
    ("text", "ring"),
    [
        ("qa:site=qa", {"name": "qa", "selector": {"site": "qa"}}),
        ("site=uat,tier=a,approval", {"selector": {"site": "uat", "tier": "a"}, "approval": True}),
        ("canary:10%", {"name": "canary", "percent": 10}),
        ("rest", {}),
    ],
)
def test_a_ring_is_written_as_labels_a_percent_or_the_rest(text, ring):
    assert parse_ring(text, None, None) == ring


def test_soak_and_deadline_apply_to_every_ring():
    assert parse_ring("rest", 3, 60) == {"soak_s": 3, "deadline_s": 60}


def test_a_ring_token_that_means_nothing_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_ring("qa:sometimes", None, None)


def test_start_sends_the_app_file_and_the_rings(tmp_path):
    f = tmp_path / "app.yaml"
    f.write_text("kind: App\nspec: {name: web, kind: container, image: bb}\n")
    args = parse("rollout", "start", "-f", str(f), "--ring", "qa:site=qa", "--soak", "5")
    c = Recorder({"id": 7, "app": "web", "state": "progressing"})
    args.fn(c, args)
    body = {
        "app": {"name": "web", "kind": "container", "image": "bb"},
        "rings": [{"name": "qa", "selector": {"site": "qa"}, "soak_s": 5.0}],
    }
    assert c.calls == [("POST", "/rollouts", body)]


def test_status_prints_each_ring_and_node(capsys):
    rollout = {
        "id": 7,
        "app": "web",
        "state": "rolled_back",
        "ring": 0,
        "from": {"image": "bb"},
        "to": {"image": "bb2"},
        "reason": "ring qa failed its health gate: n-1: app is ERROR",
        "rings": [
            {
                "index": 0,
                "name": "qa",
                "status": "failed",
                "approval": False,
                "nodes": [
                    {
                        "serial": "n-1",
                        "batch": 0,
                        "phase": "failed",
                        "state": "ERROR",
                        "health": None,
                        "restarts": 0,
                        "error": "exit 1",
                    },
                    {
                        "serial": "n-2",
                        "batch": 1,
                        "phase": "queued",
                        "state": "",
                        "health": None,
                        "restarts": 0,
                        "waiting": "batch 2",
                    },
                ],
            },
            {"index": 1, "name": "prod", "status": "waiting", "approval": True, "nodes": []},
        ],
    }
    args = parse("rollout", "status", "7")
    args.fn(Recorder(rollout), args)
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "reason: ring qa failed its health gate: n-1: app is ERROR"
    assert out[4].split() == [
        "qa",
        "failed",
        "-",
        "1",
        "n-1",
        "failed",
        "ERROR",
        "-",
        "0",
        "exit",
        "1",
    ]
    assert out[5].split() == [
        "qa",
        "failed",
        "-",
        "2",
        "n-2",
        "queued",
        "-",
        "-",
        "0",
        "batch",
        "2",
    ]
    assert out[6].split() == ["prod", "waiting", "yes", "-", "-", "-", "-", "-", "0", "-"]


def test_start_cuts_every_ring_into_batches_and_sends_the_budgets(tmp_path):
    f = tmp_path / "app.yaml"
    f.write_text("kind: App\nspec: {name: web, kind: container, image: bb}\n")
    budgets = ("--budget", "site:max=1", "--budget", "site,zone:min=2")
    args = parse("rollout", "start", "-f", str(f), "--ring", "rest", "--batch", "25%",
                 "--success", "80", *budgets)  # fmt: skip
    c = Recorder({"id": 7, "app": "web", "state": "progressing"})
    args.fn(c, args)
    ((_, _, body),) = c.calls
    assert body["rings"] == [{"batches": {"percent": 25, "success_threshold_pct": 80}}]
    assert body["budgets"] == [
        {"group_by": ["site"], "max_updating": 1},
        {"group_by": ["site", "zone"], "min_healthy": 2},
    ]


@pytest.mark.parametrize("bad", ["site", "site:max=x", "site:most=1", ":max=1"])
def test_a_budget_that_says_nothing_clear_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        parse_budget(bad)


def test_a_batch_is_a_count_or_a_percent():
    assert parse_batch("5", None) == {"count": 5}
    with pytest.raises(UsageError):
        parse_batch("five", None)
    with pytest.raises(UsageError):
        parse_batch(None, 80)


def test_site_policy_set_sends_windows_in_its_time_zone_and_the_rate_in_bytes():
    args = parse("site-policy", "set", "shops", "--selector", "site=a", "--rate", "8Mbit/s",
                 "--switch-window", "0 3 * * *", "--time-zone", "Europe/Berlin",
                 "--grace", "1800")  # fmt: skip
    c = Recorder({"name": "shops", "policies": [{"name": "shops"}]})
    args.fn(c, args)
    (_, (method, path, body)) = c.calls  # the list, then the change
    assert (method, path) == ("PUT", "/site-policies/shops")  # it exists: replaced
    assert body["download_rate_bps"] == 1_000_000 and body["selector"] == {"site": "a"}
    assert body["switch_window"] == {"cron": "0 3 * * *", "time_zone": "Europe/Berlin",
                                     "grace_s": 1800.0}  # fmt: skip
    assert body["download_window"] is None and body["group_by"] == ["site"]


def test_site_policy_set_creates_a_policy_that_does_not_exist():
    args = parse("site-policy", "set", "new", "--selector", "site=b")
    c = Recorder({"name": "new", "policies": []})
    args.fn(c, args)
    (_, (method, path, body)) = c.calls
    assert (method, path) == ("POST", "/site-policies") and body["name"] == "new"


def test_approve_names_the_ring_when_given():
    args = parse("rollout", "approve", "7", "--ring", "2")
    c = Recorder({"id": 7, "app": "web", "state": "progressing"})
    args.fn(c, args)
    assert c.calls == [("POST", "/rollouts/7/approve", {"ring": 2})]


def test_git_set_does_not_clash_with_the_global_url_option():
    args = parse("git", "set", "/srv/sites.git", "--branch", "prod", "--interval", "0")
    assert args.url == "https://c:8443"
    c = Recorder({"url": "/srv/sites.git", "branch": "prod", "interval_s": 0})
    args.fn(c, args)
    body = {"url": "/srv/sites.git", "branch": "prod", "path": "", "interval_s": 0}
    assert c.calls == [("PUT", "/git/source", body)]
