"""lab.qemu_node without booting: the QEMU command line, the config disk, bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from images import node_rootfs
from images.common import ImageBuildError
from images.node_image import agent_settings, config_disk
from lab.errors import LabError
from lab.qemu_node import GUEST_CONTROLLER_URL, QemuNode, QemuNodeConfig

BUNDLE = {
    "controller.json": json.dumps({"url": "https://127.0.0.1:9443", "batch": "b"}),
    "root-ca.pem": "CA",
    "onboarding.pem": "CERT",
    "onboarding.key": "KEY",
}


def _node(tmp_path: Path, name: str = "n1", bundle: dict[str, str] = BUNDLE) -> QemuNode:
    source = tmp_path / "bundle"
    source.mkdir(exist_ok=True)
    for file, text in bundle.items():
        (source / file).write_text(text)
    image = tmp_path / "base.qcow2"
    if not image.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    config = QemuNodeConfig(name, tmp_path / "work", image, "127.0.0.1", 9443, source)
    return QemuNode(config)


def _mcopy_read(disk: Path, name: str) -> str:
    done = subprocess.run(
        ["mtype", "-i", str(disk), f"::{name}"],
        capture_output=True,
        text=True,
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    return done.stdout


def test_the_network_reaches_only_the_controller_through_one_guestfwd(tmp_path):
    node = _node(tmp_path)

    argv = node.qemu_argv("tcg")

    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.startswith("user,id=n0,restrict=on,")
    assert netdev.count("guestfwd=") == 1
    assert "guestfwd=tcp:10.0.2.100:8443-cmd:" in netdev
    assert netdev.endswith(" 127.0.0.1 9443")
    assert "hostfwd" not in netdev


def test_probe_ports_are_forwarded_from_loopback_only(tmp_path):
    node = _node(tmp_path)
    node.config = dataclasses.replace(node.config, probe_ports=((40022, 22), (40080, 80)))

    netdev = node.qemu_argv("tcg")[node.qemu_argv("tcg").index("-netdev") + 1]

    assert "hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40080-:80," in netdev
    assert netdev.endswith(" 127.0.0.1 9443")  # the guestfwd relay is unchanged


def test_the_node_gets_a_crb_vtpm_from_its_own_swtpm_socket(tmp_path):
    node = _node(tmp_path)

    argv = node.qemu_argv("tcg")

    assert f"socket,id=chrtpm,path={node.dir / 'swtpm.sock'}" in argv
    assert "emulator,id=tpm0,chardev=chrtpm" in argv
    assert "tpm-crb,tpmdev=tpm0" in argv
    assert argv[argv.index("-machine") + 1].split(",")[0] == "q35"  # ACPI: the guest sees the TPM


def test_tcg_unless_kvm_was_chosen(tmp_path):
    node = _node(tmp_path)

    assert node.qemu_argv("tcg")[node.qemu_argv("tcg").index("-accel") + 1].startswith("tcg")
    assert "kvm" in node.qemu_argv("kvm")
    assert "-cpu" not in node.qemu_argv("tcg")


def test_the_serial_defaults_to_the_node_name(tmp_path):
    assert _node(tmp_path).serial == "qemu-n1"


@pytest.mark.parametrize("name", ["", "a b", "x/y", "n;rm"])
def test_a_bad_node_name_is_refused(tmp_path, name):
    with pytest.raises(LabError, match="use letters, digits"):
        _node(tmp_path, name=name)


@pytest.mark.parametrize(
    "changes", [{"accel": "hvf"}, {"memory_mib": 128}, {"vcpus": 0}], ids=["accel", "mem", "cpu"]
)
def test_bad_machine_settings_are_refused(tmp_path, changes):
    config = dataclasses.replace(_node(tmp_path).config, **changes)

    with pytest.raises(LabError, match="qemu node"):
        QemuNode(config)


def test_an_incomplete_bundle_is_refused_and_nothing_starts(tmp_path):
    node = _node(tmp_path, bundle={k: v for k, v in BUNDLE.items() if k != "onboarding.key"})

    with pytest.raises(LabError, match=r"missing onboarding\.key"):
        node.start()

    assert not node.is_running()
    assert not (node.dir / "disk.qcow2").exists()
    assert node.pids() == {}


def test_the_config_disk_carries_the_settings_and_the_bundle_with_the_guest_url(tmp_path):
    node = _node(tmp_path)
    node.dir.mkdir()

    node._prepare_disks()  # needs qemu-img, mtools: as in the image build

    disk = node.dir / "config.img"
    settings = yaml.safe_load(_mcopy_read(disk, "agent.yaml"))
    assert settings["serial"] == "qemu-n1"
    assert settings["tpm"] == "device:/dev/tpmrm0"
    assert settings["bundle_dir"] == node_rootfs.BUNDLE_DIR
    assert json.loads(_mcopy_read(disk, "controller.json"))["url"] == GUEST_CONTROLLER_URL
    assert _mcopy_read(disk, "onboarding.key") == "KEY"


def test_a_config_disk_refuses_unknown_files(tmp_path):
    with pytest.raises(ImageBuildError, match="unexpected bundle files"):
        config_disk(tmp_path / "c.img", agent_settings("s1"), {"evil.sh": b"x"})


def test_the_overlay_sits_on_the_node_s_own_pin_of_the_image(tmp_path):
    node = _node(tmp_path)
    node.dir.mkdir()

    node._prepare_disks()
    (tmp_path / "base.qcow2").unlink()  # e.g. replaced by a rebuild

    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(node.dir / "disk.qcow2")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(info)["backing-filename"] == str(node.dir / "base.qcow2")
    assert (node.dir / "base.qcow2").is_file()
