"""The Vagrant lab: the Vagrantfile validates, the locally built box has the vagrant-libvirt
layout and adds offline into a private VAGRANT_HOME.

Needs Debian's ``vagrant`` and ``vagrant-libvirt`` (scripts/setup.sh installs them). The box
tests build (or reuse) the node image and the box in build/node.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from attestation.files import sha256_file
from images.vagrant_box import BOX_NAME, build_box

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


def _vagrant(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is not installed: run scripts/setup.sh")
    env = {
        **os.environ,
        "VAGRANT_HOME": str(home),
        "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check over the network
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        **env,
    }
    return subprocess.run(
        ["vagrant", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _qemu_img_info(path: Path) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def box() -> Path:
    return build_box(REPO_ROOT / "build" / "node")


def test_the_vagrantfile_validates(tmp_path):
    done = _vagrant(tmp_path / "vagrant.d", "validate")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout


@pytest.mark.slow
def test_the_box_has_the_vagrant_libvirt_layout(box: Path, tmp_path):
    with tarfile.open(box) as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        metadata = json.load(tar.extractfile("metadata.json"))  # type: ignore[arg-type]
        tar.extract("box.img", tmp_path, filter="data")

    image = tmp_path / "box.img"
    info = _qemu_img_info(image)
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info  # self-contained
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert metadata == {
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": math.ceil(info["virtual-size"] / 2**30),
    }
    assert sha256_file(image) == sha256_file(
        REPO_ROOT / "build" / "node" / "outpost-node-vagrant.qcow2"
    )  # the lab-only variant: the vagrant user and sshd


@pytest.mark.slow
def test_the_box_adds_offline_into_a_private_vagrant_home(box: Path, tmp_path):
    home = tmp_path / "vagrant.d"
    nowhere = "http://127.0.0.1:9"  # any download attempt would fail
    added = _vagrant(
        home, "box", "add", "--name", BOX_NAME, str(box), http_proxy=nowhere, https_proxy=nowhere
    )
    assert added.returncode == 0, added.stdout + added.stderr

    listed = _vagrant(home, "box", "list")
    assert f"{BOX_NAME} (libvirt, 0)" in listed.stdout
    stored = next((home / "boxes").glob("outpost-VAGRANTSLASH-node/0/libvirt"))
    assert sorted(p.name for p in stored.iterdir()) == ["Vagrantfile", "box.img", "metadata.json"]
