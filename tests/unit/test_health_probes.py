"""App health probes: the verdict's rules, one probe run of each kind against loopback
servers, and the monitor keeping verdicts across an agent restart."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from node_agent.health import HealthMonitor, ProbeResult, ProbeTarget, ProbeTracker, run_probe
from protocol.desired_state import AppSpec
from protocol.health import HealthProbe
from tests.fakes import FakeClock

HTTP = HealthProbe(kind="http", port=8080, path="/health", interval_s=1, timeout_s=1)
UUID = "00000000-0000-4000-8000-0000000000a1"


def _tracker(**kw: object) -> ProbeTracker:
    probe = HealthProbe.model_validate({"kind": "tcp", "port": 1, "interval_s": 1, **kw})
    return ProbeTracker.fresh(probe, "spec", now=100.0)


def test_healthy_after_the_success_threshold_and_unhealthy_after_the_failure_threshold():
    t = _tracker(healthy_threshold=2, unhealthy_threshold=3)
    assert not t.record(True, "", 101) and t.state.status == "starting"
    assert t.record(True, "", 102) and t.state.status == "healthy"
    t.record(False, "refused", 103)
    t.record(False, "refused", 104)
    assert t.state.status == "healthy"
    assert t.record(False, "timed out", 105)
    assert (t.state.status, t.state.since, t.state.last_failure) == ("unhealthy", 105, "timed out")


def test_a_success_between_failures_starts_the_count_again():
    t = _tracker(unhealthy_threshold=2)
    t.record(True, "", 101)
    t.record(False, "x", 102)
    t.record(True, "", 103)
    t.record(False, "x", 104)
    assert t.state.status == "healthy"


def test_failures_in_the_start_period_do_not_count_until_the_app_was_healthy():
    t = _tracker(start_period_s=30, unhealthy_threshold=1)
    assert not t.record(False, "not up yet", 110)
    assert t.state.status == "starting" and t.state.last_failure == "not up yet"
    assert t.record(False, "still not up", 131)  # the start period is over
    t2 = _tracker(start_period_s=30, unhealthy_threshold=1)
    t2.record(True, "", 105)
    assert t2.record(False, "crashed", 106)  # healthy once: every failure counts


def test_a_restart_begins_a_new_start_period_and_counts_liveness_restarts():
    t = _tracker()
    t.record(True, "", 101)
    t.restarted(200, liveness=True)
    report = t.report()
    assert (report.status, report.since, report.liveness_restarts) == ("starting", 200, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "http"},
        {"kind": "exec"},
        {"kind": "tcp", "port": 1, "command": ["true"]},
        {"kind": "http", "port": 1, "expect_status": [500, 200]},
        {"kind": "http", "port": 1, "path": "no-slash"},
        {"kind": "tcp", "port": 1, "interval_s": 1, "timeout_s": 5},
        {"kind": "tcp", "port": 70000},
    ],
)
def test_an_incomplete_or_contradictory_probe_is_refused(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        HealthProbe.model_validate(bad)


def _app(probe: dict[str, object], kind: str = "container", networks: bool = True) -> None:
    fmt = "oci-archive" if kind == "container" else "qcow2"
    AppSpec.model_validate(
        {
            "uuid": UUID,
            "name": "web",
            "kind": kind,
            "image": {"name": "i", "sha256": "a" * 64, "size": 1, "url": "http://x", "format": fmt},
            "networks": [{"name": "lan"}] if networks else [],
            "health": probe,
        }
    )


def test_the_app_spec_refuses_probes_it_cannot_run():
    _app({"kind": "http", "port": 80})
    _app({"kind": "exec", "command": ["true"]}, networks=False)
    with pytest.raises(ValidationError, match="needs the app on an app network"):
        _app({"kind": "tcp", "port": 80}, networks=False)
    with pytest.raises(ValidationError, match="exec probe runs inside a container"):
        _app({"kind": "exec", "command": ["true"]}, kind="vm")
    with pytest.raises(ValidationError, match="is not its own"):
        _app({"kind": "http", "port": 80, "network": "wan"})


# -- one run of each kind -----------------------------------------------------------------


@pytest.fixture
def web() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_an_http_probe_is_healthy_on_an_expected_status_only(web: int):
    ok = run_probe(HTTP.model_copy(update={"port": web}), UUID, "127.0.0.1", None)
    bad = run_probe(HTTP.model_copy(update={"port": web, "path": "/x"}), UUID, "127.0.0.1", None)
    assert ok.ok and ok.detail == "HTTP 200"
    assert not bad.ok and bad.detail.endswith("answered HTTP 503")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_tcp_probe_needs_a_listener(web: int):
    probe = HealthProbe(kind="tcp", port=web, interval_s=1, timeout_s=1)
    assert run_probe(probe, UUID, "127.0.0.1", None).ok
    refused = run_probe(probe.model_copy(update={"port": _closed_port()}), UUID, "127.0.0.1", None)
    assert not refused.ok and "refused" in refused.detail.lower()


def test_an_exec_probe_runs_in_the_app_and_needs_exit_zero():
    probe = HealthProbe(kind="exec", command=["check"], interval_s=1, timeout_s=1)
    seen = []

    def exec_fn(uuid: str, argv: object, timeout: float) -> tuple[int, str]:
        seen.append((uuid, argv, timeout))
        return (0 if len(seen) == 1 else 2), "out"

    assert run_probe(probe, UUID, None, exec_fn).ok
    failed = run_probe(probe, UUID, None, exec_fn)
    assert not failed.ok and failed.detail == "exec check exited 2: out"
    assert seen[0] == (UUID, ["check"], 1.0)
    assert not run_probe(probe, UUID, None, None).ok


def test_an_app_without_an_address_yet_fails_its_network_probe():
    result = run_probe(HTTP, UUID, None, None)
    assert not result.ok and "no address" in result.detail


# -- the monitor ----------------------------------------------------------------------------


class Results:
    """A probe runner that answers from a script (and counts its calls)."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.calls: list[str | None] = []

    def __call__(self, probe, uuid, address, exec_fn) -> ProbeResult:  # type: ignore[no-untyped-def]
        self.calls.append(address)
        ok = self.answers.pop(0) if self.answers else True
        return ProbeResult(ok, "ok" if ok else "HTTP 500")


def _monitor(path: Path, clock: FakeClock, results: Results) -> HealthMonitor:
    return HealthMonitor(path, clock, run=results)


def test_the_monitor_probes_each_watched_app_every_interval(tmp_path: Path):
    clock, results = FakeClock(), Results()
    m = _monitor(tmp_path / "h.json", clock, results)
    m.watch({UUID: ProbeTarget(UUID, "web", "d1", HTTP, "10.0.0.2")})
    assert m.run_due() == 1 and m.run_due() == 0
    assert m.next_due_in() == 1.0
    clock.advance(1.0)
    assert m.run_due() == 1
    assert results.calls == ["10.0.0.2", "10.0.0.2"]
    health = m.health(UUID, "d1")
    assert health is not None and health.status == "healthy"
    assert m.health(UUID, "another-spec") is None
    m.watch({})
    clock.advance(5)
    assert m.run_due() == 0


def test_verdicts_survive_a_restart_of_the_monitor_for_the_same_spec(tmp_path: Path):
    clock = FakeClock()
    path = tmp_path / "h.json"
    probe = HTTP.model_copy(update={"unhealthy_threshold": 1, "on_unhealthy": "restart"})
    m = _monitor(path, clock, Results(True, False))
    m.watch({UUID: ProbeTarget(UUID, "web", "d1", probe, "10.0.0.2")})
    m.run_due()
    clock.advance(1)
    m.run_due()
    assert m.restart_due(UUID) == "HTTP 500"
    m.liveness_restart(UUID)
    before = m.health(UUID, "d1")
    assert before is not None and before.liveness_restarts == 1

    again = _monitor(path, clock, Results())  # the agent restarted
    kept = again.health(UUID, "d1")
    assert kept == before
    again.watch({UUID: ProbeTarget(UUID, "web", "d1", probe, "10.0.0.2")})
    assert again.health(UUID, "d1") == before
    again.keep_only([])
    assert _monitor(path, clock, Results()).health(UUID, "d1") is None


def test_an_unreadable_health_file_starts_afresh(tmp_path: Path):
    path = tmp_path / "h.json"
    path.write_text(
        '{"apps": {"x": {"spec": "d", "status": "bogus", "since": 1, "started_at": 1}}}'
    )
    assert _monitor(path, FakeClock(), Results()).health("x", "d") is None
    path.write_text("not json")
    assert _monitor(path, FakeClock(), Results()).health("x", "d") is None
