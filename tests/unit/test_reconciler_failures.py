"""How the reconciler tells failures apart and reports them: permanent failures wait for
a new spec, temporary ones retry with a back-off, crash loops and start windows are
states with their reasons, restart counts outlive the agent.  Time is a fake clock."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from pathlib import Path

import pytest

from node_agent.image_store import ImageStore
from node_agent.reconciler import Reconciler
from node_agent.runtime.base import TemporaryError, Workload, WorkloadSpec, WorkloadState
from node_agent.spec_digest import LEGACY_SPEC_FILE, legacy_spec_digest
from protocol.desired_state import AppSpec, DesiredState, ImageRef
from protocol.messages import AppState, AppStatus
from tests.fakes import FakeClock, FakeRuntime
from tests.unit.test_image_store import FakeClient

NODE = str(uuid.uuid4())
BLOB = b"an image"
SHA = hashlib.sha256(BLOB).hexdigest()


def _app(name: str = "web", **changes: object) -> AppSpec:
    app = AppSpec(
        uuid=str(uuid.UUID(int=7)),
        name=name,
        kind="container",
        image=ImageRef(
            name="img", sha256=SHA, size=len(BLOB), url="https://c/x", format="oci-archive"
        ),
    )
    return app.model_copy(update=changes)


def _doc(*apps: AppSpec, generation: int = 1) -> DesiredState:
    return DesiredState(node_uuid=NODE, generation=generation, apps=list(apps))


class FlakyRuntime(FakeRuntime):
    """Fails ``failures`` starts with a TemporaryError, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def start(self, spec: WorkloadSpec) -> Workload:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise TemporaryError(f"app {spec.app_uuid}: podman is busy")
        return super().start(spec)


class NeverRunsRuntime(FakeRuntime):
    """Its workloads stay STARTING (a VM paused while starting up)."""

    def start(self, spec: WorkloadSpec) -> Workload:
        w = dataclasses.replace(super().start(spec), state=WorkloadState.STARTING, detail="paused")
        self.workloads[spec.app_uuid] = w
        return w


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _reconciler(tmp_path: Path, runtime: FakeRuntime, clock: FakeClock, client=None) -> Reconciler:  # type: ignore[no-untyped-def]
    store = ImageStore(tmp_path / "images", client, max_bytes=1 << 20)
    if client is None:
        (tmp_path / "images" / "sha256" / SHA).write_bytes(BLOB)
    other = FakeRuntime()
    other.kind = "vm" if runtime.kind == "container" else "container"
    runtimes = {runtime.kind: runtime, other.kind: other}
    return Reconciler(NODE, store, runtimes, tmp_path / "apps", clock=clock)


def _running(tmp_path: Path, clock: FakeClock) -> tuple[FakeRuntime, Reconciler, AppSpec]:
    """A reconciler that has started one app."""
    runtime = FakeRuntime()
    rec = _reconciler(tmp_path, runtime, clock)
    app = _app()
    rec.reconcile(_doc(app))
    return runtime, rec, app


def test_an_image_with_a_wrong_digest_is_downloaded_once_until_the_spec_changes(tmp_path, clock):
    client = FakeClient({"https://c/x": b"not the image", "https://c/y": BLOB})
    vm = FakeRuntime()
    vm.kind = "vm"
    rec = _reconciler(tmp_path, vm, clock, client)
    app = _app(kind="vm", image=_app().image.model_copy(update={"format": "raw"}))
    for _ in range(5):
        (status,) = rec.reconcile(_doc(app))
        clock.advance(600)
    assert len(client.calls) == 1
    assert status.state is AppState.ERROR and "not retried until the app changes" in status.error
    assert rec.wake_in() is None
    fixed = app.model_copy(update={"image": app.image.model_copy(update={"url": "https://c/y"})})
    (status,) = rec.reconcile(_doc(fixed, generation=2))
    assert status.state is AppState.RUNNING and len(client.calls) == 2


def test_a_start_the_runtime_refuses_is_not_retried_until_the_spec_changes(tmp_path, clock):
    runtime = FakeRuntime()
    runtime.fail.add("web")
    rec = _reconciler(tmp_path, runtime, clock)
    rec.reconcile(_doc(_app()))
    clock.advance(3600)
    (status,) = rec.reconcile(_doc(_app()))
    assert status.state is AppState.ERROR and "cannot start web" in status.error
    runtime.fail.clear()
    (status,) = rec.reconcile(_doc(_app(env={"MODE": "fixed"}), generation=2))
    assert status.state is AppState.RUNNING


def test_a_raised_restart_counter_retries_a_permanent_failure(tmp_path, clock):
    runtime = FakeRuntime()
    runtime.fail.add("web")
    rec = _reconciler(tmp_path, runtime, clock)
    rec.reconcile(_doc(_app()))
    runtime.fail.clear()
    (status,) = rec.reconcile(_doc(_app(restart_counter=1), generation=2))
    assert status.state is AppState.RUNNING


def test_temporary_failures_retry_after_a_doubling_back_off(tmp_path, clock):
    runtime = FlakyRuntime(failures=3)
    rec = _reconciler(tmp_path, runtime, clock)
    doc = _doc(_app())
    (status,) = rec.reconcile(doc)
    assert status.state is AppState.ERROR and "podman is busy" in status.error
    assert (status.backoff_s, status.retry_at) == (2.0, clock.time() + 2.0)
    seen = []
    for _ in range(14):
        clock.advance(1.0)
        before = runtime.attempts
        (status,) = rec.reconcile(doc)
        if runtime.attempts > before:
            seen.append(clock.now)
    assert [t - seen[0] for t in seen] == [0.0, 4.0, 12.0]  # tries at +2 s, then +4 s, +8 s
    assert status.state is AppState.RUNNING and status.backoff_s is None


def test_a_stop_on_its_own_restarts_at_once_and_a_second_is_a_crash_loop(tmp_path, clock):
    runtime, rec, app = _running(tmp_path, clock)
    runtime.crash(app.uuid, exit_code=3)
    (status,) = rec.reconcile(_doc(app))
    assert (status.state, status.restarts, status.last_exit_code) == (AppState.RUNNING, 1, 3)
    runtime.crash(app.uuid, exit_code=3)
    (status,) = rec.reconcile(_doc(app))
    assert status.state is AppState.CRASHLOOP
    assert (status.restarts, status.last_exit_code, status.backoff_s) == (2, 3, 1.0)
    assert status.last_stop_reason == "exited (code 3)"
    assert "2 times in a row" in status.error


def test_a_crash_loop_backs_off_longer_each_time_and_counts_every_restart(tmp_path, clock):
    runtime, rec, app = _running(tmp_path, clock)
    backoffs = []
    for _ in range(5):
        runtime.crash(app.uuid)
        (status,) = rec.reconcile(_doc(app))
        backoffs.append(status.backoff_s)
        clock.advance(rec.wake_in() or 0.0)
        (status,) = rec.reconcile(_doc(app))  # restarted: still in the loop
        assert status.state is AppState.CRASHLOOP or status.restarts == 1
    assert backoffs == [None, 1.0, 2.0, 4.0, 8.0]
    assert status.restarts == 5 and len(runtime.started) == 6


def _looping(tmp_path: Path, clock: FakeClock) -> tuple[Reconciler, AppSpec, AppStatus]:
    """An app that stopped on its own twice in a row, restarted after its back-off."""
    runtime, rec, app = _running(tmp_path, clock)
    for _ in range(2):
        runtime.crash(app.uuid)
        rec.reconcile(_doc(app))
        clock.advance(rec.wake_in() or 0.0)
    (status,) = rec.reconcile(_doc(app))
    return rec, app, status


def test_a_crash_loop_ends_after_a_stable_run(tmp_path, clock):
    rec, app, status = _looping(tmp_path, clock)
    assert status.state is AppState.CRASHLOOP
    clock.advance(61.0)
    (status,) = rec.reconcile(_doc(app))
    assert status.state is AppState.RUNNING and status.restarts == 2


def test_restart_counts_survive_an_agent_restart_and_reset_with_a_new_spec(tmp_path, clock):
    runtime, rec, app = _running(tmp_path, clock)
    runtime.crash(app.uuid, exit_code=137)
    rec.reconcile(_doc(app))
    again = _reconciler(tmp_path, runtime, clock)  # a new agent process
    (status,) = again.reconcile(_doc(app))
    assert (status.restarts, status.last_exit_code) == (1, 137)
    (status,) = again.reconcile(_doc(_app(command=["new"]), generation=2))
    assert (status.restarts, status.last_exit_code) == (0, None)


def test_an_app_not_running_within_its_start_window_is_in_error_with_the_reason(tmp_path, clock):
    rec = _reconciler(tmp_path, NeverRunsRuntime(), clock)
    rec.start_window_s = 60.0
    (status,) = rec.reconcile(_doc(_app()))
    assert status.state is AppState.BOOTING
    clock.advance(59.0)
    (status,) = rec.reconcile(_doc(_app()))
    assert status.state is AppState.BOOTING
    clock.advance(1.0)
    (status,) = rec.reconcile(_doc(_app()))
    assert status.state is AppState.ERROR
    assert status.error == "did not reach RUNNING within 60 s of its start: paused"


def test_download_progress_reports_bytes_total_and_rate(tmp_path, clock):
    seen = []

    class SlowStore(ImageStore):
        def ensure(self, ref, progress=None, app=""):  # type: ignore[no-untyped-def]
            for done in (0, 4, 8):
                progress("DOWNLOADING", done, 8)
                (status,) = rec.statuses()
                seen.append(
                    (
                        status.progress_pct,
                        status.progress_bytes,
                        status.progress_total_bytes,
                        status.progress_rate_bps,
                    )
                )
                clock.advance(2.0)
            return super().ensure(ref, None, app)

    store = SlowStore(tmp_path / "images", None, max_bytes=1 << 20)  # type: ignore[arg-type]
    (tmp_path / "images" / "sha256" / SHA).write_bytes(BLOB)
    rec = Reconciler(NODE, store, {"container": FakeRuntime()}, tmp_path / "apps", clock=clock)
    (status,) = rec.reconcile(_doc(_app()))
    assert seen == [(0, 0, 8, None), (50, 4, 8, 2.0), (100, 8, 8, 2.0)]
    assert status.progress_bytes is None and status.state is AppState.RUNNING


def test_each_pass_is_counted_and_can_be_waited_for(tmp_path, clock):
    rec = _reconciler(tmp_path, FakeRuntime(), clock)
    assert rec.passes == 0 and not rec.wait_for_pass(0, timeout_s=0.0)
    rec.reconcile(_doc(_app()))
    assert rec.passes == 1 and rec.wait_for_pass(0, timeout_s=0.0)


def test_a_workload_of_an_agent_before_stored_digests_is_adopted_while_its_spec_holds(
    tmp_path, clock
):
    runtime, _, app = _running(tmp_path, clock)
    old = dataclasses.replace(runtime.workloads[app.uuid], spec_digest="")  # older agent's
    runtime.workloads[app.uuid] = old
    (tmp_path / "apps" / app.uuid / LEGACY_SPEC_FILE).write_text(legacy_spec_digest(app))
    upgraded = _reconciler(tmp_path, runtime, clock)
    (status,) = upgraded.reconcile(_doc(app))
    assert status.state is AppState.RUNNING and runtime.started == ["web"]
    upgraded.reconcile(_doc(_app(command=["new"]), generation=2))
    assert runtime.started == ["web", "web"]


def test_an_app_found_stopped_at_start_waits_for_its_start_delay(tmp_path, clock):
    runtime, _, app = _running(tmp_path, clock)
    runtime.stop(app.uuid)  # the node rebooted: the workload is defined but stopped
    delayed = app.model_copy(update={"start_delay_s": 30.0})
    after_boot = _reconciler(tmp_path, runtime, clock)
    (status,) = after_boot.reconcile(_doc(delayed))
    assert status.state is AppState.INITIAL and runtime.started == ["web"]
    clock.advance(30.0)
    (status,) = after_boot.reconcile(_doc(delayed))
    assert status.state is AppState.RUNNING and runtime.started == ["web", "web"]


def test_a_crash_loop_stays_a_crash_loop_with_its_reason_while_briefly_up(tmp_path, clock):
    _, _, status = _looping(tmp_path, clock)  # restarted, and running for now
    assert status.state is AppState.CRASHLOOP and "2 times in a row" in status.error
