"""``outpost rollout`` / ``outpost git``: ring syntax and what the commands send and print
(a recording fake stands in for the HTTP client)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from outpost_cli.main import build_parser
from outpost_cli.resources import UsageError
from outpost_cli.rollout import parse_ring


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
                "nodes": [{"serial": "n-1", "state": "ERROR", "restarts": 0}],
            },
            {"index": 1, "name": "prod", "status": "waiting", "approval": True, "nodes": []},
        ],
    }
    args = parse("rollout", "status", "7")
    args.fn(Recorder(rollout), args)
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "reason: ring qa failed its health gate: n-1: app is ERROR"
    assert out[4].split() == ["qa", "failed", "-", "n-1", "ERROR", "0"]
    assert out[5].split() == ["prod", "waiting", "yes", "-", "-", "0"]


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
