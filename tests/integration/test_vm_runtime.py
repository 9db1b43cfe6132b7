"""LibvirtRuntime against the real daemon (``qemu:///system``) booting testvm.tar.

Each test checks the runtime's claims independently with the ``virsh`` CLI and the
console log.  Waits have generous bounds only to avoid hanging; nothing asserts speed.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from images import testvm
from images.manifest import ImageArtifact
from node_agent.runtime.base import WorkloadSpec, WorkloadState
from node_agent.runtime.vm_policy import BUNDLE_DIR
from tests.fixtures.libvirt_daemon import VmTestbed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh missing (libvirt-clients)"),
]

BOOT_BOUND_S = 300.0  # a bound against hanging, not an expectation


def virsh(uri: str, *args: str) -> str:
    result = subprocess.run(
        ["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def names(uri: str, *flags: str) -> set[str]:
    return {line.strip() for line in virsh(uri, "list", "--name", *flags).splitlines() if line}


def wait_until(predicate: Callable[[], bool], what: str, bound_s: float = BOOT_BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def console_has(path: Path, text: str, count: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        return path.exists() and path.read_text(errors="replace").count(text) >= count

    return check


def spec_for(bed: VmTestbed, image: Path, sha256: str, app_uuid: str) -> WorkloadSpec:
    return WorkloadSpec(
        app_uuid=app_uuid,
        name="testvm",
        node_uuid=bed.node_uuid,
        image_path=image,
        image_sha256=sha256,
        image_format="kernel-bundle",
        work_dir=bed.work_dir(app_uuid),
        memory_mib=128,  # the Debian cloud kernel triple-faults at 64 MiB
    )


def poweroff_variant(image: ImageArtifact, out: Path) -> tuple[Path, str]:
    """testvm.tar with ``outpost.poweroff`` added to its cmdline (a different image)."""
    with tarfile.open(image.path, "r:") as source, tarfile.open(out, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "cmdline":
                data = data.strip() + f" {testvm.POWEROFF_ARG}\n".encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


APP = "7e57a99d-0000-4000-8000-00000000000"


def test_vm_boots_survives_agent_restart_and_is_removed(
    vm_testbed: VmTestbed, testvm_image: ImageArtifact
) -> None:
    uri = vm_testbed.uri
    spec = spec_for(vm_testbed, testvm_image.path, testvm_image.sha256, APP + "1")
    runtime = vm_testbed.runtime()

    workload = runtime.start(spec)
    name = workload.runtime_id
    assert workload.state is WorkloadState.RUNNING
    assert name in names(uri)
    assert virsh(uri, "domstate", name).strip() == "running"
    console = spec.work_dir / "console.log"
    wait_until(console_has(console, testvm.MARKER), f"{testvm.MARKER} in {console}")
    domain_id = virsh(uri, "domid", name).strip()

    restarted = vm_testbed.runtime()  # a new agent process would do exactly this
    found = restarted.list()
    assert set(found) == {spec.app_uuid}
    assert found[spec.app_uuid].state is WorkloadState.RUNNING
    assert found[spec.app_uuid].runtime_id == name
    assert found[spec.app_uuid].image_sha256 == testvm_image.sha256
    restarted.start(spec)  # idempotent: the running domain is kept
    assert virsh(uri, "domid", name).strip() == domain_id

    restarted.remove(spec.app_uuid)
    assert name not in names(uri, "--all")
    assert restarted.list() == {}
    assert not (spec.work_dir / BUNDLE_DIR).exists()
    assert console.exists()


def test_vm_stops_gracefully_with_acpi(vm_testbed: VmTestbed, testvm_image: ImageArtifact) -> None:
    spec = spec_for(vm_testbed, testvm_image.path, testvm_image.sha256, APP + "2")
    runtime = vm_testbed.runtime()
    name = runtime.start(spec).runtime_id
    console = spec.work_dir / "console.log"
    wait_until(console_has(console, testvm.MARKER), f"{testvm.MARKER} in {console}")
    # the guest runs acpid once its modules are loaded: give it time to get there
    runtime.stop(spec.app_uuid, timeout_s=120.0)
    assert virsh(vm_testbed.uri, "domstate", name, "--reason").strip() == "shut off (shutdown)"
    stopped = runtime.list()[spec.app_uuid]
    assert stopped.state is WorkloadState.STOPPED and stopped.detail == "shut off (shutdown)"
    assert name in names(vm_testbed.uri, "--all")  # persistent: still defined


def test_new_image_redefines_and_poweroff_destroys(
    vm_testbed: VmTestbed, testvm_image: ImageArtifact, tmp_path: Path
) -> None:
    uri = vm_testbed.uri
    spec = spec_for(vm_testbed, testvm_image.path, testvm_image.sha256, APP + "3")
    runtime = vm_testbed.runtime()
    name = runtime.start(spec).runtime_id
    domain_uuid = virsh(uri, "domuuid", name).strip()
    console = spec.work_dir / "console.log"
    wait_until(console_has(console, testvm.MARKER), f"{testvm.MARKER} in {console}")

    # poweroff_variant needs a dir libvirt-qemu may not reach: the runtime copies it anyway
    image, sha256 = poweroff_variant(testvm_image, tmp_path / "testvm-poweroff.tar")
    runtime.start(spec_for(vm_testbed, image, sha256, spec.app_uuid))
    assert virsh(uri, "domuuid", name).strip() == domain_uuid  # same domain, redefined
    assert sha256 in virsh(uri, "dumpxml", name)
    wait_until(lambda: name not in names(uri), f"{name} to power itself off")
    assert name in names(uri, "--all")  # on_poweroff=destroy: shut off, still defined
    workload = runtime.list()[spec.app_uuid]
    assert workload.state is WorkloadState.STOPPED
    assert workload.image_sha256 == sha256
    assert "powering off" in console.read_text(errors="replace")
    assert console.read_text(errors="replace").count(testvm.MARKER) >= 2  # log appended
