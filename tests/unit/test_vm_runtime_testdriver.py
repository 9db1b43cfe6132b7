"""LibvirtRuntime on libvirt's built-in ``test:///default`` driver (no QEMU, in-process).

The test driver keeps its domains per process and "runs" them without a hypervisor, so
these tests cover defining (the XML passes libvirt's validation), metadata lookup,
idempotence, redefinition, stop/remove and the error mapping in milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from node_agent.runtime.base import PermanentError, TemporaryError, WorkloadSpec, WorkloadState
from node_agent.runtime.domain_xml import Domain
from node_agent.runtime.vm import LibvirtRuntime, qemu_user_for_uri
from node_agent.runtime.vm_policy import domain_name
from tests.fixtures.libvirt_daemon import cleanup_node_domains

URI = "test:///default"


def make_bundle(path: Path, cmdline: str = "console=ttyS0") -> tuple[Path, str]:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in (("kernel", b"K" * 64), ("initrd", b"I" * 32), ("cmdline", cmdline)):
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def node_uuid() -> Iterator[str]:
    node = str(uuid.uuid4())
    yield node
    cleanup_node_domains(URI, node)


@pytest.fixture
def runtime(node_uuid: str) -> LibvirtRuntime:
    return LibvirtRuntime(URI, node_uuid, "tcg", remove_timeout_s=1.0, poll_interval_s=0.01)


@pytest.fixture
def spec(tmp_path: Path, node_uuid: str) -> WorkloadSpec:
    image, sha = make_bundle(tmp_path / "vm.tar")
    app = str(uuid.uuid4())
    return WorkloadSpec(
        app_uuid=app,
        name="unit-vm",
        node_uuid=node_uuid,
        image_path=image,
        image_sha256=sha,
        image_format="kernel-bundle",
        work_dir=tmp_path / "apps" / app,
        memory_mib=128,
    )


def dom_of(spec: WorkloadSpec) -> libvirt.virDomain:
    return libvirt.open(URI).lookupByName(domain_name(spec.node_uuid, spec.app_uuid))


def test_start_defines_persistent_domain_with_metadata(
    runtime: LibvirtRuntime, spec: WorkloadSpec
) -> None:
    workload = runtime.start(spec)
    assert workload.state is WorkloadState.RUNNING
    assert workload.runtime_id == domain_name(spec.node_uuid, spec.app_uuid)
    assert workload.image_sha256 == spec.image_sha256
    assert workload.extra["console_log"] == str(spec.work_dir / "console.log")
    dom = dom_of(spec)
    assert dom.isPersistent() and dom.isActive()
    defined = Domain.from_xml(dom.XMLDesc(0))
    assert defined.type == "qemu" and defined.memory.mib == 128
    assert defined.metadata is not None and defined.metadata.app_name == "unit-vm"
    assert runtime.list() == {spec.app_uuid: workload}


def test_start_is_idempotent(runtime: LibvirtRuntime, spec: WorkloadSpec) -> None:
    first = runtime.start(spec)
    domain_id = dom_of(spec).ID()
    assert runtime.start(spec) == first
    assert dom_of(spec).ID() == domain_id  # not restarted


def test_new_image_redefines_same_domain(
    runtime: LibvirtRuntime, spec: WorkloadSpec, tmp_path: Path
) -> None:
    runtime.start(spec)
    domain_uuid = dom_of(spec).UUIDString()
    image, sha = make_bundle(tmp_path / "vm2.tar", cmdline="console=ttyS0 new")
    workload = runtime.start(replace(spec, image_path=image, image_sha256=sha))
    assert workload.image_sha256 == sha and workload.state is WorkloadState.RUNNING
    dom = dom_of(spec)
    assert dom.UUIDString() == domain_uuid
    assert Domain.from_xml(dom.XMLDesc(0)).os.cmdline == "console=ttyS0 new"


def test_stopped_domain_is_redefined_from_spec(runtime: LibvirtRuntime, spec: WorkloadSpec) -> None:
    runtime.start(spec)
    runtime.stop(spec.app_uuid)
    assert runtime.list()[spec.app_uuid].state is WorkloadState.STOPPED
    runtime.start(replace(spec, memory_mib=256))
    assert Domain.from_xml(dom_of(spec).XMLDesc(0)).memory.mib == 256


def test_agent_restart_finds_domains_of_its_node_only(
    runtime: LibvirtRuntime, spec: WorkloadSpec, node_uuid: str
) -> None:
    runtime.start(spec)
    again = LibvirtRuntime(URI, node_uuid, "tcg")
    assert set(again.list()) == {spec.app_uuid}
    other = LibvirtRuntime(URI, str(uuid.uuid4()), "tcg")
    assert other.list() == {}
    with pytest.raises(PermanentError, match="node"):
        other.start(spec)


def test_stop_and_remove(runtime: LibvirtRuntime, spec: WorkloadSpec) -> None:
    runtime.start(spec)
    (spec.work_dir / "console.log").write_text("guest output\n")
    runtime.stop(spec.app_uuid, timeout_s=1.0)
    stopped = runtime.list()[spec.app_uuid]
    assert stopped.state is WorkloadState.STOPPED and "shut off" in stopped.detail
    runtime.stop(spec.app_uuid)  # already stopped: no error
    runtime.remove(spec.app_uuid)
    assert runtime.list() == {}
    with pytest.raises(libvirt.libvirtError):
        dom_of(spec)
    assert sorted(p.name for p in spec.work_dir.iterdir()) == ["console.log"]


def test_missing_app_is_not_an_error(runtime: LibvirtRuntime) -> None:
    runtime.stop(str(uuid.uuid4()))
    runtime.remove(str(uuid.uuid4()))


def test_remove_destroys_running_domain(runtime: LibvirtRuntime, spec: WorkloadSpec) -> None:
    runtime.start(spec)
    runtime.remove(spec.app_uuid)
    assert runtime.list() == {}


def test_paused_domain_is_resumed(runtime: LibvirtRuntime, spec: WorkloadSpec) -> None:
    runtime.start(spec)
    dom_of(spec).suspend()
    assert runtime.list()[spec.app_uuid].detail == "paused"
    assert runtime.start(spec).state is WorkloadState.RUNNING


def test_foreign_domain_with_our_name_is_refused(
    runtime: LibvirtRuntime, spec: WorkloadSpec
) -> None:
    name = domain_name(spec.node_uuid, spec.app_uuid)
    xml = (
        f"<domain type='test'><name>{name}</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    conn = libvirt.open(URI)
    dom = conn.defineXML(xml)
    try:
        with pytest.raises(PermanentError, match="taken"):
            runtime.start(spec)
        assert runtime.list() == {}
    finally:
        dom.undefine()


def test_unsupported_image_format(runtime: LibvirtRuntime, spec: WorkloadSpec) -> None:
    with pytest.raises(PermanentError, match="oci-archive"):
        runtime.start(replace(spec, image_format="oci-archive"))


def test_unreachable_daemon_is_temporary(node_uuid: str) -> None:
    broken = LibvirtRuntime("qemu+unix:///system?socket=/nonexistent/sock", node_uuid, "tcg")
    with pytest.raises(TemporaryError, match="cannot connect"):
        broken.list()


def test_bad_accelerator_is_refused(node_uuid: str) -> None:
    with pytest.raises(ValueError):
        LibvirtRuntime(URI, node_uuid, "auto")


def test_work_dir_qemu_cannot_reach_is_refused(
    node_uuid: str, spec: WorkloadSpec, tmp_path: Path
) -> None:
    # pytest's temp dirs live under /tmp/pytest-of-<user>, mode 0700
    guarded = LibvirtRuntime(URI, node_uuid, "tcg", qemu_user="nobody")
    with pytest.raises(PermanentError, match="not searchable"):
        guarded.start(spec)


def test_work_dir_qemu_can_reach_is_accepted(node_uuid: str, spec: WorkloadSpec) -> None:
    guarded = LibvirtRuntime(URI, node_uuid, "tcg", qemu_user="nobody")
    with tempfile.TemporaryDirectory(prefix="outpost-unit-", dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)
        work = Path(tmp) / "app"
        assert guarded.start(replace(spec, work_dir=work)).state is WorkloadState.RUNNING
        guarded.remove(spec.app_uuid)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("test:///default", None),
        ("qemu:///session", None),
        ("qemu+ssh://edge1/system", None),
        ("qemu:///system", "qemu-user-from-conf"),
        ("qemu:///system?socket=/tmp/x/sock", "qemu-user-from-conf"),
    ],
)
def test_qemu_user_for_uri(tmp_path: Path, uri: str, expected: str | None) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('# user = "commented"\nuser = "qemu-user-from-conf"\n')
    assert qemu_user_for_uri(uri, conf) == expected
