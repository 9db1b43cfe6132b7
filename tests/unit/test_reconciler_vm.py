"""The reconciler's VM side against an in-memory runtime: disks from volumes (real qemu-img),
passthrough checked before start, crash restarts with back-off, download progress."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from node_agent import workload_spec as workload_spec_module
from node_agent.download_gate import DownloadGate
from node_agent.image_store import ImageStore
from node_agent.passthrough import PassthroughError
from node_agent.reconciler import CrashBackoff, Reconciler
from node_agent.runtime.base import WorkloadSpec
from node_agent.spec_digest import spec_digest, url_spec_digest
from node_agent.volumes import ROOT_DISK, data_disk_path, image_info
from protocol.desired_state import (
    Adapter,
    AppSpec,
    DataDisk,
    DesiredState,
    ImageRef,
    Resources,
)
from protocol.messages import AppState
from tests.fakes import FakeClock, FakeRuntime

NODE = str(uuid.uuid4())


class RecordingRuntime(FakeRuntime):
    kind = "vm"

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[WorkloadSpec] = []

    def start(self, spec: WorkloadSpec):  # type: ignore[no-untyped-def]
        self.specs.append(spec)
        return super().start(spec)


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str]:
    """A tiny qcow2 image in a store layout (8 MiB virtual, no backing file)."""
    raw = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(raw), "8M"], check=True)
    sha = hashlib.sha256(raw.read_bytes()).hexdigest()
    store_dir = tmp_path / "images" / "sha256"
    store_dir.mkdir(parents=True)
    raw.rename(store_dir / sha)
    return store_dir / sha, sha


@pytest.fixture
def runtime() -> RecordingRuntime:
    return RecordingRuntime()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reconciler(
    tmp_path: Path, runtime: RecordingRuntime, blob: tuple[Path, str], clock: FakeClock
) -> Reconciler:
    store = ImageStore(tmp_path / "images", client=None, max_bytes=1 << 30)  # type: ignore[arg-type]
    return Reconciler(
        NODE,
        store,
        {"vm": runtime, "container": FakeRuntime()},
        tmp_path / "apps",
        sysfs_root=tmp_path / "sys",
        backoff=CrashBackoff(base_s=0.2, max_s=0.4),
        clock=clock,
    )


def _vm(sha: str, **changes: object) -> AppSpec:
    app = AppSpec(
        uuid=str(uuid.uuid4()),
        name="cam",
        kind="vm",
        image=ImageRef(name="disk", sha256=sha, size=1, url="https://c/x", format="qcow2"),
    )
    return app.model_copy(update=changes)


def _doc(*apps: AppSpec, generation: int = 1) -> DesiredState:
    return DesiredState(node_uuid=NODE, generation=generation, apps=list(apps))


def test_a_qcow2_vm_boots_through_an_overlay_on_the_verified_blob(reconciler, runtime, blob):
    path, sha = blob
    app = _vm(sha)
    (status,) = reconciler.reconcile(_doc(app))
    assert status.state is AppState.RUNNING
    root = runtime.specs[0].root_disk
    assert root is not None and root.path.name == ROOT_DISK
    assert (root.backing, root.backing_format) == (path, "qcow2")
    assert image_info(root.path, "qcow2").backing == str(path)


def test_the_overlay_is_as_large_as_disk_mib_when_that_is_larger(reconciler, runtime, blob):
    _, sha = blob
    reconciler.reconcile(_doc(_vm(sha, resources=Resources(disk_mib=64))))
    root = runtime.specs[0].root_disk
    assert root is not None and image_info(root.path, "qcow2").virtual_size == 64 << 20


def test_data_disks_are_made_blank_and_attached_by_name(reconciler, runtime, blob):
    _, sha = blob
    app = _vm(sha, disks=[DataDisk(name="db", size_mib=16)])
    reconciler.reconcile(_doc(app))
    (data,) = runtime.specs[0].data_disks
    assert data.name == "db" and data.backing is None
    assert image_info(data.path, "qcow2").virtual_size == 16 << 20


def test_purge_recreates_the_root_overlay_and_data_disks(reconciler, runtime, blob, tmp_path):
    _, sha = blob
    app = _vm(sha, disks=[DataDisk(name="db", size_mib=16)])
    reconciler.reconcile(_doc(app))
    work = tmp_path / "apps" / app.uuid
    for disk in (work / ROOT_DISK, data_disk_path(work, "db")):
        disk.write_bytes(b"written by the guest")  # stands for guest writes
    reconciler.reconcile(_doc(app.model_copy(update={"purge_counter": 1}), generation=2))
    assert len(runtime.specs) == 2
    for disk in (work / ROOT_DISK, data_disk_path(work, "db")):
        assert image_info(disk, "qcow2").format == "qcow2"  # a fresh qcow2 again


def test_a_restart_keeps_the_disks(reconciler, runtime, blob, tmp_path):
    _, sha = blob
    app = _vm(sha)
    reconciler.reconcile(_doc(app))
    root = tmp_path / "apps" / app.uuid / ROOT_DISK
    before = root.stat().st_ino
    reconciler.reconcile(_doc(app.model_copy(update={"restart_counter": 1}), generation=2))
    assert len(runtime.specs) == 2 and root.stat().st_ino == before


def test_an_app_that_left_the_config_has_its_disks_deleted(reconciler, runtime, blob, tmp_path):
    _, sha = blob
    app = _vm(sha, disks=[DataDisk(name="db", size_mib=16)])
    reconciler.reconcile(_doc(app))
    reconciler.reconcile(_doc(generation=2))
    work = tmp_path / "apps" / app.uuid
    assert not (work / ROOT_DISK).exists() and not data_disk_path(work, "db").exists()


def test_pci_adapters_are_resolved_before_start(reconciler, runtime, blob, monkeypatch, tmp_path):
    _, sha = blob
    seen = []

    def fake_resolve(adapters, sysfs_root):  # type: ignore[no-untyped-def]
        seen.append((tuple(a.match for a in adapters), sysfs_root))
        return ("0000:01:00.0", "0000:01:00.1")

    monkeypatch.setattr(workload_spec_module, "resolve_adapters", fake_resolve)
    app = _vm(sha, adapters=[Adapter(kind="gpu", match="0000:01:00.0")], vtpm=True)
    reconciler.reconcile(_doc(app))
    assert seen == [(("0000:01:00.0",), tmp_path / "sys")]
    assert runtime.specs[0].pci_devices == ("0000:01:00.0", "0000:01:00.1")
    assert runtime.specs[0].vtpm is True


def test_a_refused_passthrough_is_an_error_and_nothing_starts(
    reconciler, runtime, blob, monkeypatch
):
    _, sha = blob

    def refuse(adapters, sysfs_root):  # type: ignore[no-untyped-def]
        raise PassthroughError("IOMMU is off on this node")

    monkeypatch.setattr(workload_spec_module, "resolve_adapters", refuse)
    app = _vm(sha, adapters=[Adapter(kind="gpu", match="0000:01:00.0")])
    (status,) = reconciler.reconcile(_doc(app))
    assert status.state is AppState.ERROR and "IOMMU is off" in status.error
    assert runtime.specs == []


def test_a_first_crash_restarts_at_once_and_repeated_crashes_back_off(
    reconciler, runtime, blob, clock
):
    _, sha = blob
    app = _vm(sha)
    doc = _doc(app)
    reconciler.reconcile(doc)
    runtime.crash(app.uuid)  # QEMU died
    (status,) = reconciler.reconcile(doc)
    assert status.state is AppState.RUNNING and len(runtime.specs) == 2
    assert reconciler.wake_in() is None
    runtime.crash(app.uuid)  # and again, right after its restart
    (status,) = reconciler.reconcile(doc)
    assert status.state is AppState.CRASHLOOP and "2 times in a row" in status.error
    assert (status.backoff_s, status.retry_at) == pytest.approx((0.2, clock.time() + 0.2))
    assert len(runtime.specs) == 2
    assert reconciler.wake_in() == pytest.approx(0.2)
    clock.advance(0.1)
    reconciler.reconcile(doc)
    assert len(runtime.specs) == 2  # the back-off has not ended
    clock.advance(0.1)
    (status,) = reconciler.reconcile(doc)
    assert status.state is AppState.CRASHLOOP and len(runtime.specs) == 3


def test_restarts_after_a_crash_are_counted_in_the_status_until_the_spec_changes(
    reconciler, runtime, blob
):
    _, sha = blob
    app = _vm(sha)
    (status,) = reconciler.reconcile(_doc(app))
    assert status.restarts == 0
    runtime.crash(app.uuid)  # QEMU died; restarted at once
    (status,) = reconciler.reconcile(_doc(app))
    assert (status.state, status.restarts) == (AppState.RUNNING, 1)
    changed = app.model_copy(update={"command": ["new"]})
    (status,) = reconciler.reconcile(_doc(changed, generation=2))
    assert (status.state, status.restarts) == (AppState.RUNNING, 0)


def test_the_back_off_doubles_up_to_its_bound_and_resets_after_a_stable_run() -> None:
    backoff = CrashBackoff(base_s=1.0, max_s=4.0, stable_s=60.0)
    delays = []
    for now in range(6):
        backoff.started("a", float(now))
        delays.append(backoff.stopped("a", float(now)))
    assert delays == [0.0, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.started("a", 100.0)
    assert backoff.stopped("a", 200.0) == 0.0  # ran 100 s in one go: counting starts again


class _ProgressStore:
    """A store whose download reports two steps; records the statuses seen meanwhile."""

    def __init__(self, path: Path, owner: list[Reconciler]) -> None:
        self.path, self.owner, self.seen = path, owner, []
        self.gate = DownloadGate()

    def has(self, sha256: str) -> bool:
        return False

    def busy(self, sha256: str) -> bool:
        return False

    def ensure(self, ref, progress=None, app=""):  # type: ignore[no-untyped-def]
        for phase, done in (("DOWNLOADING", 25), ("DOWNLOADING", 50), ("VERIFYING", 100)):
            progress(phase, done, 100)
            (status,) = self.owner[0].statuses()
            self.seen.append((status.state, status.progress_pct))
        return self.path

    def set_refs(self, refs):  # type: ignore[no-untyped-def]
        self.refs = dict(refs)

    def gc(self, keep=()):  # type: ignore[no-untyped-def]
        return []


def test_download_progress_is_in_the_status_and_notified(runtime, blob, tmp_path):
    path, sha = blob
    owner: list[Reconciler] = []
    store = _ProgressStore(path, owner)
    notified = []
    rec = Reconciler(
        NODE,
        store,  # type: ignore[arg-type]
        {"vm": runtime},
        tmp_path / "apps",
        on_progress=lambda: notified.append(1),
    )
    owner.append(rec)
    (status,) = rec.reconcile(_doc(_vm(sha)))
    assert store.seen == [
        (AppState.DOWNLOADING, 25),
        (AppState.DOWNLOADING, 50),
        (AppState.VERIFYING, 100),
    ]
    assert len(notified) == 3
    assert status.state is AppState.RUNNING and status.progress_pct is None


def test_apps_without_the_new_fields_keep_their_spec_digest(blob) -> None:
    _, sha = blob
    app = _vm(sha)
    old_fields = app.model_dump(
        mode="json",
        exclude={"restart_counter", "purge_counter", "desired", "start_delay_s", "name"}
        | {"disks", "vtpm", "user_data", "user_data_secret"},
    )
    body = json.dumps(old_fields, sort_keys=True, separators=(",", ":"))
    old = hashlib.sha256(body.encode()).hexdigest()
    assert url_spec_digest(app) == old
    assert url_spec_digest(app.model_copy(update={"vtpm": True})) != old
    assert url_spec_digest(app.model_copy(update={"user_data": "mode: eyes"})) != old


def test_where_the_image_comes_from_is_not_part_of_the_workload(blob) -> None:
    _, sha = blob
    app = _vm(sha)
    moved = app.model_copy(update={"image": app.image.model_copy(update={"url": "http://c/x"})})
    assert spec_digest(moved) == spec_digest(app)
    assert url_spec_digest(moved) != url_spec_digest(app)
