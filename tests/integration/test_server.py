"""The production server (gunicorn, gevent workers) as ``outpost-controller serve`` runs it:
graceful stop with parked long-polls, the cap on parked long-polls, background-job
leadership across processes."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests

from controller.background import Leadership
from tests.device_sim import SimDevice
from tests.fixtures.controller_server import running_controller

pytestmark = pytest.mark.integration


class Node:
    """A simulated node talking to a served controller (register, attest, config)."""

    def __init__(self, ctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.ctl, self.ca = ctl, str(ctl.root_ca)
        ctl.api("PATCH", "/trust/policy", json={"tpm_less": "allow"})
        ctl.api("POST", "/nodes/claim", json={"serial": "srv-1"})
        self.dev = SimDevice.from_bundle(ctl.bundle(tmp_path / "bundle"), "srv-1")
        requests.post(
            f"{ctl.url}/api/v1/device/register",
            json=self.dev.register_body(),
            verify=self.ca,
            timeout=30,
        ).raise_for_status()
        self.headers = self.dev.attest_over_https(ctl.url, self.ca)

    def config(self, have: str = "", wait_s: float = 0.0) -> requests.Response:
        return requests.post(
            f"{self.ctl.url}/api/v1/device/config",
            json=self.dev.signed({"config_hash": have, "wait_s": wait_s}),
            headers=self.headers,
            verify=self.ca,
            timeout=wait_s + 30,
        )

    def current_hash(self) -> str:
        import base64
        import json

        from protocol.desired_state import DesiredState

        signed = self.config().json()["config"]
        payload = json.loads(base64.b64decode(signed["payload"]))
        doc = DesiredState.model_validate(payload["body"])
        return doc.content_hash()

    def parked(self) -> int:
        health = requests.get(f"{self.ctl.url}/healthz", verify=self.ca, timeout=10).json()
        return int(health["long_polls_parked"])


def test_sigterm_answers_a_parked_long_poll_and_the_server_exits(tmp_path: Path) -> None:
    with running_controller(tmp_path) as ctl:
        node = Node(ctl, tmp_path)
        have = node.current_hash()
        answers: list[requests.Response] = []
        parked = threading.Thread(target=lambda: answers.append(node.config(have, wait_s=110)))
        parked.start()
        while node.parked() < 1:  # the controller holds it now
            parked.join(0.05)
        ctl.process.send_signal(signal.SIGTERM)
        parked.join(60)
        assert answers and answers[0].status_code == 200
        assert answers[0].json()["unchanged"] is True  # answered, not cut off
        assert ctl.process.wait(60) == 0


def test_a_full_process_refuses_another_long_poll_with_503_and_retry_after(
    tmp_path: Path,
) -> None:
    with running_controller(tmp_path, extra_args=["--max-parked-polls", "0"]) as ctl:
        node = Node(ctl, tmp_path)
        resp = node.config(node.current_hash(), wait_s=30)
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "long_poll_full"
        assert int(resp.headers["Retry-After"]) > 0
        assert node.config(node.current_hash()).status_code == 200  # a plain poll still works


def test_one_process_leads_the_background_jobs_and_another_takes_over(postgres_url: str) -> None:
    first, second = Leadership(postgres_url), Leadership(postgres_url)
    try:
        assert first.held()
        assert not second.held()
        first.close()  # the leader's connection is gone (process died, connection cut)
        # PostgreSQL frees the lock when the closed connection's backend has gone, which
        # may be a moment after close() returns: check again (not a second later) until then
        deadline = time.monotonic() + 10
        while True:
            second._checked = 0.0
            if second.held() or time.monotonic() > deadline:
                break
        assert second.held()
    finally:
        first.close()
        second.close()


def test_a_leader_whose_connection_is_cut_stops_leading(postgres_url: str) -> None:
    import psycopg

    lead = Leadership(postgres_url)
    try:
        assert lead.held()
        pid = lead._conn.info.backend_pid
        url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        lead._checked = 0.0
        assert not lead.held()
    finally:
        lead.close()


def test_the_server_answers_over_keep_alive(tmp_path: Path) -> None:
    with running_controller(tmp_path) as ctl, requests.Session() as session:
        for _ in range(5):
            assert session.get(f"{ctl.url}/healthz", verify=str(ctl.root_ca)).ok


def test_sigterm_closes_an_idle_keep_alive_connection_and_finishes_a_request_in_flight(
    tmp_path: Path,
) -> None:
    """A graceful stop does not wait for a balancer's idle connection to time out (75 s
    keep-alive, 15 s graceful timeout): the server closes it, and a long-poll in flight on
    another connection is still answered."""
    with running_controller(tmp_path) as ctl:
        node = Node(ctl, tmp_path)
        idle = socket.create_connection(("127.0.0.1", int(ctl.url.rsplit(":", 1)[1])))
        tls = ssl.create_default_context(cafile=str(ctl.root_ca)).wrap_socket(
            idle, server_hostname="127.0.0.1"
        )
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = tls.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        answers: list[requests.Response] = []
        have = node.current_hash()
        parked = threading.Thread(target=lambda: answers.append(node.config(have, wait_s=110)))
        parked.start()
        while node.parked() < 1:
            parked.join(0.05)
        ctl.process.send_signal(signal.SIGTERM)
        tls.settimeout(60)
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            while tls.recv(65536):  # the rest of the first answer, then the server's close
                pass
        parked.join(60)
        assert answers and answers[0].status_code == 200
        assert ctl.process.wait(60) == 0
        tls.close()


def test_metrics_are_prometheus_text_with_the_fleet_and_request_series(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with running_controller(tmp_path) as ctl:
        node = Node(ctl, tmp_path)
        node.current_hash()  # a config poll
        anonymous = requests.get(f"{ctl.url}/metrics", verify=str(ctl.root_ca), timeout=10)
        assert anonymous.status_code == 401
        resp = requests.get(
            f"{ctl.url}/metrics",
            headers={"Authorization": f"Bearer {ctl.token}"},  # admin; a viewer's would do
            verify=str(ctl.root_ca),
            timeout=10,
        )
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text)
            for s in family.samples
        }
    assert samples[("outpost_nodes", (("state", "online"),))] == 1
    assert samples[("outpost_nodes_attestation", (("state", "attested"),))] == 1
    assert samples[("outpost_config_polls_total", (("answer", "config"),))] >= 1
    assert samples[("outpost_attestations_total", (("result", "SUCCESS"),))] >= 1
    assert any(name == "outpost_http_request_duration_seconds_count" for name, _ in samples)


def test_a_request_line_over_the_servers_limit_gets_a_json_414(tmp_path: Path) -> None:
    """gunicorn refuses a request line over 4 KiB itself, before the app: the answer is the
    API's JSON error (documented for every operation), not gunicorn's HTML page."""
    with running_controller(tmp_path) as ctl:
        resp = requests.get(
            f"{ctl.url}/api/v1/nodes",
            params={"label": ["x" * 100] * 60},
            headers={"Authorization": f"Bearer {ctl.token}"},
            verify=str(ctl.root_ca),
            timeout=10,
        )
        spec = requests.get(f"{ctl.url}/api/v1/openapi.json", verify=str(ctl.root_ca), timeout=10)
    assert resp.status_code == 414
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["error"]["code"] == "uri_too_long"
    assert "414" in spec.json()["paths"]["/api/v1/nodes"]["get"]["responses"]
