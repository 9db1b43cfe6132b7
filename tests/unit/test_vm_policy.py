"""vm_policy: the domain a spec becomes (golden + structural), and kernel-bundle unpacking."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from node_agent.runtime.base import PermanentError, WorkloadSpec
from node_agent.runtime.domain_xml import OUTPOST_NS, Domain
from node_agent.runtime.vm_policy import (
    BUNDLE_DIR,
    KernelBundleFiles,
    build_domain,
    domain_name,
    extract_kernel_bundle,
    prepare_domain,
    remove_kernel_bundle,
)

WORK = Path("/var/lib/outpost/apps/6a1c0d52")
SPEC = WorkloadSpec(
    app_uuid="6a1c0d52-0000-4000-8000-000000000001",
    name="camera",
    node_uuid="0b7e4c11-0000-4000-8000-000000000002",
    image_path=Path("/img/testvm.tar"),
    image_sha256="ab" * 32,
    image_format="kernel-bundle",
    work_dir=WORK,
    vcpus=1,
    memory_mib=128,
)
FILES = KernelBundleFiles(
    directory=WORK / BUNDLE_DIR,
    kernel=WORK / BUNDLE_DIR / "kernel",
    initrd=WORK / BUNDLE_DIR / "initrd",
    cmdline="console=ttyS0 quiet",
)

GOLDEN = f"""
<domain xmlns:outpost="{OUTPOST_NS}" type="qemu">
  <name>outpost-0b7e4c11-6a1c0d52</name>
  <metadata>
    <outpost:app app-uuid="6a1c0d52-0000-4000-8000-000000000001"
      node-uuid="0b7e4c11-0000-4000-8000-000000000002"
      image-sha256="{"ab" * 32}" app-name="camera" spec-sha256="{SPEC.digest}"/>
  </metadata>
  <memory unit="MiB">128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <kernel>/var/lib/outpost/apps/6a1c0d52/kernel-bundle/kernel</kernel>
    <initrd>/var/lib/outpost/apps/6a1c0d52/kernel-bundle/initrd</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode="maximum"/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type="usb" model="none"/>
    <serial type="pty">
      <log file="/var/lib/outpost/apps/6a1c0d52/console.log" append="on"/>
      <target port="0"/>
    </serial>
    <memballoon model="none"/>
  </devices>
</domain>
"""


def canonical(xml: str) -> str:
    return ET.canonicalize(xml, strip_text=True)


def test_domain_matches_golden() -> None:
    assert canonical(build_domain(SPEC, "tcg", FILES).to_xml()) == canonical(GOLDEN)


def test_ports_are_closed_by_default() -> None:
    root = ET.fromstring(build_domain(SPEC, "tcg", FILES).to_xml())
    devices = root.find("devices")
    assert devices is not None
    for tag in ("graphics", "video", "sound", "audio", "channel", "interface", "hostdev", "input"):
        assert devices.find(tag) is None, tag
    usb = [c.attrib for c in devices.findall("controller") if c.get("type") == "usb"]
    assert usb == [{"type": "usb", "model": "none"}]
    assert devices.find("memballoon").get("model") == "none"  # type: ignore[union-attr]
    assert root.find("features/acpi") is not None
    assert root.findtext("on_poweroff") == "destroy"
    assert root.findtext("on_crash") == "destroy"


def test_serial_console_logs_to_work_dir_and_is_reached_through_libvirt_only() -> None:
    domain = build_domain(SPEC, "tcg", FILES)
    assert [(s.type, s.log_file, s.append) for s in domain.devices.serials] == [
        ("pty", str(WORK / "console.log"), True)
    ]
    assert domain.devices.consoles == ()  # no extra console device


@pytest.mark.parametrize(("accel", "domain_type"), [("kvm", "kvm"), ("tcg", "qemu")])
def test_domain_type_follows_accelerator(accel: str, domain_type: str) -> None:
    assert build_domain(SPEC, accel, FILES).type == domain_type


def test_unknown_accelerator_is_refused() -> None:
    with pytest.raises(ValueError, match="hvf"):
        build_domain(SPEC, "hvf", FILES)


def test_domain_name_is_unique_per_node() -> None:
    assert domain_name(SPEC.node_uuid, SPEC.app_uuid) == "outpost-0b7e4c11-6a1c0d52"
    assert domain_name("ffffffff-1", SPEC.app_uuid) != domain_name(SPEC.node_uuid, SPEC.app_uuid)


def test_metadata_carries_app_node_image_and_name() -> None:
    meta = build_domain(SPEC, "tcg", FILES).metadata
    assert meta is not None
    assert (meta.app_uuid, meta.node_uuid, meta.image_sha256, meta.app_name) == (
        SPEC.app_uuid,
        SPEC.node_uuid,
        SPEC.image_sha256,
        SPEC.name,
    )


@pytest.mark.parametrize("bad", [{"vcpus": 0}, {"memory_mib": 0}])
def test_invalid_resources_are_permanent_errors(bad: dict[str, int]) -> None:
    with pytest.raises(PermanentError, match=SPEC.app_uuid):
        build_domain(replace(SPEC, **bad), "tcg", FILES)  # type: ignore[arg-type]


def test_unsupported_format_names_the_format(tmp_path: Path) -> None:
    spec = replace(SPEC, image_format="qcow2", work_dir=tmp_path)
    with pytest.raises(PermanentError, match="qcow2"):
        prepare_domain(spec, "tcg")
    assert list(tmp_path.iterdir()) == []


# -- kernel-bundle unpacking -----------------------------------------------------------------


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return path


GOOD = [("kernel", b"K" * 1000), ("initrd", b"I" * 500), ("cmdline", b"console=ttyS0 quiet\n")]


def test_extracts_kernel_bundle(tmp_path: Path) -> None:
    image = make_tar(tmp_path / "vm.tar", GOOD)
    files = extract_kernel_bundle(image, tmp_path / "work")
    assert files.kernel.read_bytes() == b"K" * 1000
    assert files.initrd is not None and files.initrd.read_bytes() == b"I" * 500
    assert files.cmdline == "console=ttyS0 quiet"
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o755
    assert stat.S_IMODE(files.kernel.stat().st_mode) == 0o644
    assert sorted(p.name for p in files.directory.iterdir()) == ["initrd", "kernel"]


def test_prepare_domain_points_at_unpacked_files(tmp_path: Path) -> None:
    image = make_tar(tmp_path / "vm.tar", GOOD)
    spec = replace(SPEC, image_path=image, work_dir=tmp_path / "work")
    domain = prepare_domain(spec, "kvm", uuid="3f2a3d7e-1111-4222-8333-444455556666")
    assert Path(domain.os.kernel).read_bytes() == b"K" * 1000
    assert domain.os.cmdline == "console=ttyS0 quiet"
    assert domain.uuid == "3f2a3d7e-1111-4222-8333-444455556666"
    assert Domain.from_xml(domain.to_xml()) == domain


def test_accepts_dot_slash_names_and_missing_initrd(tmp_path: Path) -> None:
    image = make_tar(tmp_path / "vm.tar", [("./kernel", b"K"), ("./cmdline", b"quiet")])
    files = extract_kernel_bundle(image, tmp_path / "work")
    assert files.initrd is None and files.cmdline == "quiet"


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([*GOOD, ("../kernel", b"evil")], "not allowed"),
        ([("../../etc/kernel", b"evil"), *GOOD[1:]], "not allowed"),
        ([("/kernel", b"evil"), *GOOD[1:]], "not allowed"),
        ([("sub/kernel", b"evil"), *GOOD[1:]], "not allowed"),
        ([*GOOD, ("extra", b"x")], "not allowed"),
        ([symlink("kernel", "/etc/shadow"), *GOOD[1:]], "not a regular file"),
        ([directory("kernel"), *GOOD[1:]], "not a regular file"),
        ([*GOOD, ("kernel", b"again")], "duplicated"),
        (GOOD[1:], "lacks kernel"),
        ([*GOOD[:2], ("cmdline", b"a\x1bb")], "control characters"),
        ([*GOOD[:2], ("cmdline", b"\xff\xfe")], "cmdline"),
        ([*GOOD[:2], ("cmdline", b"x" * 5000)], "too long"),
    ],
)
def test_refuses_bad_bundles_before_writing(
    tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], message: str
) -> None:
    image = make_tar(tmp_path / "vm.tar", members)
    with pytest.raises(PermanentError, match=message):
        extract_kernel_bundle(image, tmp_path / "work")
    assert not (tmp_path / "work").exists()
    assert not (tmp_path / "etc").exists()


def test_refuses_compressed_or_garbage(tmp_path: Path) -> None:
    plain = make_tar(tmp_path / "vm.tar", GOOD).read_bytes()
    (tmp_path / "vm.tar.gz").write_bytes(gzip.compress(plain))
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    for name in ("vm.tar.gz", "junk"):
        with pytest.raises(PermanentError, match="uncompressed tar"):
            extract_kernel_bundle(tmp_path / name, tmp_path / "work")


def test_remove_kernel_bundle_keeps_console_log(tmp_path: Path) -> None:
    work = tmp_path / "work"
    files = extract_kernel_bundle(make_tar(tmp_path / "vm.tar", GOOD), work)
    (work / "console.log").write_text("boot\n")
    remove_kernel_bundle(files.directory)
    assert sorted(p.name for p in work.iterdir()) == ["console.log"]
    remove_kernel_bundle(files.directory)  # idempotent


def test_remove_kernel_bundle_refuses_other_directories(tmp_path: Path) -> None:
    (tmp_path / "kernel").write_bytes(b"not ours")
    with pytest.raises(ValueError):
        remove_kernel_bundle(tmp_path)
    assert (tmp_path / "kernel").exists()
