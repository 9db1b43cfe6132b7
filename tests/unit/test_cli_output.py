"""``outpost -o json …``: every command prints JSON (the API's answer), and an error is
one JSON object with the exit code on stderr."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outpost_cli import main as cli

NODE = {
    "serial": "sn-1",
    "uuid": None,
    "state": "claimed",
    "last_seen": None,
    "config_generation": 0,
    "assigned_apps": [],
    "info": {},
}
TRUST = {
    "serial": "sn-1",
    "uuid": "u",
    "state": "attested",
    "result": "SUCCESS",
    "reason": "",
    "tpm": "swtpm",
    "device_key_in_tpm": True,
    "attested_at": None,
    "baseline": {},
}
ANSWERS: dict[tuple[str, str], Any] = {
    ("GET", "/nodes"): {"nodes": [NODE]},
    ("GET", "/nodes/sn-1"): NODE,
    ("POST", "/nodes/claim"): NODE,
    ("GET", "/images"): {"images": [{"name": "i", "format": "raw", "size": 1, "sha256": "a"}]},
    ("GET", "/apps"): {"apps": [{"name": "a", "kind": "vm", "image": "i", "desired": "running"}]},
    ("DELETE", "/apps/a"): {"deleted": "a"},
    ("GET", "/audit"): {"events": [{"at": "t", "actor": "x", "action": "y", "target": "z"}]},
    ("GET", "/trust/nodes"): {"nodes": [TRUST]},
    ("GET", "/trust/nodes/sn-1"): TRUST,
    ("POST", "/trust/nodes/sn-1/revoke"): TRUST,
    ("GET", "/trust/policy"): {"tpm_less": "refuse"},
    ("GET", "/events"): {
        "events": [{"at": "t", "node": "sn-1", "app": None, "kind": "k", "message": "m"}]
    },
}


class FakeClient:
    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return ANSWERS[(method, path)]


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_connect", lambda args: FakeClient())


@pytest.mark.parametrize(
    "command",
    [
        ["nodes"],
        ["node", "sn-1"],
        ["claim", "sn-1"],
        ["images"],
        ["apps"],
        ["app-delete", "a"],
        ["audit"],
        ["events", "--since", "2h"],
        ["trust"],
        ["trust", "sn-1"],
        ["revoke", "sn-1", "--reason", "stolen"],
        ["trust-policy"],
    ],
    ids=" ".join,
)
def test_every_command_prints_json_with_o_json(
    fake_api: None, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert cli.main(["-o", "json", *command]) == 0
    json.loads(capsys.readouterr().out)


def test_an_error_with_o_json_is_one_json_object_with_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["-o", "json", "--config", "/nonexistent/outpost.json", "nodes"])
    err = json.loads(capsys.readouterr().err)
    assert code == 2 and err["exit_code"] == 2
    assert "/nonexistent/outpost.json" in err["error"]


def test_a_missing_config_file_is_one_clear_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--config", "/nonexistent/outpost.json", "nodes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot read the config file")
