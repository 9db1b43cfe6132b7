"""The reconciler against an in-memory runtime (the real ones have integration tests)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from node_agent.image_store import ImageStore
from node_agent.reconciler import Reconciler
from node_agent.runtime.base import WorkloadState
from protocol.desired_state import AppSpec, DesiredState, ImageRef
from protocol.messages import AppState
from tests.fakes import FakeRuntime
from tests.unit.test_image_store import FakeClient

NODE = str(uuid.uuid4())
BLOB = b"an image"
SHA = hashlib.sha256(BLOB).hexdigest()


def _app(name: str, desired: str = "running") -> AppSpec:
    return AppSpec(
        uuid=str(uuid.uuid4()),
        name=name,
        kind="container",
        desired=desired,  # type: ignore[arg-type]
        image=ImageRef(
            name="img", sha256=SHA, size=len(BLOB), url="https://c/x", format="oci-archive"
        ),
    )


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def reconciler(tmp_path: Path, runtime: FakeRuntime) -> Reconciler:
    store = ImageStore(tmp_path / "images", client=None, max_bytes=1 << 20)  # type: ignore[arg-type]
    (tmp_path / "images" / "sha256" / SHA).write_bytes(BLOB)  # already verified: no download
    return Reconciler(NODE, store, {"container": runtime, "vm": FakeRuntime()}, tmp_path / "apps")


def _doc(*apps: AppSpec, generation: int = 1) -> DesiredState:
    return DesiredState(node_uuid=NODE, generation=generation, apps=list(apps))


def test_a_desired_app_is_started_and_reported_running(reconciler, runtime):
    app = _app("web")
    (status,) = reconciler.reconcile(_doc(app))
    assert status.state is AppState.RUNNING
    assert runtime.started == ["web"]


def test_a_running_app_is_left_alone_on_the_next_pass(reconciler, runtime):
    doc = _doc(_app("web"))
    reconciler.reconcile(doc)
    reconciler.reconcile(doc)
    assert runtime.started == ["web"]


def test_a_workload_that_left_the_config_is_removed(reconciler, runtime):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    assert reconciler.reconcile(_doc(generation=2)) == []
    assert runtime.workloads == {}


def test_a_crashed_workload_is_started_again(reconciler, runtime):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    runtime.stop(app.uuid)
    (status,) = reconciler.reconcile(_doc(app))
    assert status.state is AppState.RUNNING
    assert runtime.started == ["web", "web"]


def test_one_failing_app_is_reported_as_error_and_the_others_still_run(reconciler, runtime):
    runtime.fail.add("bad")
    statuses = {s.name: s for s in reconciler.reconcile(_doc(_app("bad"), _app("good")))}
    assert statuses["bad"].state is AppState.ERROR
    assert "cannot start bad" in statuses["bad"].error and statuses["bad"].error_time
    assert statuses["good"].state is AppState.RUNNING


def test_an_app_desired_stopped_is_halted(reconciler, runtime):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    stopped = app.model_copy(update={"desired": "stopped"})
    (status,) = reconciler.reconcile(_doc(stopped, generation=2))
    assert status.state is AppState.HALTED
    assert runtime.workloads[app.uuid].state is WorkloadState.STOPPED


def test_images_no_app_needs_are_garbage_collected(reconciler, tmp_path):
    stray = tmp_path / "images" / "sha256" / ("f" * 64)
    stray.write_bytes(b"old")
    reconciler.reconcile(_doc(_app("web")))
    assert not stray.exists()
    assert (tmp_path / "images" / "sha256" / SHA).exists()


def _with(app: AppSpec, **changes) -> AppSpec:  # type: ignore[no-untyped-def]
    return app.model_copy(update=changes)


def test_a_new_app_with_raised_counters_is_not_restarted(reconciler, runtime):
    reconciler.reconcile(_doc(_with(_app("web"), restart_counter=3, purge_counter=2)))
    assert runtime.started == ["web"]


def test_a_raised_restart_counter_restarts_the_app_once(reconciler, runtime):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    bumped = _with(app, restart_counter=1)
    reconciler.reconcile(_doc(bumped, generation=2))
    reconciler.reconcile(_doc(bumped, generation=2))
    assert runtime.started == ["web", "web"]


def test_a_restart_is_not_repeated_after_an_agent_restart(reconciler, runtime, tmp_path):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    bumped = _with(app, restart_counter=1)
    reconciler.reconcile(_doc(bumped, generation=2))
    again = Reconciler(NODE, reconciler.store, reconciler.runtimes, tmp_path / "apps")
    again.reconcile(_doc(bumped, generation=2))
    assert runtime.started == ["web", "web"]


def test_a_purge_recreates_the_workload_and_wipes_its_state_once(reconciler, runtime, tmp_path):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    work = tmp_path / "apps" / app.uuid
    (work / "data.img").write_bytes(b"state")
    (work / "console.log").write_text("kept\n")
    purged = _with(app, purge_counter=1)
    (status,) = reconciler.reconcile(_doc(purged, generation=2))
    reconciler.reconcile(_doc(purged, generation=2))
    assert status.state is AppState.RUNNING
    assert runtime.started == ["web", "web"]
    assert not (work / "data.img").exists() and (work / "console.log").exists()


def test_an_app_waits_for_its_start_delay(reconciler, runtime):
    app = _with(_app("web"), start_delay_s=3600.0)
    (status,) = reconciler.reconcile(_doc(app))
    assert status.state is AppState.INITIAL and runtime.started == []
    reconciler._since -= 3600.0  # as if the agent had been up for an hour
    (status,) = reconciler.reconcile(_doc(app))
    assert status.state is AppState.RUNNING


def test_a_running_app_whose_spec_changed_is_recreated_once(reconciler, runtime):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    changed = _with(app, env={"MODE": "new"})
    reconciler.reconcile(_doc(changed, generation=2))
    reconciler.reconcile(_doc(changed, generation=2))
    assert runtime.started == ["web", "web"]


def test_a_spec_change_is_noticed_after_an_agent_restart(reconciler, runtime, tmp_path):
    app = _app("web")
    reconciler.reconcile(_doc(app))
    again = Reconciler(NODE, reconciler.store, reconciler.runtimes, tmp_path / "apps")
    again.reconcile(_doc(_with(app, command=["sleep", "9"]), generation=2))
    assert runtime.started == ["web", "web"]


def test_an_image_with_a_wrong_digest_puts_the_app_in_error_naming_both_and_never_starts_it(
    tmp_path, runtime
):
    served = b"not the image the controller signed"
    actual = hashlib.sha256(served).hexdigest()
    app = _app("web").model_copy(
        update={
            "image": ImageRef(
                name="img", sha256=SHA, size=len(served), url="https://c/x", format="raw"
            ),
            "kind": "vm",
        }
    )
    vm = FakeRuntime()
    store = ImageStore(tmp_path / "images", FakeClient({"https://c/x": served}), 1 << 20)  # type: ignore[arg-type]
    rec = Reconciler(NODE, store, {"container": runtime, "vm": vm}, tmp_path / "apps")
    (status,) = rec.reconcile(_doc(app))
    assert status.state is AppState.ERROR
    assert SHA in status.error and actual in status.error
    assert vm.started == [] and not store.has(SHA)
