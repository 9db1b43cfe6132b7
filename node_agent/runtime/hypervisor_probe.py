"""Decide, by really booting a guest, whether VMs run with KVM or with QEMU's TCG emulator.

``/dev/kvm`` existing is not enough: with broken nested virtualisation the device answers
its ioctls but a KVM guest hangs right after the firmware.  So the probe writes a 512-byte
x86 boot sector that prints :data:`MARKER` on COM1 and halts, boots it with
``qemu-system-x86_64 -accel kvm``, and waits a few seconds for the marker: seen → ``kvm``,
not seen (or no usable ``/dev/kvm``) → ``tcg``.

The answer is cached as JSON in a state directory (atomic write) and reused while the host
kernel and QEMU binary stay the same; an override (``kvm``/``tcg``) skips the probe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ACCELERATORS",
    "CACHE_FILE",
    "MARKER",
    "BootResult",
    "boot_check",
    "boot_sector",
    "probe_accel",
]

_LOG = logging.getLogger(__name__)

ACCELERATORS = ("kvm", "tcg")
MARKER = b"OUTPOST-PROBE-OK"
CACHE_FILE = "hypervisor-probe.json"
DEFAULT_QEMU = "qemu-system-x86_64"
DEFAULT_TIMEOUT_S = 8.0


def boot_sector(marker: bytes = MARKER) -> bytes:
    """A 512-byte MBR boot sector that writes ``marker`` + CRLF to COM1, then halts forever.

    Real-mode code, unrolled so it needs no data segment::

        mov dx, 0x3f8           ; BA F8 03   COM1 data port
        mov al, <byte>; out dx, al   ; B0 xx EE  (per marker byte)
        cli                     ; FA
        hlt; jmp short hlt      ; F4 EB FD
    """
    text = marker + b"\r\n"
    code = bytearray(b"\xba\xf8\x03")
    for byte in text:
        code += bytes((0xB0, byte, 0xEE))
    code += b"\xfa\xf4\xeb\xfd"
    if len(code) > 510:
        raise ValueError("marker too long for one boot sector")
    return bytes(code) + bytes(510 - len(code)) + b"\x55\xaa"


@dataclass(frozen=True)
class BootResult:
    """Outcome of booting the probe sector once."""

    accel: str
    ok: bool
    elapsed_s: float
    detail: str


def boot_check(
    accel: str, timeout_s: float = DEFAULT_TIMEOUT_S, qemu_binary: str = DEFAULT_QEMU
) -> BootResult:
    """Boot the probe sector with ``-accel <accel>``; ok when the marker reaches the serial."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="outpost-probe-") as tmp:
        disk = Path(tmp) / "boot.img"
        disk.write_bytes(boot_sector())
        errors = Path(tmp) / "stderr"
        argv = [
            qemu_binary,
            *("-accel", accel, "-nodefaults", "-no-user-config", "-display", "none"),
            *("-m", "16", "-serial", "stdio", "-monitor", "none"),
            *("-drive", f"format=raw,file={disk}"),
        ]
        try:
            with errors.open("wb") as err:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
                )
        except OSError as exc:
            return BootResult(accel, False, time.monotonic() - start, f"cannot run QEMU: {exc}")
        output = b""
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                deadline = start + timeout_s
                while MARKER not in output and (left := deadline - time.monotonic()) > 0:
                    if not selector.select(left):
                        continue
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break  # QEMU exited
                    output += chunk
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        elapsed = time.monotonic() - start
        ok = MARKER in output
        if ok:
            detail = f"marker seen after {elapsed:.2f}s"
        else:
            stderr = errors.read_text(errors="replace").strip().splitlines()
            why = stderr[-1] if stderr else "no output"
            detail = f"no marker within {timeout_s:g}s (exit {proc.returncode}; {why})"
    return BootResult(accel, ok, elapsed, detail)


def _fingerprint(qemu_binary: str) -> dict[str, str]:
    path = shutil.which(qemu_binary) or qemu_binary
    try:
        stat = os.stat(path)
        qemu = f"{path}:{stat.st_size}:{int(stat.st_mtime)}"
    except OSError:
        qemu = f"{path}:missing"
    return {"kernel": os.uname().release, "qemu": qemu}


def _read_cache(path: Path, fingerprint: dict[str, str]) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return None
    accel = data.get("accel")
    return accel if accel in ACCELERATORS else None


def _write_cache(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(record, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def probe_accel(
    state_dir: Path | None = None,
    override: str = "auto",
    *,
    qemu_binary: str = DEFAULT_QEMU,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    kvm_device: Path = Path("/dev/kvm"),
    check: Callable[..., BootResult] = boot_check,
) -> str:
    """``kvm`` or ``tcg``: the override if given, else the cached or freshly probed answer.

    ``state_dir`` holds :data:`CACHE_FILE` (no caching when None).  ``check`` is the seam
    unit tests replace; it is called as ``check("kvm", timeout_s=…, qemu_binary=…)``.
    """
    if override in ACCELERATORS:
        return override
    if override != "auto":
        raise ValueError(f"accelerator override {override!r}: expected auto, kvm or tcg")
    fingerprint = _fingerprint(qemu_binary)
    cache = Path(state_dir) / CACHE_FILE if state_dir is not None else None
    if cache is not None and (cached := _read_cache(cache, fingerprint)) is not None:
        _LOG.debug("hypervisor probe: cached answer %s from %s", cached, cache)
        return cached
    if not os.access(kvm_device, os.R_OK | os.W_OK):
        accel, detail = "tcg", f"{kvm_device} missing or not accessible"
    else:
        result = check("kvm", timeout_s=timeout_s, qemu_binary=qemu_binary)
        accel = "kvm" if result.ok else "tcg"
        detail = f"KVM boot test: {result.detail}"
    _LOG.info("hypervisor probe: using %s (%s)", accel, detail)
    if cache is not None:
        record = {"accel": accel, "detail": detail, "fingerprint": fingerprint}
        record["probed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_cache(cache, record)
    return accel
