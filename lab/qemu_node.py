"""A whole Outpost node under QEMU: the node image, its own vTPM (swtpm), a network that
reaches only the controller.

:class:`QemuNode` boots the node image built by :mod:`images.node_image` (a per-node qcow2
overlay on the shared base image) with ``qemu-system-x86_64`` (KVM only when the agent's
boot probe says KVM really works, else TCG), a ``tpm-crb`` vTPM backed by a per-node
``swtpm`` (unix control socket, state dir kept across reboots), a QMP socket for control and
the serial console in a log file.  A small FAT config disk carries the agent settings (its
serial, the vTPM) and the onboarding bundle, so one base image serves every node.

Network: QEMU user networking with ``restrict=on`` (no egress at all; optional ``hostfwd``
ports from 127.0.0.1 for scanning the node from outside) plus one ``guestfwd``:
the guest's :data:`GUEST_CONTROLLER_IP`:``GUEST_CONTROLLER_PORT`` runs a relay (one process
per connection, :data:`RELAY`) to the controller's host:port.  The node therefore talks to
``https://10.0.2.100:8443``: the controller must serve that address (``outpost-controller
init --tls-host 10.0.2.100 --public-url https://10.0.2.100:8443``; the public URL is also
where nodes download images).  The bundle's URL is rewritten to :data:`GUEST_CONTROLLER_URL`.

Passthrough test bench (``passthrough_devices``, on by default): the machine has an emulated
IOMMU (``intel-iommu`` with interrupt remapping and caching mode; the node image boots with
``intel_iommu=on iommu=pt``) and PCI devices to pass through: a stand-in GPU
(``virtio-gpu-pci`` at :data:`GPU_ADDRESS`, class 0x0380, alone in its IOMMU group, bound to
``virtio-pci`` on the node), QEMU's ``edu`` device (:data:`EDU_ADDRESS`, no host driver) and
two ``pci-testdev`` functions behind a PCIe-to-PCI bridge (:data:`SHARED_GROUP_ADDRESSES`:
one IOMMU group with the bridge, so neither can be assigned alone).

Processes are started detached (they outlive the caller, like the lab's other nodes) and
found again through pid files in ``work_dir``, so a second ``QemuNode`` on the same
``work_dir`` can stop a node another process started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from images.node_image import agent_settings, config_disk
from lab.errors import LabError
from lab.swtpm_ek import EkCaError, LocalEkCa

__all__ = [
    "EDU_ADDRESS",
    "GPU_ADDRESS",
    "GPU_HOST_DRIVER",
    "GPU_VENDOR_DEVICE",
    "GUEST_CONTROLLER_IP",
    "GUEST_CONTROLLER_PORT",
    "GUEST_CONTROLLER_URL",
    "SHARED_GROUP_ADDRESSES",
    "QemuNode",
    "QemuNodeConfig",
]

log = logging.getLogger(__name__)

GUEST_CONTROLLER_IP = "10.0.2.100"
GUEST_CONTROLLER_PORT = 8443
GUEST_CONTROLLER_URL = f"https://{GUEST_CONTROLLER_IP}:{GUEST_CONTROLLER_PORT}"
QEMU = "qemu-system-x86_64"
GPU_ADDRESS = "0000:00:10.0"
GPU_VENDOR_DEVICE = "1af4:1050"
"""virtio-gpu-pci (modern virtio, device id 0x1050)."""
GPU_HOST_DRIVER = "virtio-pci"
EDU_ADDRESS = "0000:00:11.0"
SHARED_GROUP_ADDRESSES = ("0000:02:01.0", "0000:02:02.0")
"""Behind pcie-root-port 00:12.0 (bus 1) and its pcie-pci-bridge (bus 2)."""
PASSTHROUGH_DEVICES = (
    "virtio-gpu-pci,id=gpu0,bus=pcie.0,addr=0x10",
    "edu,id=edu0,bus=pcie.0,addr=0x11",
    "pcie-root-port,id=rp1,bus=pcie.0,addr=0x12,chassis=1",
    "pcie-pci-bridge,id=br1,bus=rp1",
    "pci-testdev,id=td1,bus=br1,addr=0x1",
    "pci-testdev,id=td2,bus=br1,addr=0x2",
)
BUNDLE_FILES = ("controller.json", "root-ca.pem", "onboarding.pem", "onboarding.key")
RELAY = '''"""guestfwd relay: stdin/stdout (the guest's connection) <-> TCP host:port."""
import os, selectors, socket, sys
try:
    up = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
except OSError:
    sys.exit(1)  # controller away: the guest sees the connection closed
up.settimeout(None)
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ, up)
sel.register(up, selectors.EVENT_READ, None)
while True:
    for key, _ in sel.select():
        if key.data is None:
            data = up.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
        else:
            data = os.read(0, 65536)
            if not data:
                up.shutdown(socket.SHUT_WR)
                sel.unregister(0)
                continue
            up.sendall(data)
'''


@dataclass(frozen=True)
class QemuNodeConfig:
    """One QEMU node of the lab."""

    name: str
    """Short name: [a-z0-9-], used in the serial, the VM name and file names."""
    work_dir: Path
    """Private, traversable dir (e.g. under /tmp) for the overlay, TPM state, sockets, logs."""
    image: Path
    """The node image (``build_node_image()``); never written (the overlay takes writes).
    Pinned per node (hard link) when its overlay is made, so rebuilding it is safe."""
    controller_host: str
    controller_port: int
    """Where the controller listens on this machine (the guestfwd target)."""
    onboarding_bundle: Path
    """A dir written by ``outpost-controller bundle`` (controller.json, root-ca.pem,
    onboarding.pem/.key)."""
    memory_mib: int = 1024
    vcpus: int = 2
    serial_number: str = ""
    """The serial to claim; default ``qemu-<name>``."""
    accel: str = "auto"
    """auto (the agent's KVM boot probe) | kvm | tcg."""
    agent_overrides: tuple[tuple[str, Any], ...] = ()
    """Extra agent settings, e.g. (("config_interval_s", 2.0),)."""
    ek_ca_dir: Path | None = None
    """A local swtpm CA (``lab.swtpm_ek``): the vTPM's new state gets EK certificates from
    it, as a real TPM has from its maker (None: a vTPM without EK certificates)."""
    probe_ports: tuple[tuple[int, int], ...] = ()
    """(host port, guest port) pairs forwarded from 127.0.0.1 to the guest, so a test can
    scan the node from outside (nothing else reaches the guest)."""
    passthrough_devices: bool = True
    """An emulated IOMMU and the devices of the passthrough bench (module docstring)."""


class QemuNode:
    """Start, stop and reboot one node; every file lives in ``config.work_dir``."""

    def __init__(self, config: QemuNodeConfig) -> None:
        if not config.name or not all(c.isalnum() or c == "-" for c in config.name):
            raise LabError(f"qemu node name {config.name!r}: use letters, digits and '-'")
        if config.accel not in ("auto", "kvm", "tcg"):
            raise LabError(f"qemu node accel {config.accel!r}: expected auto, kvm or tcg")
        if not (512 <= config.memory_mib <= 65536 and 1 <= config.vcpus <= 64):
            raise LabError("qemu node: memory_mib must be 512-65536 and vcpus 1-64")
        self.config = config
        self.dir = Path(config.work_dir).absolute()

    # -- files ---------------------------------------------------------------------
    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def serial(self) -> str:
        return self.config.serial_number or f"qemu-{self.config.name}"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    def _pid_file(self, what: str) -> Path:
        return self.dir / f"{what}.pid"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """swtpm, then QEMU; returns once QEMU runs (QMP answers), not when the guest is up."""
        if self.is_running():
            raise LabError(f"qemu node {self.config.name} is already running")
        if not self.config.image.is_file():
            raise LabError(f"node image {self.config.image} missing: build_node_image() first")
        for tool in (QEMU, "swtpm", "qemu-img"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} not found: run scripts/setup.sh")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self._prepare_disks()
        self._start_swtpm()
        try:
            self._start_qemu()
        except BaseException:
            self._kill("swtpm")
            raise

    def stop(self, timeout_s: float = 30.0) -> None:
        """ACPI power button (QMP ``system_powerdown``), wait up to ``timeout_s``, then kill;
        swtpm stops with QEMU. Afterwards no process of this node is left."""
        if self._alive("qemu"):
            with contextlib.suppress(OSError, LabError):
                self._qmp("system_powerdown")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self._alive("qemu"):
                time.sleep(0.2)
        self._kill("qemu")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._alive("swtpm"):
            time.sleep(0.1)  # swtpm --terminate exits when QEMU disconnects
        self._kill("swtpm")
        for name in ("qmp.sock", "swtpm.sock"):
            (self.dir / name).unlink(missing_ok=True)

    def reboot(self, timeout_s: float = 90.0) -> None:
        """Power-cycle the node: graceful power-off (killed after ``timeout_s``: under TCG
        systemd needs ~30-60 s, shutting down nested VMs), then boot again (same disk, same
        TPM state)."""
        self.stop(timeout_s)
        self.start()

    def is_running(self) -> bool:
        return self._alive("qemu")

    def pids(self) -> dict[str, int]:
        """Running processes of this node: {"qemu": pid, "swtpm": pid} (for the lab's state)."""
        return {w: pid for w in ("qemu", "swtpm") if (pid := self._pid(w)) and self._alive(w)}

    def remove(self) -> None:
        """Stop the node and delete its work dir (overlay, TPM state, logs)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- internals -------------------------------------------------------------------
    def _prepare_disks(self) -> None:
        bundle = self._bundle()  # first: a bad bundle changes nothing
        overlay = self.dir / "disk.qcow2"
        if not overlay.exists():  # kept across reboots: the node's own disk
            base = str(self._pin_base())
            done = subprocess.run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "qcow2",
                    "-b",
                    base,
                    str(overlay),
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise LabError(f"qemu-img create {overlay}: {done.stderr.strip()}")
        settings = agent_settings(self.serial, **dict(self.config.agent_overrides))
        config_disk(self.dir / "config.img", settings, bundle)
        (self.dir / "relay.py").write_text(RELAY)

    def _pin_base(self) -> Path:
        """The base image as this node's own file (a hard link, else a copy): a rebuilt
        image (a new file at the same path) must not change the disk under the overlay."""
        pinned = self.dir / "base.qcow2"
        pinned.unlink(missing_ok=True)
        try:
            os.link(Path(self.config.image).absolute(), pinned)
        except OSError:
            shutil.copyfile(self.config.image, pinned)
        return pinned

    def _bundle(self) -> dict[str, bytes]:
        source = Path(self.config.onboarding_bundle)
        missing = [f for f in BUNDLE_FILES if not (source / f).is_file()]
        if missing:
            raise LabError(f"onboarding bundle {source}: missing {', '.join(missing)}")
        files = {f: (source / f).read_bytes() for f in BUNDLE_FILES}
        controller = json.loads(files["controller.json"])
        controller["url"] = GUEST_CONTROLLER_URL
        files["controller.json"] = json.dumps(controller, indent=2).encode()
        return files

    def _start_swtpm(self) -> None:
        state = self.dir / "tpm"
        state.mkdir(mode=0o700, exist_ok=True)
        if self.config.ek_ca_dir is not None:
            try:
                LocalEkCa(self.config.ek_ca_dir).manufacture(state)
            except EkCaError as exc:
                raise LabError(f"{self.config.name}: {exc}") from exc
        sock = self.dir / "swtpm.sock"
        sock.unlink(missing_ok=True)
        self._spawn(
            "swtpm",
            [
                "swtpm",
                "socket",
                "--tpm2",
                "--ctrl",
                f"type=unixio,path={sock},mode=0600",
                "--tpmstate",
                f"dir={state},mode=0600",
                "--pid",
                f"file={self._pid_file('swtpm')}",
                "--log",
                f"file={self.dir / 'swtpm.log'},level=1",
                "--terminate",
            ],
        )
        self._wait_for(lambda: sock.exists(), "swtpm", 10)

    def _accel(self) -> str:
        if self.config.accel in ("kvm", "tcg"):
            return self.config.accel
        from node_agent.runtime.hypervisor_probe import probe_accel

        return probe_accel(self.dir, override="auto")

    def qemu_argv(self, accel: str) -> list[str]:
        """The QEMU command line (a method so tests and the lab can show it)."""
        cfg = self.config
        relay = f"cmd:{sys.executable} {self.dir / 'relay.py'} {cfg.controller_host} "
        relay += str(cfg.controller_port)
        netdev = (
            "user,id=n0,restrict=on,hostname=" + cfg.name
            + "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in cfg.probe_ports)
            + f",guestfwd=tcp:{GUEST_CONTROLLER_IP}:{GUEST_CONTROLLER_PORT}-{relay}"
        )  # fmt: skip
        iommu: list[str] = []
        if cfg.passthrough_devices:  # the IOMMU before every other PCI device
            iommu = ["-device", "intel-iommu,intremap=on,caching-mode=on"]
        devices = [a for d in PASSTHROUGH_DEVICES for a in ("-device", d)]
        return [
            shutil.which(QEMU) or QEMU,
            "-name",
            f"outpost-lab-{cfg.name}",
            "-machine",
            "q35,kernel-irqchip=split" if cfg.passthrough_devices else "q35",
            *iommu,
            "-accel",
            "kvm" if accel == "kvm" else "tcg,thread=multi",
            *(["-cpu", "host"] if accel == "kvm" else []),
            "-m",
            str(cfg.memory_mib),
            "-smp",
            str(cfg.vcpus),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-drive",
            f"file={self.dir / 'disk.qcow2'},if=virtio,format=qcow2,cache=writeback",
            "-drive",
            f"file={self.dir / 'config.img'},if=virtio,format=raw,readonly=on",
            "-netdev",
            netdev,
            "-device",
            "virtio-net-pci,netdev=n0",
            "-chardev",
            f"socket,id=chrtpm,path={self.dir / 'swtpm.sock'}",
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-crb,tpmdev=tpm0",
            "-chardev",
            f"file,id=ser0,path={self.console_log},append=on",
            "-serial",
            "chardev:ser0",
            *(devices if cfg.passthrough_devices else []),
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
            "-pidfile",
            str(self._pid_file("qemu")),
        ]

    def _start_qemu(self) -> None:
        accel = self._accel()
        self.qmp_socket.unlink(missing_ok=True)
        self._pid_file("qemu").unlink(missing_ok=True)
        log.info("qemu node %s: booting (%s)", self.config.name, accel)
        self._spawn("qemu", self.qemu_argv(accel))
        self._wait_for(lambda: self._qmp_ready(), "qemu", 30)

    def _spawn(self, what: str, argv: list[str]) -> None:
        with (self.dir / f"{what}.log").open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the caller; not hit by its Ctrl-C
                cwd=self.dir,
            )
        self._pid_file(what).write_text(f"{proc.pid}\n")
        self._procs = {**getattr(self, "_procs", {}), what: proc}

    def _wait_for(self, ready: Any, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._alive(what):
                tail = (self.dir / f"{what}.log").read_text(errors="replace")[-1500:]
                raise LabError(f"qemu node {self.config.name}: {what} exited:\n{tail}")
            if ready():
                return
            time.sleep(0.05)
        self._kill(what)
        raise LabError(f"qemu node {self.config.name}: {what} not ready in {timeout_s} s")

    def _qmp_ready(self) -> bool:
        try:
            self._qmp("query-status")
        except (OSError, LabError):
            return False
        return True

    def _qmp(self, command: str) -> dict[str, Any]:
        """One QMP command over a fresh connection (greeting, capabilities, command)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.qmp_socket))
            stream = sock.makefile("rwb")
            json.loads(stream.readline())  # greeting
            for request in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": request}).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline() or b"{}")
                    if "event" not in reply:
                        break
                if "error" in reply or not reply:
                    raise LabError(f"QMP {request}: {reply.get('error', 'no answer')}")
            return dict(reply.get("return") or {})

    def _pid(self, what: str) -> int | None:
        try:
            return int(self._pid_file(what).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, what: str) -> bool:
        proc = getattr(self, "_procs", {}).get(what)
        if proc is not None:
            return proc.poll() is None
        pid = self._pid(what)
        if pid is None:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[1].split()[0]
        # a reused pid would not name this node's dir on its command line
        return state not in ("Z", "X") and str(self.dir).encode() in cmdline

    def _kill(self, what: str) -> None:
        if self._alive(what) and (pid := self._pid(what)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self._alive(what):
                time.sleep(0.05)
            if self._alive(what):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc = getattr(self, "_procs", {}).pop(what, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._pid_file(what).unlink(missing_ok=True)
