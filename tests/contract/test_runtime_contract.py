"""The :class:`~node_agent.runtime.base.Runtime` contract, one behaviour per test, run
against every implementation the reconciler may be given: the in-memory fake
(``tests/fakes.py``), the VM runtime on libvirt's in-process ``test:///default`` driver,
the container runtime on real podman (a private store) and the VM runtime on a real,
private libvirt daemon with QEMU (``tests/fixtures/private_libvirt.py``).  What the
reconciler relies on holds for all of them.

Each backend comes as a :class:`Backend`: the runtime, a spec it can run, and a way to
make a workload stop on its own (the fake's ``crash``, ``virDomainDestroy`` behind the
runtime's back, ``podman kill``, SIGKILL to QEMU).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from node_agent.runtime.base import Runtime, WorkloadSpec, WorkloadState
from node_agent.runtime.vm import LibvirtRuntime
from node_agent.runtime.vm_policy import domain_name
from tests.fakes import FakeRuntime
from tests.fixtures.libvirt_daemon import VmTestbed, cleanup_node_domains
from tests.integration.test_crash_loop_states import qemu_pid
from tests.unit.test_vm_runtime_testdriver import make_bundle

TEST_DRIVER = "test:///default"
LONG_RUNNING = ("sh", "-c", "sleep 3600")


@dataclass
class Backend:
    runtime: Runtime
    make_spec: Callable[..., WorkloadSpec]
    stop_on_its_own: Callable[[str], None]
    other_node: Callable[[], Runtime] | None = None
    """A runtime of another node on the same daemon (None: nothing is shared)."""


def _fake(tmp_path: Path) -> Iterator[Backend]:
    runtime = FakeRuntime()
    node = str(uuid.uuid4())
    image = tmp_path / "img"
    image.write_bytes(b"x")

    def make_spec(**changes: object) -> WorkloadSpec:
        app = str(uuid.uuid4())
        spec = WorkloadSpec(app, "web", node, image, "ab" * 32, "oci-archive", tmp_path / app)
        return dataclasses.replace(spec, **changes)

    yield Backend(runtime, make_spec, runtime.crash)


def _libvirt_test_driver(tmp_path: Path) -> Iterator[Backend]:
    node = str(uuid.uuid4())
    image, sha = make_bundle(tmp_path / "vm.tar")

    def runtime_of(node_uuid: str) -> LibvirtRuntime:
        return LibvirtRuntime(
            TEST_DRIVER, node_uuid, "tcg", remove_timeout_s=0.5, poll_interval_s=0.01
        )

    def make_spec(**changes: object) -> WorkloadSpec:
        app = str(uuid.uuid4())
        spec = WorkloadSpec(app, "vm", node, image, sha, "kernel-bundle", tmp_path / app)
        return dataclasses.replace(spec, **changes)

    def destroy(app_uuid: str) -> None:
        libvirt.open(TEST_DRIVER).lookupByName(domain_name(node, app_uuid)).destroy()

    other = str(uuid.uuid4())
    try:
        yield Backend(runtime_of(node), make_spec, destroy, lambda: runtime_of(other))
    finally:
        cleanup_node_domains(TEST_DRIVER, node)
        cleanup_node_domains(TEST_DRIVER, other)


def _podman(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    engine = request.getfixturevalue("podman_engine")
    image = request.getfixturevalue("busybox_image")
    node, other = str(uuid.uuid4()), str(uuid.uuid4())
    runtime = engine.runtime(node)

    def make_spec(**changes: object) -> WorkloadSpec:
        app = str(uuid.uuid4())
        spec = WorkloadSpec(
            app, "web", node, image.path, image.sha256, image.format, tmp_path / app,
            command=LONG_RUNNING,
        )  # fmt: skip
        return dataclasses.replace(spec, **changes)

    def kill(app_uuid: str) -> None:
        engine.run("kill", runtime.list()[app_uuid].runtime_id)

    try:
        yield Backend(runtime, make_spec, kill, lambda: engine.runtime(other))
    finally:
        engine.remove_node(node)
        engine.remove_node(other)


def _libvirt_qemu(request: pytest.FixtureRequest) -> Iterator[Backend]:
    uri = request.getfixturevalue("private_libvirt_uri")
    image = request.getfixturevalue("testvm_image")
    work_root = Path(tempfile.mkdtemp(prefix="outpost-vm-", dir="/tmp"))  # QEMU can reach it
    work_root.chmod(0o755)
    bed = VmTestbed(uri, request.getfixturevalue("hypervisor_accel"), str(uuid.uuid4()), work_root)
    runtime = bed.runtime()

    def make_spec(**changes: object) -> WorkloadSpec:
        app = str(uuid.uuid4())
        spec = WorkloadSpec(
            app, "vm", bed.node_uuid, image.path, image.sha256, image.format, bed.work_dir(app),
            memory_mib=128,
        )  # fmt: skip
        return dataclasses.replace(spec, **changes)

    def kill_qemu(app_uuid: str) -> None:
        pid = qemu_pid(domain_name(bed.node_uuid, app_uuid))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    other = str(uuid.uuid4())

    def other_node() -> Runtime:
        return LibvirtRuntime(bed.uri, other, bed.accel)

    try:
        yield Backend(runtime, make_spec, kill_qemu, other_node)
    finally:
        for node in (bed.node_uuid, other):
            cleanup_node_domains(uri, node)
        shutil.rmtree(work_root, ignore_errors=True)


BACKENDS = [
    pytest.param("fake", id="fake"),
    pytest.param("libvirt-test", id="libvirt-test"),
    pytest.param("podman", id="podman", marks=pytest.mark.integration),
    pytest.param(
        "libvirt-qemu", id="libvirt-qemu", marks=[pytest.mark.integration, pytest.mark.slow]
    ),
]


SHARED_DAEMON_BACKENDS = BACKENDS[1:]
"""Where nodes share one daemon (the fake has none: each instance is its own)."""


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    makers = {
        "fake": lambda: _fake(tmp_path),
        "libvirt-test": lambda: _libvirt_test_driver(tmp_path),
        "podman": lambda: _podman(request, tmp_path),
        "libvirt-qemu": lambda: _libvirt_qemu(request),
    }
    yield from makers[request.param]()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


@pytest.fixture(params=SHARED_DAEMON_BACKENDS)
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend(request, tmp_path)


def _wait_stopped(runtime: Runtime, app_uuid: str) -> None:
    """Until the runtime shows the workload stopped (the backend reacts asynchronously)."""
    deadline = time.monotonic() + 30
    while runtime.list()[app_uuid].state is not WorkloadState.STOPPED:
        assert time.monotonic() < deadline, "the workload did not stop"
        time.sleep(0.1)


def test_a_started_workload_is_listed_running_under_its_app(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    found = backend.runtime.list()[spec.app_uuid]
    assert found.state is WorkloadState.RUNNING
    assert found.app_uuid == spec.app_uuid and found.runtime_id


def test_a_workload_carries_the_digest_of_the_spec_it_was_made_from(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    found = backend.runtime.list()[spec.app_uuid]
    assert found.spec_digest == spec.digest and found.image_sha256 == spec.image_sha256


def test_starting_the_same_spec_again_changes_nothing(backend: Backend):
    spec = backend.make_spec()
    first = backend.runtime.start(spec)
    again = backend.runtime.start(spec)
    assert again.runtime_id == first.runtime_id
    assert list(backend.runtime.list()) == [spec.app_uuid]


def test_starting_a_changed_spec_replaces_the_workload(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    changed = dataclasses.replace(spec, env=(("MODE", "new"),))
    backend.runtime.start(changed)
    found = backend.runtime.list()
    assert list(found) == [spec.app_uuid]
    assert found[spec.app_uuid].spec_digest == changed.digest != spec.digest
    assert found[spec.app_uuid].state is WorkloadState.RUNNING


def test_a_stopped_workload_is_listed_stopped(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    backend.runtime.stop(spec.app_uuid, timeout_s=0)
    assert backend.runtime.list()[spec.app_uuid].state is WorkloadState.STOPPED


def test_a_stopped_workload_starts_again(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    backend.runtime.stop(spec.app_uuid, timeout_s=0)
    backend.runtime.start(spec)
    assert backend.runtime.list()[spec.app_uuid].state is WorkloadState.RUNNING


def test_a_removed_workload_is_no_longer_listed(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    backend.runtime.remove(spec.app_uuid)
    assert spec.app_uuid not in backend.runtime.list()


def test_stopping_or_removing_a_missing_workload_is_not_an_error(backend: Backend):
    missing = str(uuid.uuid4())
    backend.runtime.stop(missing, timeout_s=0)
    backend.runtime.remove(missing)
    assert missing not in backend.runtime.list()


def test_a_workload_that_stops_on_its_own_is_listed_stopped_with_how(backend: Backend):
    spec = backend.make_spec()
    backend.runtime.start(spec)
    backend.stop_on_its_own(spec.app_uuid)
    _wait_stopped(backend.runtime, spec.app_uuid)
    found = backend.runtime.list()[spec.app_uuid]
    assert found.detail and found.detail != "running"
    if backend.runtime.kind == "container":
        assert found.exit_code is not None


def test_another_nodes_workloads_are_neither_listed_nor_removed(shared_backend: Backend):
    backend = shared_backend
    assert backend.other_node is not None
    spec = backend.make_spec()
    backend.runtime.start(spec)
    other = backend.other_node()
    assert spec.app_uuid not in other.list()
    other.remove(spec.app_uuid)
    assert spec.app_uuid in backend.runtime.list()
