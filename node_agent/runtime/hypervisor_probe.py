"""Decide, by really booting a guest, whether VMs run with KVM or with QEMU's TCG emulator.

``/dev/kvm`` existing is not enough: with broken nested virtualisation the device answers
its ioctls, and even a real-mode boot sector printing on COM1 works (after ~4 s of BIOS),
but a Linux guest never gets through decompressing its kernel.  So the probe's 512-byte
x86 boot sector does what that decompressor does first: it switches to 64-bit long mode
with 2 MiB pages, prints :data:`START_MARKER` on COM1, copies 64 MiB of memory and prints
:data:`MARKER`.  It is booted with ``qemu-system-x86_64 -accel kvm``; ``kvm`` is chosen
only when the marker arrives within a few seconds AND the copy ran faster than under TCG,
else ``tcg`` (also when ``/dev/kvm`` is missing, without running anything).

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
from collections.abc import Callable, Mapping
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
START_MARKER = b"OUTPOST-PROBE-64"
COPY_MIB = 64
CACHE_FILE = "hypervisor-probe.json"
DEFAULT_QEMU = "qemu-system-x86_64"
DEFAULT_TIMEOUT_S = 8.0


def _out(text: bytes) -> bytes:
    """``mov al, <byte>; out dx, al`` for each byte (DX already holds the COM1 port)."""
    return b"".join(bytes((0xB0, byte, 0xEE)) for byte in text)


def _program(labels: dict[str, int], start_marker: bytes, marker: bytes, copy_mib: int) -> bytes:
    """The probe code; absolute addresses come from ``labels`` (two-pass assembly)."""

    def le16(value: int) -> bytes:
        return value.to_bytes(2, "little")

    def le32(value: int) -> bytes:
        return value.to_bytes(4, "little")

    def rel8(target: str, after_jump: str) -> bytes:
        return bytes(((labels.get(target, 0) - labels.get(after_jump, 0)) & 0xFF,))

    parts: list[tuple[str, bytes]] = [
        # 16-bit real mode, loaded at 0x7c00 by the BIOS
        ("", b"\xfa"),  # cli
        ("", b"\x31\xc0\x8e\xd8\x8e\xd0"),  # xor ax,ax; mov ds,ax; mov ss,ax
        ("", b"\xbc\x00\x7c"),  # mov sp,0x7c00
        ("", b"\x66\x0f\x01\x16" + le16(labels.get("gdt_desc", 0))),  # lgdt [gdt_desc]
        ("", b"\x0f\x20\xc0\x66\x83\xc8\x01\x0f\x22\xc0"),  # cr0.PE = 1
        ("", b"\x66\xea" + le32(labels.get("pm", 0)) + le16(0x08)),  # jmp far 0x08:pm
        # 32-bit protected mode: flat segments, build page tables at 0x1000-0x3fff
        ("pm", b"\x66\xb8\x10\x00\x8e\xd8\x8e\xc0\x8e\xd0"),  # ds = es = ss = 0x10
        ("", b"\xbf" + le32(0x1000) + b"\x31\xc0\xb9" + le32(0xC00) + b"\xf3\xab"),  # zero 12K
        ("", b"\xc7\x05" + le32(0x1000) + le32(0x2003)),  # PML4[0] -> PDPT
        ("", b"\xc7\x05" + le32(0x2000) + le32(0x3003)),  # PDPT[0] -> PD
        ("", b"\xbf" + le32(0x3000) + b"\xb8" + le32(0x83)),  # edi = PD, eax = 2M|PS|RW|P
        ("fill", b"\x89\x07\x05" + le32(0x200000)),  # mov [edi],eax; add eax,2M
        ("", b"\x83\xc7\x08\x81\xff" + le32(0x4000)),  # add edi,8; cmp edi,0x4000
        ("", b"\x72" + rel8("fill", "fill_end")),  # jb fill
        ("fill_end", b"\xb8" + le32(0x1000) + b"\x0f\x22\xd8"),  # cr3 = PML4
        ("", b"\x0f\x20\xe0\x83\xc8\x20\x0f\x22\xe0"),  # cr4.PAE = 1
        ("", b"\xb9" + le32(0xC0000080) + b"\x0f\x32\x0d" + le32(0x100) + b"\x0f\x30"),  # LME
        ("", b"\x0f\x20\xc0\x0d" + le32(0x80000000) + b"\x0f\x22\xc0"),  # cr0.PG = 1
        ("", b"\xea" + le32(labels.get("lm", 0)) + le16(0x18)),  # jmp far 0x18:lm
        # 64-bit long mode: announce, copy copy_mib MiB like a kernel decompressor, announce
        ("lm", b"\x66\xba\xf8\x03" + _out(start_marker)),  # mov dx,0x3f8; print start
        ("", b"\xbe" + le32(0x100000) + b"\xbf" + le32(0x2000000)),  # esi = 1M, edi = 32M
        ("", b"\xbb" + le32(copy_mib)),  # ebx = copy_mib
        ("copy", b"\xb9" + le32(0x20000) + b"\xf3\x48\xa5"),  # rep movsq (1 MiB)
        ("", b"\xff\xcb\x75" + rel8("copy", "copy_end")),  # dec ebx; jnz copy
        ("copy_end", _out(marker)),
        ("halt", b"\xf4\xeb\xfd"),  # hlt; jmp halt
    ]
    code = bytearray()
    for label, chunk in parts:
        if label:
            labels.setdefault(label, 0x7C00 + len(code))
        code += chunk
    code += bytes(-len(code) % 8)
    labels.setdefault("gdt", 0x7C00 + len(code))
    for descriptor in (0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, 0x00AF9A000000FFFF):
        code += descriptor.to_bytes(8, "little")  # null, code32, data, code64
    labels.setdefault("gdt_desc", 0x7C00 + len(code))
    code += le16(4 * 8 - 1) + le32(labels.get("gdt", 0))
    return bytes(code)


def boot_sector(
    marker: bytes = MARKER, start_marker: bytes = START_MARKER, copy_mib: int = COPY_MIB
) -> bytes:
    """A 512-byte MBR that enters 64-bit long mode the way a Linux kernel does, then works.

    Real mode → protected mode (flat GDT) → page tables identity-mapping 1 GiB with 2 MiB
    pages → PAE + EFER.LME + paging → 64-bit code, which writes ``start_marker`` + CRLF to
    COM1, copies ``copy_mib`` MiB (a decompressor's memory traffic; the guest needs
    32 MiB + ``copy_mib`` MiB of RAM), writes ``marker`` + CRLF and halts forever.  On the
    broken nested KVM this was written for, the BIOS and the mode switches work but the copy
    runs ~15x slower than under TCG, and a Linux guest never finishes decompressing.
    """
    labels: dict[str, int] = {}
    texts = (marker + b"\r\n", start_marker + b"\r\n")
    _program(labels, texts[1], texts[0], copy_mib)  # pass 1: learn the label addresses
    code = _program(labels, texts[1], texts[0], copy_mib)
    if len(code) > 510:
        raise ValueError("markers too long for one boot sector")
    return code + bytes(510 - len(code)) + b"\x55\xaa"


@dataclass(frozen=True)
class BootResult:
    """Outcome of booting the probe sector once.

    ``ok``: the final marker reached the serial port before the deadline.  ``work_s``:
    time from the long-mode marker to the final marker (the memory workload), or None.
    """

    accel: str
    ok: bool
    elapsed_s: float
    work_s: float | None
    detail: str


def _read_serial(proc: subprocess.Popen[bytes], deadline: float) -> dict[bytes, float]:
    """Read QEMU's stdout until MARKER or the deadline; when each marker was first seen."""
    assert proc.stdout is not None
    seen: dict[bytes, float] = {}
    output = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while MARKER not in seen and (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break  # QEMU exited
            output += chunk
            now = time.monotonic()
            for marker in (START_MARKER, MARKER):
                if marker in output:
                    seen.setdefault(marker, now)
    return seen


def boot_check(
    accel: str, timeout_s: float = DEFAULT_TIMEOUT_S, qemu_binary: str = DEFAULT_QEMU
) -> BootResult:
    """Boot :func:`boot_sector` with ``-accel <accel>`` and time its markers on COM1.

    QEMU is always killed and reaped before returning.
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="outpost-probe-") as tmp:
        disk = Path(tmp) / "boot.img"
        disk.write_bytes(boot_sector())
        errors = Path(tmp) / "stderr"
        argv = [
            qemu_binary,
            *("-accel", accel, "-nodefaults", "-no-user-config", "-display", "none"),
            *("-m", str(32 + COPY_MIB + 32), "-serial", "stdio", "-monitor", "none"),
            *("-drive", f"format=raw,file={disk}"),
        ]
        try:
            with errors.open("wb") as err:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
                )
        except OSError as exc:
            return BootResult(accel, False, 0.0, None, f"cannot run QEMU: {exc}")
        try:
            seen = _read_serial(proc, start + timeout_s)
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        stderr = errors.read_text(errors="replace").strip().splitlines()
    elapsed = time.monotonic() - start
    if MARKER in seen:
        work = seen[MARKER] - seen.get(START_MARKER, seen[MARKER])
        return BootResult(accel, True, elapsed, work, f"booted in {elapsed:.2f}s, work {work:.2f}s")
    stage = "long mode reached" if START_MARKER in seen else "long mode not reached"
    why = stderr[-1] if stderr else "no error output"
    detail = f"no marker within {timeout_s:g}s ({stage}; exit {proc.returncode}; {why})"
    return BootResult(accel, False, elapsed, None, detail)


def _decide(
    check: Callable[..., BootResult], timeout_s: float, qemu_binary: str
) -> tuple[str, str]:
    """KVM must finish the probe in time AND do its workload faster than TCG emulation."""
    kvm = check("kvm", timeout_s=timeout_s, qemu_binary=qemu_binary)
    if not kvm.ok:
        return "tcg", f"KVM probe failed: {kvm.detail}"
    tcg = check("tcg", timeout_s=timeout_s, qemu_binary=qemu_binary)
    if tcg.ok and tcg.work_s is not None and kvm.work_s is not None and kvm.work_s > tcg.work_s:
        return "tcg", f"KVM slower than TCG: KVM {kvm.detail}; TCG {tcg.detail}"
    return "kvm", f"KVM probe passed: {kvm.detail}; TCG {tcg.detail}"


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


def _write_cache(path: Path, record: Mapping[str, object]) -> None:
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

    Probing: no read-write ``kvm_device`` → ``tcg``; else the KVM boot must print the final
    marker within ``timeout_s`` and, if it does, its workload must not be slower than the
    same workload under TCG.  ``state_dir`` holds :data:`CACHE_FILE` (no caching when
    None).  ``check`` is the seam unit tests replace; it is called as
    ``check(accel, timeout_s=…, qemu_binary=…)``.
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
        accel, detail = _decide(check, timeout_s, qemu_binary)
    _LOG.info("hypervisor probe: using %s (%s)", accel, detail)
    if cache is not None:
        record = {"accel": accel, "detail": detail, "fingerprint": fingerprint}
        record["probed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_cache(cache, record)
    return accel
