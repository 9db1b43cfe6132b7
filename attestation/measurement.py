"""Measurements: what a PCR extend does, event-log replay and the agent's code digest.

Pure functions shared by the agent (which extends the PCR and keeps the log) and the
controller (which replays the log against the quoted PCR value).  Only the sha256
bank is used.  PCR 14 holds the agent's own measurements (as EVE uses it); PCRs 0-7
hold the firmware's and are compared with the node's baseline.

    PCR_new = sha256(PCR_old || digest)        PCR at TPM reset = 32 zero bytes
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from attestation.files import sha256_file

__all__ = [
    "FIRMWARE_PCRS",
    "MEASUREMENT_PCR",
    "QUOTED_PCRS",
    "ZERO_PCR",
    "code_digest",
    "extend",
    "pcr_digest",
    "replay",
]

MEASUREMENT_PCR = 14
FIRMWARE_PCRS = tuple(range(8))
QUOTED_PCRS = (*FIRMWARE_PCRS, MEASUREMENT_PCR)
ZERO_PCR = bytes(32)


def extend(pcr_value: bytes, digest: bytes) -> bytes:
    """The value a sha256 PCR holds after extending ``pcr_value`` with ``digest``."""
    if len(pcr_value) != 32 or len(digest) != 32:
        raise ValueError("sha256 PCR values and digests are 32 bytes")
    return hashlib.sha256(pcr_value + digest).digest()


def replay(digests: Iterable[str]) -> bytes:
    """Replay hex sha256 digests from a reset PCR: the value the PCR must hold."""
    value = ZERO_PCR
    for digest in digests:
        value = extend(value, bytes.fromhex(digest))
    return value


def pcr_digest(values: Iterable[bytes]) -> bytes:
    """The quote's pcrDigest: sha256 over the selected PCR values in selection order."""
    h = hashlib.sha256()
    for value in values:
        h.update(value)
    return h.digest()


def code_digest(roots: Iterable[Path]) -> str:
    """One hex sha256 over every ``*.py`` file under ``roots`` (paths and contents).

    Each line hashed is ``<root name>/<relative path>\\0<file sha256>\\n``, sorted, so the
    digest changes when any file is edited, added, removed or renamed.
    """
    lines: list[str] = []
    for root in roots:
        root = Path(root)
        for path in root.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = f"{root.name}/{path.relative_to(root).as_posix()}"
            lines.append(f"{rel}\0{sha256_file(path)}\n")
    if not lines:
        raise ValueError("no code found to measure")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
