"""Simulated node identities: an ECDSA P-256 device key and a self-signed device cert per
node, made exactly as the agent makes them (``attestation.pki.make_device_cert``, as
``node_agent/identity.py`` calls it), cached on disk so reruns skip the generation.

Cache layout (``<cache>/identities/<prefix>/``, dir 0700, files 0600): chunk files
``NNNNN.tsv`` of :data:`CHUNK` identities each, one line per node
``serial<TAB>base64(PKCS#8 DER key)<TAB>base64(DER cert)``. A chunk is written
atomically when complete, generated in a process pool (one worker per core), and read
back with the DER loaders (~40,000/s per core).

Also writes the bulk-enrolment manifest a maker would hand the controller: serial,
device certificate PEM and (for nodes with a TPM) the EK certificate PEM, as CSV or JSON.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestation import pki
from attestation.files import atomic_write

__all__ = [
    "CHUNK",
    "DeviceIdentity",
    "IdentityCache",
    "SimIdentity",
    "make_identity",
    "manifest_bytes",
    "serial_for",
]

CHUNK = 5000
"""Identities per cache file (and per unit of work in the process pool)."""


class DeviceIdentity(pki.Identity):
    """A device identity whose cert hash is computed once (``envelope.seal`` reads it for
    every request; hashing the DER each time cost ~30 us per request)."""

    @functools.cached_property
    def sha256(self) -> str:  # type: ignore[override]
        return pki.cert_sha256(self.cert)


@dataclass(frozen=True, slots=True)
class SimIdentity:
    """One simulated node's serial and device identity (key + self-signed cert)."""

    serial: str
    device: pki.Identity

    @property
    def cert_pem(self) -> str:
        return self.device.cert_pem()


def serial_for(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}"


def make_identity(serial: str) -> SimIdentity:
    """A new device key and its self-signed cert, as the agent makes them (no TPM)."""
    made = pki.make_device_cert(serial)
    return SimIdentity(serial, DeviceIdentity(made.cert, made.key))


def _line(identity: SimIdentity) -> str:
    key = identity.device.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert = identity.device.cert.public_bytes(serialization.Encoding.DER)
    return "\t".join(
        (identity.serial, base64.b64encode(key).decode(), base64.b64encode(cert).decode())
    )


def _parse(line: str) -> SimIdentity:
    serial, key_b64, cert_b64 = line.split("\t")
    key = serialization.load_der_private_key(base64.b64decode(key_b64), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"identity cache: {serial}: not an EC key")
    cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    return SimIdentity(serial, DeviceIdentity(cert, key))


def _generate_chunk(prefix: str, start: int, count: int) -> bytes:
    """Worker: ``count`` identities from ``start``, as the chunk file's bytes."""
    lines = (_line(make_identity(serial_for(prefix, i))) for i in range(start, start + count))
    return ("\n".join(lines) + "\n").encode()


class IdentityCache:
    """Identities ``<prefix>-000000 …`` kept under ``root``; made on first use."""

    def __init__(self, root: Path, prefix: str = "sim") -> None:
        if not prefix.replace("-", "").isalnum():
            raise ValueError(f"identity prefix {prefix!r}: letters, digits and '-' only")
        self.prefix = prefix
        self.dir = root / "identities" / prefix
        self.generated = 0
        """Identities this object generated (the rest came from the cache)."""

    def _chunk_path(self, chunk: int) -> Path:
        return self.dir / f"{chunk:05d}.tsv"

    def ensure(self, count: int, workers: int | None = None) -> int:
        """Generate the chunks needed for ``count`` identities that are not cached yet;
        returns how many identities were generated."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        missing = [
            c for c in range((count + CHUNK - 1) // CHUNK) if not self._chunk_path(c).exists()
        ]
        if not missing:
            return 0
        workers = workers or os.cpu_count() or 1
        made = 0
        if workers == 1 or len(missing) == 1:
            for c in missing:
                data = _generate_chunk(self.prefix, c * CHUNK, CHUNK)
                atomic_write(self._chunk_path(c), data, mode=0o600)
                made += CHUNK
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {
                    c: pool.submit(_generate_chunk, self.prefix, c * CHUNK, CHUNK) for c in missing
                }
                for c, future in futures.items():
                    atomic_write(self._chunk_path(c), future.result(), mode=0o600)
                    made += CHUNK
        self.generated += made
        return made

    def load(self, count: int, start: int = 0) -> list[SimIdentity]:
        """Identities ``start … start+count-1`` (generating missing chunks first)."""
        self.ensure(start + count)
        out: list[SimIdentity] = []
        first, last = start // CHUNK, (start + count - 1) // CHUNK
        for c in range(first, last + 1):
            lines = self._chunk_path(c).read_text().splitlines()
            lo = max(start - c * CHUNK, 0)
            hi = min(start + count - c * CHUNK, len(lines))
            out.extend(_parse(line) for line in lines[lo:hi])
        if len(out) != count:
            raise RuntimeError(f"identity cache {self.dir} is incomplete: {len(out)} of {count}")
        return out


ManifestFormat = Literal["csv", "json"]


def manifest_bytes(
    identities: Iterable[SimIdentity],
    fmt: ManifestFormat = "csv",
    ek_certs: Sequence[str | None] | None = None,
) -> bytes:
    """A bulk-enrolment manifest: ``serial, device_cert_pem, ek_cert_pem`` per device.

    CSV has a header row and PEMs as quoted multi-line fields; JSON is
    ``{"version": 1, "devices": [{serial, device_cert_pem, ek_cert_pem}]}``. Simulated
    nodes have no TPM, so ``ek_cert_pem`` is empty (CSV) or null (JSON) unless given.
    """
    rows = [
        (ident.serial, ident.cert_pem, (ek_certs[i] if ek_certs is not None else None))
        for i, ident in enumerate(identities)
    ]
    if fmt == "json":
        devices = [{"serial": s, "device_cert_pem": c, "ek_cert_pem": e} for s, c, e in rows]
        return json.dumps({"version": 1, "devices": devices}, indent=1).encode()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["serial", "device_cert_pem", "ek_cert_pem"])
    writer.writerows((s, c, e or "") for s, c, e in rows)
    return buf.getvalue().encode()
