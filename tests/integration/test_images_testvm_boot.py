"""testvm.tar really boots under QEMU TCG: marker on the console, then power-off."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from images import testvm

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None,
        reason="qemu-system-x86_64 missing (Debian package qemu-system-x86)",
    ),
]

BOOT_TIMEOUT = 60.0


class Console:
    """Collects a QEMU process's serial output (stdout) in a background thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.text = ""
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            self.text += chunk.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text:
                return True
            if self.proc.poll() is not None:
                self._thread.join(timeout=2)
                return needle in self.text
            time.sleep(0.1)
        return False


def _qemu(files: dict[str, Path], append: str, *extra: str) -> subprocess.Popen[bytes]:
    cmdline = files["cmdline"].read_text().strip()
    command = ["qemu-system-x86_64", "-accel", "tcg", "-m", "96", "-nographic", "-no-reboot"]
    command += ["-kernel", str(files["kernel"]), "-initrd", str(files["initrd"])]
    command += ["-append", f"{cmdline} {append}".strip(), *extra]
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_testvm_prints_marker_and_powers_off(testvm_boot_files: dict[str, Path]) -> None:
    proc = _qemu(testvm_boot_files, testvm.POWEROFF_ARG)
    console = Console(proc)
    try:
        assert console.wait_for(testvm.MARKER, BOOT_TIMEOUT), console.text[-2000:]
        assert proc.wait(timeout=BOOT_TIMEOUT) == 0, console.text[-2000:]
    finally:
        _stop(proc)


def _qmp(path: Path, command: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        stream = sock.makefile("rwb")
        stream.readline()  # greeting
        for execute in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": execute}).encode() + b"\n")
            stream.flush()
            while b'"return"' not in (line := stream.readline()):
                assert line, "QMP closed the connection"


def test_testvm_powers_off_on_acpi_power_button(
    testvm_boot_files: dict[str, Path], tmp_path: Path
) -> None:
    qmp = tmp_path / "qmp.sock"
    proc = _qemu(testvm_boot_files, "", "-qmp", f"unix:{qmp},server=on,wait=off")
    console = Console(proc)
    try:
        assert console.wait_for(testvm.MARKER, BOOT_TIMEOUT), console.text[-2000:]
        assert console.wait_for("idle", BOOT_TIMEOUT), console.text[-2000:]
        for _ in range(10):  # acpid may still be opening the input device: press again
            _qmp(qmp, "system_powerdown")
            try:
                assert proc.wait(timeout=5) == 0
                break
            except subprocess.TimeoutExpired:
                continue
        assert proc.poll() == 0, console.text[-2000:]
    finally:
        _stop(proc)
