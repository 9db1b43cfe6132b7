"""``outpost claim --device-cert/--ek``, ``get pending``, ``batches``, ``revoke-batch`` and
``app-create --secret-env``: the bodies the CLI sends and what it prints."""

from __future__ import annotations

from typing import Any

import pytest

from outpost_cli import main as cli

DEVICE, EK = "ab" * 32, "cd" * 32
BATCH = {
    "name": "2024",
    "cert_sha256": "ef" * 32,
    "created_at": "t",
    "created_by": "admin",
    "registered_nodes": 3,
    "revoked": False,
    "revoked_reason": "",
}
PENDING = {
    "serial": "sn-9",
    "device_cert_sha256": DEVICE,
    "ek_sha256": EK,
    "source": "192.0.2.1",
    "attempts": 2,
    "conflicts": 1,
    "first_seen": "t",
}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, kwargs.get("json")))
        if path == "/nodes/claim":
            return {"serial": kwargs["json"]["serial"], "state": "claimed"}
        if path == "/onboarding/batches":
            return {"batches": [BATCH]}
        if path.endswith("/revoke"):
            return {"batches": [{**BATCH, "revoked": True}]}
        if path == "/pending":
            return {"pending": [PENDING]}
        if path == "/apps":
            return {"name": "db", "kind": "container", "uuid": "u"}
        if path == "/nodes/import":
            self.calls[-1] = (method, path, (kwargs["headers"], kwargs["data"].read()))
            return {"created": 2, "registered_claims": 0, "unchanged": 1, "nodes": []}
        raise AssertionError(path)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(cli, "_connect", lambda args: recorder)
    return recorder


def test_claim_sends_the_fingerprints(api: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["claim", "sn-9", "--device-cert", DEVICE, "--ek", EK]) == 0
    assert api.calls == [
        ("POST", "/nodes/claim", {"serial": "sn-9", "device_cert_sha256": DEVICE, "ek_sha256": EK})
    ]
    assert "pinned to its fingerprints" in capsys.readouterr().out


def test_get_pending_shows_the_fingerprints_and_conflicts(
    api: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "pending"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == [
        "SERIAL", "DEVICE_CERT_SHA256", "EK_SHA256", "SOURCE", "ATTEMPTS", "CONFLICTS"
    ]  # fmt: skip
    assert DEVICE in row and EK in row and row.split()[5] == "1"


def test_batches_and_revoke_batch(api: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["batches"]) == 0
    assert "2024" in capsys.readouterr().out
    assert cli.main(["revoke-batch", "2024", "--reason", "leaked"]) == 0
    assert api.calls[-1] == ("POST", "/onboarding/batches/2024/revoke", {"reason": "leaked"})


def test_app_create_sends_secret_env_apart(api: Recorder) -> None:
    argv = ["app-create", "--name", "db", "--kind", "container", "--image", "i"]
    assert cli.main([*argv, "--env", "A=1", "--secret-env", "PW=x"]) == 0
    body = api.calls[-1][2]
    assert body["env"] == {"A": "1"} and body["secret_env"] == {"PW": "x"}


def test_import_nodes_sends_the_manifest_as_csv_and_prints_the_counts(
    api: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    manifest = tmp_path / "maker.csv"
    manifest.write_text("serial,device_cert\nsn-1,AAAA\n")
    assert cli.main(["import-nodes", str(manifest)]) == 0
    ((method, path, (headers, data)),) = api.calls
    assert (method, path, headers["Content-Type"]) == ("POST", "/nodes/import", "text/csv")
    assert data == manifest.read_bytes()
    assert "2 nodes registered" in capsys.readouterr().out


def test_import_nodes_of_a_missing_file_is_a_usage_error(
    api: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    assert cli.main(["import-nodes", str(tmp_path / "none.csv")]) != 0
    assert "no such file" in capsys.readouterr().err
    assert api.calls == []
