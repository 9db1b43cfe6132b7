"""Device reports: metrics (kept with history) and log batches (gzip, capped, deduplicated)."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from tests.device_sim import SimDevice

APP_UUID = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def node(client, admin_headers, controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    dev = SimDevice.from_bundle(controller_dir.bundle(tmp_path / "b"), "sn-1")
    client.post("/api/v1/nodes/claim", json={"serial": "sn-1"}, headers=admin_headers)
    client.post("/api/v1/device/register", json=dev.register_body())
    return dev


def _batch(lines: list[dict], seq: int = 1, source: str = "agent") -> dict:  # type: ignore[type-arg]
    raw = "\n".join(json.dumps(x) for x in lines).encode()
    return {
        "source": source,
        "seq": seq,
        "lines_gz_b64": base64.b64encode(gzip.compress(raw)).decode(),
    }


def _logs(client, admin_headers):  # type: ignore[no-untyped-def]
    return client.get("/api/v1/nodes/sn-1/logs", headers=admin_headers).json["lines"]


def test_a_log_batch_is_stored_and_shown_to_operators(client, admin_headers, node):
    body = _batch([{"ts": 1.0, "msg": "hello"}, {"ts": 2.0, "level": "ERROR", "msg": "oops"}])
    r = client.post("/api/v1/device/logs", json=node.signed(body))
    assert r.status_code == 200 and r.json["lines"] == 2
    assert [x["msg"] for x in _logs(client, admin_headers)] == ["hello", "oops"]


def test_a_resent_log_batch_is_stored_once(client, admin_headers, node):
    body = _batch([{"ts": 1.0, "msg": "once"}], seq=7)
    client.post("/api/v1/device/logs", json=node.signed(body))
    r = client.post("/api/v1/device/logs", json=node.signed(body))
    assert r.json["duplicate"] is True
    assert len(_logs(client, admin_headers)) == 1


def test_a_log_batch_that_decompresses_too_far_is_refused(client, admin_headers, node):
    bomb = gzip.compress(b"\n" * (9 * 1024 * 1024))
    body = {"source": "agent", "seq": 1, "lines_gz_b64": base64.b64encode(bomb).decode()}
    assert client.post("/api/v1/device/logs", json=node.signed(body)).status_code == 413
    assert _logs(client, admin_headers) == []


def test_a_log_batch_with_a_bad_line_is_refused_whole(client, admin_headers, node):
    body = _batch([{"ts": 1.0, "msg": "fine"}, {"msg": "no timestamp"}])
    assert client.post("/api/v1/device/logs", json=node.signed(body)).status_code == 422
    assert _logs(client, admin_headers) == []


def test_a_log_batch_that_is_not_gzip_is_refused(client, node):
    body = {"source": "agent", "seq": 1, "lines_gz_b64": base64.b64encode(b"plain").decode()}
    assert client.post("/api/v1/device/logs", json=node.signed(body)).status_code == 422


def test_app_console_logs_are_filed_under_their_app(client, admin_headers, node):
    client.post(
        "/api/v1/device/logs",
        json=node.signed(_batch([{"ts": 1.0, "msg": "boot"}], source=f"app:{APP_UUID}")),
    )
    r = client.get(f"/api/v1/nodes/sn-1/logs?source=app:{APP_UUID}", headers=admin_headers)
    assert [x["source"] for x in r.json["lines"]] == [f"app:{APP_UUID}"]


def test_metrics_are_kept_as_the_latest_sample(client, admin_headers, node):
    sample = {
        "at": 10.0,
        "node": {
            "cpu_seconds_total": 5.0,
            "memory_used_bytes": 1,
            "memory_total_bytes": 2,
            "disk_used_bytes": 3,
            "disk_total_bytes": 4,
            "net_rx_bytes_total": 5,
            "net_tx_bytes_total": 6,
            "uptime_s": 7.0,
        },
        "apps": [{"uuid": APP_UUID, "cpu_seconds_total": 1.5, "memory_used_bytes": 9}],
    }
    assert client.post("/api/v1/device/metrics", json=node.signed(sample)).status_code == 200
    services = client.application.extensions["outpost"]
    services.writes.flush(services.db)  # metrics are written behind, in batches
    shown = client.get("/api/v1/nodes/sn-1", headers=admin_headers).json
    assert shown["metrics"]["apps"][0]["cpu_seconds_total"] == 1.5


def test_metrics_with_a_negative_counter_are_refused_naming_the_field(client, node):
    sample = {
        "at": 1.0,
        "node": {
            "cpu_seconds_total": -1,
            "memory_used_bytes": 1,
            "memory_total_bytes": 2,
            "disk_used_bytes": 3,
            "disk_total_bytes": 4,
            "net_rx_bytes_total": 5,
            "net_tx_bytes_total": 6,
            "uptime_s": 7,
        },
    }
    r = client.post("/api/v1/device/metrics", json=node.signed(sample))
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == "node.cpu_seconds_total"


def _info(**extra: object) -> dict:  # type: ignore[type-arg]
    return {"agent_version": "0.1", "config_generation": -1, **extra}


def test_device_labels_in_info_are_kept_apart_from_operator_labels(client, admin_headers, node):
    r = client.post(
        "/api/v1/device/info", json=node.signed(_info(device_labels={"gpu": "present"}))
    )
    assert r.status_code == 200
    shown = client.get("/api/v1/nodes/sn-1", headers=admin_headers).json
    assert shown["device_labels"] == {"gpu": "present"} and shown["labels"] == {}
    assert "device_labels" not in shown["info"]
    client.post("/api/v1/device/info", json=node.signed(_info()))  # none sent: kept
    shown = client.get("/api/v1/nodes/sn-1", headers=admin_headers).json
    assert shown["device_labels"] == {"gpu": "present"}


def test_a_device_label_that_is_not_a_label_refuses_the_report(client, admin_headers, node):
    bad = _info(device_labels={"Not A Key": "x"})
    assert client.post("/api/v1/device/info", json=node.signed(bad)).status_code == 422
    assert client.get("/api/v1/nodes/sn-1", headers=admin_headers).json["device_labels"] == {}
