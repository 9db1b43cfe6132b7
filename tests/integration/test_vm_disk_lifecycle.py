"""Disk-image VMs through the reconciler, libvirt and QEMU (TCG here), for real.

The guest is ``testvm-disk`` (images.testvm_disk): it counts its boots in sectors of its
own root disk and prints ``OUTPOST-TESTVM-DISK-BOOT n`` and one line per virtio disk on
its serial console, which goes to ``<work_dir>/console.log``.  So the guest itself shows
whether its root disk is the one it wrote before (restart: n goes on) or a fresh overlay
(purge: n is 1 again), and whether its data disk is attached.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from images.manifest import ImageArtifact
from images.testvm_disk import BOOT_MARKER, DISK_MARKER
from node_agent.image_store import ImageStore
from node_agent.metrics import libvirt_stats
from node_agent.reconciler import CrashBackoff, Reconciler
from node_agent.runtime.vm import LibvirtRuntime
from node_agent.runtime.vm_policy import domain_name
from node_agent.volumes import ROOT_DISK
from protocol.desired_state import AppSpec, DataDisk, DesiredState, ImageRef
from protocol.messages import AppState
from tests.fixtures.libvirt_daemon import VmTestbed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOOT_TIMEOUT_S = 120.0
APP_UUID = "0d15c000-0000-4000-8000-0000000000a1"


def _store_with(bed: VmTestbed, image: ImageArtifact) -> ImageStore:
    """An image store under the QEMU-reachable work root holding ``image`` as verified."""
    store = ImageStore(bed.work_root / "images", client=None, max_bytes=1 << 30)  # type: ignore[arg-type]
    blob = store.path(image.sha256)
    shutil.copyfile(image.path, blob)
    blob.chmod(0o644)
    return store


def _app(image: ImageArtifact, **changes: object) -> AppSpec:
    app = AppSpec(
        uuid=APP_UUID,
        name="disk-vm",
        kind="vm",
        image=ImageRef(
            name="testvm-disk",
            sha256=image.sha256,
            size=image.size,
            url="https://controller.invalid/img",
            format=image.format,  # type: ignore[arg-type]
        ),
        resources={"memory_mib": 128},  # type: ignore[arg-type]
    )
    return app.model_copy(update=changes)


def _doc(node_uuid: str, app: AppSpec, generation: int = 1) -> DesiredState:
    return DesiredState(node_uuid=node_uuid, generation=generation, apps=[app])


def _console(bed: VmTestbed) -> Path:
    return bed.work_root / "apps" / APP_UUID / "console.log"


def _wait_for_boot(bed: VmTestbed, count: int) -> str:
    """Wait until the console shows boot number ``count`` fully up; the console text."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    want = f"{BOOT_MARKER} {count}"
    while time.monotonic() < deadline:
        with_text = _console(bed).read_text(errors="replace") if _console(bed).exists() else ""
        tail = with_text[with_text.rfind(want) :] if want in with_text else ""
        if "OUTPOST-TESTVM-UP" in tail:
            return with_text
        time.sleep(0.5)
    pytest.fail(f"no '{want}' boot on the console within {BOOT_TIMEOUT_S} s:\n{with_text[-2000:]}")


def _boots(text: str) -> list[int]:
    return [int(n) for n in re.findall(rf"{BOOT_MARKER} (\d+)", text)]


@pytest.fixture
def runtime(vm_testbed: VmTestbed) -> LibvirtRuntime:
    return vm_testbed.runtime(remove_timeout_s=20.0)


def _reconciler(bed: VmTestbed, store: ImageStore, runtime: LibvirtRuntime) -> Reconciler:
    return Reconciler(
        bed.node_uuid,
        store,
        {"vm": runtime},
        bed.work_root / "apps",
        backoff=CrashBackoff(base_s=1.0, max_s=4.0),
    )


def test_qcow2_vm_boots_through_its_overlay_with_a_data_disk_and_keeps_it_across_a_stop(
    vm_testbed: VmTestbed, testvm_disk_image: ImageArtifact, runtime: LibvirtRuntime
) -> None:
    store = _store_with(vm_testbed, testvm_disk_image)
    rec = _reconciler(vm_testbed, store, runtime)
    app = _app(testvm_disk_image, disks=[DataDisk(name="scratch", size_mib=16)])
    (status,) = rec.reconcile(_doc(vm_testbed.node_uuid, app))
    assert status.state is AppState.RUNNING
    text = _wait_for_boot(vm_testbed, 1)
    assert f"{DISK_MARKER} vdb sectors={16 * 2048} serial=scratch" in text
    blob = store.path(testvm_disk_image.sha256)
    (metrics,) = libvirt_stats(vm_testbed.uri, runtime.list().values())
    assert metrics.uuid == APP_UUID and metrics.disk_used_bytes > 0  # overlay + data disk

    runtime.stop(APP_UUID, timeout_s=60.0)  # ACPI power button: the guest powers off
    assert "power button pressed" in _console(vm_testbed).read_text(errors="replace")
    rec.reconcile(_doc(vm_testbed.node_uuid, app.model_copy(update={"desired": "stopped"}), 2))
    (status,) = rec.reconcile(_doc(vm_testbed.node_uuid, app, 3))
    assert status.state is AppState.RUNNING
    text = _wait_for_boot(vm_testbed, 2)  # same root disk: the guest counts on
    assert _boots(text) == [1, 2]  # and the console log was appended to, not replaced
    assert blob.stat().st_mode & 0o777 == 0o644  # the verified blob itself is untouched


def test_purge_gives_the_guest_a_fresh_root_disk(
    vm_testbed: VmTestbed, testvm_disk_image: ImageArtifact, runtime: LibvirtRuntime
) -> None:
    rec = _reconciler(vm_testbed, _store_with(vm_testbed, testvm_disk_image), runtime)
    app = _app(testvm_disk_image)
    rec.reconcile(_doc(vm_testbed.node_uuid, app))
    _wait_for_boot(vm_testbed, 1)
    overlay = vm_testbed.work_root / "apps" / APP_UUID / ROOT_DISK
    (status,) = rec.reconcile(
        _doc(vm_testbed.node_uuid, app.model_copy(update={"purge_counter": 1}), 2)
    )
    assert status.state is AppState.RUNNING and overlay.is_file()
    # The guest counts its boots on its root disk: a fresh disk counts 1 again. (Not the
    # overlay's inode: ext4 may hand the new file the inode number the old one freed.)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while _boots(_console(vm_testbed).read_text(errors="replace")) != [1, 1]:
        assert time.monotonic() < deadline, _console(vm_testbed).read_text(errors="replace")
        time.sleep(0.5)


def test_a_killed_qemu_is_noticed_by_events_and_the_vm_restarted(
    vm_testbed: VmTestbed, testvm_disk_image: ImageArtifact, runtime: LibvirtRuntime
) -> None:
    woken = threading.Event()
    runtime.watch(woken.set)
    rec = _reconciler(vm_testbed, _store_with(vm_testbed, testvm_disk_image), runtime)
    doc = _doc(vm_testbed.node_uuid, _app(testvm_disk_image))
    rec.reconcile(doc)
    _wait_for_boot(vm_testbed, 1)
    woken.clear()
    name = domain_name(vm_testbed.node_uuid, APP_UUID)
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert woken.wait(30.0), "no lifecycle event after QEMU was killed"
    stops = [e for e in runtime.events if e.domain == name and e.stopped]
    assert stops and stops[-1].name == "stopped/failed"  # QEMU died under libvirt
    (status,) = rec.reconcile(doc)  # what the woken agent loop does
    assert status.state is AppState.RUNNING
    assert _boots(_wait_for_boot(vm_testbed, 2)) == [1, 2]


def test_a_raw_image_boots_too(
    vm_testbed: VmTestbed, testvm_disk_raw_image: ImageArtifact, runtime: LibvirtRuntime
) -> None:
    rec = _reconciler(vm_testbed, _store_with(vm_testbed, testvm_disk_raw_image), runtime)
    (status,) = rec.reconcile(_doc(vm_testbed.node_uuid, _app(testvm_disk_raw_image)))
    assert status.state is AppState.RUNNING
    _wait_for_boot(vm_testbed, 1)
