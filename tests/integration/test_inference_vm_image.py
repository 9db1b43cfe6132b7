"""The inference VM image: built from the recipe (cached in build/inference), booted as a
libvirt domain (``qemu:///system``, type ``qemu`` = TCG) from the qcow2 alone (SYSLINUX);
the app starts as a service at boot, reads the video on its config disk, serves its metrics
through QEMU user-mode networking (``hostfwd`` on 127.0.0.1) and posts detection events to a
collector on the host's 127.0.0.1 (reached from the guest as 10.0.2.2).

The NIC is given as QEMU arguments (``<qemu:commandline>``): libvirt 9.0 forwards ports of a
user-mode NIC only with the passt backend. ``<cpu mode='maximum'/>`` is required: numpy 2
and OpenVINO do not run on TCG's default qemu64. The first build takes minutes; later runs
reuse the image while its inputs are unchanged (docs/inference_vm.md has sizes and times).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.inference import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]

BOOT_LIMIT_S = 480.0
"""Generous bound for TCG boot and the first Python imports; nothing asserts on time."""
SLIRP_HOST = "10.0.2.2"

DOMAIN = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>1536</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <cpu mode='maximum' check='none'/>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{root}'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{config}'/><target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:{guest_port}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=n0,bus=pci.0,addr=0x1f'/>
  </qemu:commandline>
</domain>
"""


class _Collector(BaseHTTPRequestHandler):
    events: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        self.events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to it."""
    handler = type("Collector", (_Collector,), {"events": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, handler.events
    server.shutdown()
    server.server_close()


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A directory QEMU's libvirt-qemu user can reach (pytest's temp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="outpost-inference-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def booted_vm(
    libvirt_uri, inference_vm_image, moving_video, collector, work_dir
) -> Iterator[tuple[int, Path]]:
    """The image booted with a config disk (video + config); yields (metrics port, console)."""
    import libvirt

    from images.inference_vm_image import APP_PORT, config_disk

    root = work_dir / "root.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(inference_vm_image.path),
            str(root),
        ],
        check=True,
    )
    config = (
        "source: {url: /run/outpost/config-disk/moving.avi}\n"
        f"server: {{host: 0.0.0.0, port: {APP_PORT}}}\n"
        f"events: {{url: 'http://{SLIRP_HOST}:{collector[0]}/events', min_interval_s: 1}}\n"
    )
    cfg = config_disk(work_dir / "config.fat", config, {"moving.avi": moving_video.path})
    port, console = free_port(), work_dir / "console.log"
    name = f"outpost-inference-test-{uuid.uuid4().hex[:8]}"
    xml = DOMAIN.format(
        name=name, root=root, config=cfg, console=console, port=port, guest_port=APP_PORT
    )
    conn = libvirt.open(libvirt_uri)
    domain = conn.createXML(xml, 0)
    try:
        yield port, console
    finally:
        _destroy(libvirt_uri, conn, domain, name)


def _destroy(uri: str, conn: Any, domain: Any, name: str) -> None:
    """Destroy the transient domain, through a new connection if the daemon restarted."""
    import libvirt

    try:
        if domain.isActive():
            domain.destroy()
    except libvirt.libvirtError:
        with contextlib.suppress(libvirt.libvirtError):
            again = libvirt.open(uri)
            again.lookupByName(name).destroy()
            again.close()
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


def _metrics(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/metrics", timeout=5) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def test_inference_vm_boots_under_libvirt_serves_metrics_and_posts_events(booted_vm, collector):
    port, console = booted_vm
    events = collector[1]
    started = time.monotonic()
    deadline, snap = started + BOOT_LIMIT_S, None
    while time.monotonic() < deadline:
        snap = _metrics(port)
        if snap and snap["frames_processed"] >= 3 and len(events) >= 2:
            break
        time.sleep(2)
    log = console.read_text(errors="replace") if console.exists() else ""
    assert snap is not None and snap["frames_processed"] >= 3, log[-4000:]
    print(f"boot to metrics and events: {time.monotonic() - started:.0f} s; fps {snap['fps']}")
    assert "outpost-config: configuration from /dev/vdb" in log
    assert snap["source_kind"] == "file" and snap["detector"] == "openvino"
    assert snap["detections"]["total"].get("face", 0) >= 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert b"outpost_inference_frames_processed_total" in answer.read()
    assert len(events) >= 2 and events[0]["detector"] == "openvino"
    assert events[0]["detections"][0]["label"] == "face"


def test_inference_vm_image_is_reused_while_its_inputs_are_unchanged(inference_vm_image):
    from images.inference_build import build_inference

    before = inference_vm_image.path.stat().st_mtime_ns
    again = build_inference(inference_vm_image.directory, only="vm").get("inference-vm")
    assert again.path.stat().st_mtime_ns == before
    assert again.sha256 == inference_vm_image.sha256
