"""A whole node booted under QEMU from the node image.

One node (``lab.qemu_node.QemuNode``: TCG unless KVM really works, its own swtpm vTPM with
EK certificates from a local CA, a network that reaches only the controller) boots the
cached node image, prints its identity on the console, onboards and attests over its vTPM,
shows nothing to a port scan from outside (the image's defaults: sshd off, the agent's
lockdown on), passes its stand-in GPU (an emulated IOMMU and ``virtio-gpu-pci``:
lab.qemu_node) through to a VM app whose guest reports the device on its console, refuses a
second app for it, gives it back to its host driver when the app goes, runs a container app
(busybox) and a VM app (testvm, nested under TCG), and after a power cycle with the
controller away brings those two apps back from its checkpoint. (The GPU guest boots before
the other VM app so that the two nested TCG guests do not share the node's CPU.)

The tests share one controller and one node and run in file order (one boot, one reboot).
Guest time under TCG on a 2-core host: ~2-3 min to an attested agent, ~2 min more until
both apps run; see docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from controller.cli import main as controller_main
from images.manifest import Manifest
from images.testvm import PCI_MARKER
from lab.qemu_node import (
    EDU_ADDRESS,
    GPU_ADDRESS,
    GPU_HOST_DRIVER,
    GPU_VENDOR_DEVICE,
    GUEST_CONTROLLER_IP,
    GUEST_CONTROLLER_URL,
    SHARED_GROUP_ADDRESSES,
    QemuNode,
    QemuNodeConfig,
)
from lab.swtpm_ek import LocalEkCa
from tests.fixtures.controller_server import ControllerServer, free_port, start_controller

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]
SERIAL = "qemu-acceptance-1"
WAIT_S = 900.0
APPS = {"c1": "RUNNING", "v1": "RUNNING"}
CONTAINER_CMD = ["sh", "-c", "echo hello-qemu-node; while true; do sleep 5; done"]
SCANNED = (22, 53, 80, 111, 443, 2375, 5900, 8080, 9090, 16509, 16514)
"""Guest TCP ports forwarded from the host for the scan: SSH, DNS, web, rpcbind, container
and VM management daemons, libvirt."""
SCAN_WAIT_S = 10.0


class Lab:
    """The controller (restartable) and the node of this module."""

    def __init__(self, base: Path, node_image: Path) -> None:
        self.base = base
        self.port = free_port()
        data_dir, token_file = base / "controller", base / "admin-token"
        ek_bundle = LocalEkCa(base / "ek-ca").ensure_ca()  # the vTPM's maker
        assert (
            controller_main(
                [
                    "--data-dir",
                    str(data_dir),
                    "init",
                    "--public-url",
                    GUEST_CONTROLLER_URL,
                    "--tls-host",
                    GUEST_CONTROLLER_IP,
                    "--token-file",
                    str(token_file),
                    "--node-config-interval",
                    "5",
                    "--ek-ca-bundle",
                    str(ek_bundle),
                    "--allow-unpinned-claims",  # claimed before its console shows the identity
                ]
            )
            == 0
        )
        bundle = ["--data-dir", str(data_dir), "bundle", "--out", str(base / "b")]
        assert controller_main(bundle) == 0
        self.controller = ControllerServer(
            data_dir, f"https://127.0.0.1:{self.port}", token_file.read_text().strip(), None
        )  # type: ignore[arg-type]
        work = Path(tempfile.mkdtemp(prefix="outpost-qemu-node-", dir="/tmp"))
        self.node = QemuNode(
            QemuNodeConfig(
                name="acceptance",
                work_dir=work,
                image=node_image,
                controller_host="127.0.0.1",
                controller_port=self.port,
                onboarding_bundle=base / "b",
                memory_mib=1536,
                serial_number=SERIAL,
                accel="auto",
                ek_ca_dir=base / "ek-ca",
                probe_ports=tuple((free_port(), guest) for guest in SCANNED),
            )
        )

    def start_controller(self) -> None:
        self.controller.process = start_controller(
            self.controller.data_dir, self.port, self.base / "controller.log"
        )

    def stop_controller(self) -> None:
        self.controller.process.terminate()
        self.controller.process.wait(30)

    def api(self, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.controller.api(method, path, **kwargs)

    def trust(self) -> dict:  # type: ignore[type-arg]
        return self.api("GET", f"/trust/nodes/{SERIAL}").json()

    def states(self) -> dict[str, str]:
        info = self.api("GET", f"/nodes/{SERIAL}").json().get("info") or {}
        return {a["name"]: a["state"] for a in info.get("apps", [])}

    def info(self) -> dict:  # type: ignore[type-arg]
        return self.api("GET", f"/nodes/{SERIAL}").json().get("info") or {}

    def registered_device_cert(self) -> str:
        from sqlalchemy import select

        from controller.store.database import Database
        from controller.store.models import Node

        db = Database(f"sqlite:///{self.controller.data_dir / 'outpost.db'}")
        with db.transaction() as s:
            sha = s.scalar(select(Node.device_cert_sha256).where(Node.serial == SERIAL))
        db.engine.dispose()
        return str(sha)

    def console(self, offset: int = 0) -> str:
        return self.node.console_log.read_bytes()[offset:].decode(errors="replace")

    def wait_for(self, what: str, predicate: Callable[[], bool]) -> float:
        started = time.monotonic()
        while time.monotonic() - started < WAIT_S:
            if not self.node.is_running():
                pytest.fail(f"the node's QEMU exited while waiting for {what}")
            if predicate():
                return time.monotonic() - started
            time.sleep(2)
        pytest.fail(f"timed out waiting for {what}; console:\n{self.console()[-4000:]}")


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, node_image: Path, built_images: Manifest
) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("qemu-node"), node_image)
    lab.start_controller()
    try:
        for name in ("busybox", "testvm"):
            img = built_images.get(name)
            with img.path.open("rb") as fh:
                params = {"name": img.name, "format": img.format, "sha256": img.sha256}
                lab.api("POST", "/images", params=params, data=fh).raise_for_status()
        lab.api("POST", "/nodes/claim", json={"serial": SERIAL}).raise_for_status()
        yield lab
    finally:
        with contextlib.suppress(Exception):
            lab.node.stop(timeout_s=10)
        if lab.controller.process and lab.controller.process.poll() is None:
            lab.stop_controller()
        shutil.rmtree(lab.node.dir, ignore_errors=True)


def test_a_qemu_node_onboards_and_attests_over_its_vtpm(lab: Lab):
    lab.node.start()
    assert lab.node.is_running()
    seconds = lab.wait_for("attestation", lambda: lab.trust().get("state") == "attested")
    print(f"\nboot to attested: {seconds:.0f} s")

    trust = lab.trust()
    assert (trust["result"], trust["tpm"], trust["device_key_in_tpm"]) == (
        "SUCCESS",
        "device",
        True,
    )
    assert "TPM: device:/dev/tpmrm0" in lab.console()


def test_the_console_shows_the_identity_to_pin_in_the_claim(lab: Lab):
    console = lab.console()
    device = re.search(r"device-cert-sha256: ([0-9a-f]{64})", console)
    ek = re.search(r"ek-cert-sha256: ([0-9a-f]{64})", console)
    assert device is not None and ek is not None, console[-3000:]
    assert device.group(1) == lab.registered_device_cert()


def _answers(host_port: int) -> bool:
    """Does anything answer behind the forwarded port? (QEMU accepts the host connection
    itself; a guest port that is closed or filtered never sends a byte back.)"""
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=5) as conn:
            conn.settimeout(SCAN_WAIT_S)
            conn.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return conn.recv(1) != b""
    except OSError:  # reset, refused or timed out: nothing answered
        return False


def _scan(lab: Lab) -> list[int]:
    """The scanned guest ports that answer from outside."""
    forwards = dict(lab.node.config.probe_ports)
    with ThreadPoolExecutor(len(forwards)) as pool:
        answered = dict(zip(forwards.values(), pool.map(_answers, forwards), strict=True))
    return [port for port, yes in answered.items() if yes]


def _debug(lab: Lab) -> dict:  # type: ignore[type-arg]
    return lab.info().get("ports", {}).get("debug", {})


def _ssh_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " scan-test"


def test_a_scan_from_outside_finds_no_open_port(lab: Lab):
    lab.wait_for(
        "the agent's port lockdown",
        lambda: bool(lab.info().get("ports", {}).get("firewall", {}).get("enforced")),
    )

    assert _scan(lab) == []
    ports = lab.info()["ports"]
    assert ports["open_ports"] == [] and ports["debug"]["sshd"] is False
    assert ports["debug"]["ssh"] is False and ports["debug"]["console"] is False

    # the same scan sees SSH once the config's debug access turns it on, and not after
    debug_on = {"debug_ssh": True, "ssh_authorized_keys": [_ssh_key()]}
    lab.api("PATCH", f"/nodes/{SERIAL}", json={"settings": debug_on}).raise_for_status()
    lab.wait_for("sshd started for debug SSH", lambda: _debug(lab).get("sshd") is True)
    assert _scan(lab) == [22]
    lab.api("PATCH", f"/nodes/{SERIAL}", json={"settings": {}}).raise_for_status()
    lab.wait_for("sshd stopped again", lambda: _debug(lab).get("sshd") is False)
    assert _scan(lab) == []


def _adapters(lab: Lab) -> dict[str, dict]:  # type: ignore[type-arg]
    found = lab.api("GET", f"/nodes/{SERIAL}/adapters").json()
    return {a["address"]: a for a in found.get("adapters", [])}


def _gpu_app(name: str, match: str = GPU_ADDRESS) -> dict:  # type: ignore[type-arg]
    return {
        "name": name,
        "kind": "vm",
        "image": "testvm",
        "resources": {"memory_mib": 96},
        "adapters": [{"kind": "gpu", "match": match}],
    }


def test_the_node_reports_its_stand_in_gpu_and_edu_device_with_their_iommu_groups(lab: Lab):
    lab.wait_for("the PCI inventory", lambda: GPU_ADDRESS in _adapters(lab))
    found = lab.api("GET", f"/nodes/{SERIAL}/adapters").json()
    adapters = _adapters(lab)
    gpu, edu = adapters[GPU_ADDRESS], adapters[EDU_ADDRESS]
    assert found["iommu"] is True
    assert (gpu["kind"], f"{gpu['vendor']}:{gpu['device']}") == ("gpu", GPU_VENDOR_DEVICE)
    assert gpu["class_code"].startswith("03") and gpu["driver"] == GPU_HOST_DRIVER
    assert gpu["assignable"] and gpu["functions"] == [GPU_ADDRESS]
    assert (edu["kind"], edu["vendor"], edu["device"], edu["assignable"]) == (
        "pci", "1234", "11e8", True,
    )  # fmt: skip
    assert edu["iommu_group"] != gpu["iommu_group"]
    for address in SHARED_GROUP_ADDRESSES:  # two devices behind one PCI bridge: one group
        assert not adapters[address]["assignable"], adapters[address]


def test_a_vm_app_is_given_the_gpu_and_its_guest_sees_it(lab: Lab):
    lab.api("PATCH", f"/nodes/{SERIAL}", json={"settings": {"info_interval_s": 10}})
    assert lab.api("POST", "/apps", json=_gpu_app("g1")).status_code == 201
    started = time.monotonic()
    assert lab.api("POST", f"/nodes/{SERIAL}/apps", json={"app": "g1"}).status_code == 201
    app_uuid = lab.api("GET", "/apps/g1").json()["uuid"]
    wanted = f"{PCI_MARKER} "
    vendor_device = f" {GPU_VENDOR_DEVICE} "

    def guest_saw_it() -> bool:
        params = {"source": f"app:{app_uuid}", "limit": 500}
        lines = lab.api("GET", f"/nodes/{SERIAL}/logs", params=params).json()["lines"]
        return any(wanted in ln["msg"] and vendor_device in ln["msg"] for ln in lines)

    lab.wait_for("the nested guest's report of the GPU", guest_saw_it)
    print(f"\nassign -> the nested guest reports the GPU: {time.monotonic() - started:.0f} s")
    assert lab.states()["g1"] == "RUNNING"
    lab.wait_for(
        "the GPU bound to vfio-pci on the node",
        lambda: _adapters(lab)[GPU_ADDRESS]["driver"] == "vfio-pci",
    )
    assert _adapters(lab)[GPU_ADDRESS]["used_by"]


def test_a_second_app_asking_for_the_gpu_and_unassignable_devices_are_refused(lab: Lab):
    for name, match in (
        ("g2", GPU_ADDRESS),  # in use by g1
        ("g3", SHARED_GROUP_ADDRESSES[0]),  # its IOMMU group is not whole
        ("g4", "0000:00:1e.0"),  # not present on the node
    ):
        assert lab.api("POST", "/apps", json=_gpu_app(name, match)).status_code == 201
        answer = lab.api("POST", f"/nodes/{SERIAL}/apps", json={"app": name})
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["details"][0]["field"] == "adapters"
        assert lab.api("DELETE", f"/apps/{name}").status_code in (200, 204)
    assert "g2" not in lab.states()


def test_removing_the_app_gives_the_gpu_back_to_its_host_driver(lab: Lab):
    assert lab.api("DELETE", "/apps/g1").status_code in (200, 204)
    lab.wait_for(
        "the GPU back on its host driver",
        lambda: _adapters(lab)[GPU_ADDRESS]["driver"] == GPU_HOST_DRIVER,
    )
    assert "g1" not in lab.states() and not _adapters(lab)[GPU_ADDRESS]["used_by"]


def test_the_node_runs_a_container_app_and_a_vm_app(lab: Lab):
    app = {"name": "c1", "kind": "container", "image": "busybox", "command": CONTAINER_CMD}
    assert lab.api("POST", "/apps", json=app).status_code == 201
    vm = {"name": "v1", "kind": "vm", "image": "testvm", "resources": {"memory_mib": 96}}
    assert lab.api("POST", "/apps", json=vm).status_code == 201
    for name in APPS:
        assert lab.api("POST", f"/nodes/{SERIAL}/apps", json={"app": name}).status_code == 201

    seconds = lab.wait_for(f"apps {APPS}", lambda: lab.states() == APPS)
    print(f"\nassigned to both RUNNING: {seconds:.0f} s")


def test_after_a_power_cycle_without_controller_the_apps_come_back_from_the_checkpoint(
    lab: Lab,
):
    lab.stop_controller()
    offset = lab.node.console_log.stat().st_size
    lab.node.reboot()

    def back() -> bool:
        text = lab.console(offset)
        return "enforcing checkpointed config generation" in text and all(
            line_has(text, f"app {name} (", ": RUNNING") for name in APPS
        )

    seconds = lab.wait_for("the apps from the checkpoint", back)
    print(f"\nreboot to both RUNNING (controller away): {seconds:.0f} s")

    lab.start_controller()
    lab.wait_for("fresh reports", lambda: lab.states() == APPS)


def test_stopping_the_node_leaves_no_process(lab: Lab):
    pids = lab.node.pids()
    assert set(pids) == {"qemu", "swtpm"}

    lab.node.stop(timeout_s=10)  # ACPI first; what is left after 10 s is killed

    assert not lab.node.is_running()
    assert lab.node.pids() == {}
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists()


def line_has(text: str, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in text.splitlines())
