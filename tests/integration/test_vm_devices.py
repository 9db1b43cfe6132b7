"""Devices on request through the real libvirt/QEMU (TCG): a vTPM run by libvirt's swtpm."""

from __future__ import annotations

import subprocess

import pytest

from images.manifest import ImageArtifact
from node_agent.runtime.base import WorkloadSpec, WorkloadState
from node_agent.runtime.domain_xml import Domain, Tpm
from tests.fixtures.libvirt_daemon import VmTestbed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "7e57a99d-0000-4000-8000-0000000007a1"


def test_a_vm_asking_for_a_vtpm_runs_with_its_own_swtpm(
    vm_testbed: VmTestbed, testvm_image: ImageArtifact
) -> None:
    runtime = vm_testbed.runtime()
    spec = WorkloadSpec(
        app_uuid=APP,
        name="tpm-vm",
        node_uuid=vm_testbed.node_uuid,
        image_path=testvm_image.path,
        image_sha256=testvm_image.sha256,
        image_format="kernel-bundle",
        work_dir=vm_testbed.work_dir(APP),
        memory_mib=128,
        vtpm=True,
    )
    workload = runtime.start(spec)
    assert workload.state is WorkloadState.RUNNING
    xml = subprocess.run(
        ["virsh", "-c", vm_testbed.uri, "dumpxml", workload.runtime_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Domain.from_xml(xml).devices.tpms == (Tpm(),)
    uuid = workload.extra["domain_uuid"]
    swtpm = subprocess.run(["pgrep", "-af", "swtpm"], capture_output=True, text=True).stdout
    assert uuid in swtpm  # libvirt started one swtpm for this domain (state dir by its uuid)
    runtime.remove(APP)
