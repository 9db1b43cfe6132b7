"""The NoCloud seed of a VM app: a small FAT disk labelled ``cidata`` with ``meta-data`` and
``user-data``, as cloud-init's NoCloud data source (and ``cloud-localds``) expect.

Built with ``mkfs.fat`` and ``mcopy`` (no mount, no privileges), into a temporary file
beside the target, then **verified** by reading it back with mtools (the label and each
file's bytes) before it replaces the previous seed atomically: a VM never boots from a
half-written or wrong seed.  Mode 0600 (the user-data may be secret; libvirt gives QEMU
access to the disks of the domain it starts).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

from node_agent.runtime.base import PermanentError, TemporaryError

__all__ = ["SEED_FILE", "SEED_LABEL", "build_seed", "read_seed"]

SEED_LABEL = "cidata"
SEED_FILE = "seed-cidata.img"
SEED_KIB = 2048
"""2 MiB: FAT12 with room for 64 KiB of user-data and the metadata."""
_TIMEOUT_S = 30.0


def _run(argv: list[str], what: str, input_bytes: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(
            argv, input=input_bytes, capture_output=True, timeout=_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise PermanentError(f"NoCloud seed: {argv[0]} is not installed ({what})") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise TemporaryError(f"NoCloud seed: {what}: {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[:400]
        raise TemporaryError(f"NoCloud seed: {what} failed ({done.returncode}): {err}")
    return done.stdout


def read_seed(path: Path) -> tuple[str, dict[str, bytes]]:
    """The seed's volume label and its ``meta-data``/``user-data`` bytes (read with mtools)."""
    out = _run(["mlabel", "-s", "-i", str(path), "::"], "reading the label").decode()
    label = out.strip().removeprefix("Volume label is").strip()
    files = {}
    for name in ("meta-data", "user-data"):
        files[name] = _run(["mtype", "-i", str(path), f"::{name}"], f"reading {name}")
    return label, files


def build_seed(path: Path, meta_data: bytes, user_data: bytes) -> Path:
    """Write the seed at ``path`` (atomically, after verifying it); returns ``path``."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=".seed-", suffix=".img", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        _run(["mkfs.fat", "-C", "-n", SEED_LABEL, str(tmp), str(SEED_KIB)], "mkfs.fat")
        os.chmod(tmp, 0o600)
        wanted = {"meta-data": meta_data, "user-data": user_data}
        for name, data in wanted.items():
            # mcopy reads the file's bytes from stdin ("-"): nothing secret touches the disk
            # outside the image, and no argument carries it
            _run(["mcopy", "-o", "-i", str(tmp), "-", f"::{name}"], f"writing {name}", data)
        label, found = read_seed(tmp)
        if label != SEED_LABEL or found != wanted:
            raise TemporaryError(
                f"NoCloud seed {path}: read back label {label!r} and "
                f"{sorted(k for k in wanted if found.get(k) != wanted[k])} differing"
            )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path
