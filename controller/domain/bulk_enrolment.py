"""Bulk enrolment for manufacturing: an admin imports a manifest of serials with their
device certificates (and EK certificates where there is a TPM); each row becomes the node
a real registration makes (registered, its device certificate, its TPM's EK recorded), all
rows or none.

    rows = parse_manifest(data, ek_bundle, tpm_less)   CSV → checked rows (422 naming lines)
    outcome = import_manifest(session, actor, rows, manifest_sha256)

The manifest is CSV with a header line: ``serial,device_cert[,ek_cert]``; a certificate
is base64 DER (one line) or PEM (a quoted field).  What each row must hold is what
``register`` checks: the device certificate self-signed and in date, the EK certificate
chained to the controller's EK CA bundle, no EK only where the trust policy allows
TPM-less nodes.  A serial already registered with the same device certificate is left as
it is (a manifest can be imported again after a lost answer); a claimed serial becomes
registered when its claim pinned nothing else; anything else is a conflict and nothing is
written.

An imported node does not need its onboarding certificate: it asks for its config with
its device certificate at once.  A node with a TPM enrols its AK at its first
``register`` (the EK certified here must be the one it shows); until then no quote of it
is trusted.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from attestation import pki
from attestation.ek_cert import EkCaBundle, EkCertError, verify_ek_certificate
from controller.domain.bodies import RESERVED_SERIALS
from controller.errors import ApiError
from controller.store import notify
from controller.store.audit import audit
from controller.store.models import Event, Node, NodeTrust, utcnow
from controller.trust.state import trust_of
from protocol.messages import SERIAL_PATTERN

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_ROWS",
    "ManifestRow",
    "import_manifest",
    "parse_manifest",
]

MAX_MANIFEST_BYTES = 256 * 1024 * 1024
"""Largest manifest body (100,000 rows with PEM device and EK certificates fit)."""
MAX_MANIFEST_ROWS = 200_000
MAX_CERT_CHARS = 16 * 1024
MAX_REPORTED = 50
"""Row errors listed in a refusal (the count says how many there were)."""
COLUMNS = ("serial", "device_cert", "ek_cert")
_YIELD_EVERY = 256
"""Rows checked between yields to other requests of this worker (gevent)."""
_CHUNK = 5_000
_SERIAL = re.compile(SERIAL_PATTERN)
"""Rows per IN-list query and per bulk insert."""


@dataclass(frozen=True)
class ManifestRow:
    line: int
    serial: str
    device_pem: str
    device_sha256: str
    ek_sha256: str | None


def _refuse(errors: list[dict[str, Any]], status: int = 422, code: str = "bad_manifest") -> None:
    if errors:
        shown = errors[:MAX_REPORTED]
        raise ApiError(
            status,
            code,
            f"{len(errors)} manifest row(s) refused; nothing was imported"
            f" (first: line {shown[0]['line']}: {shown[0]['error']})",
            shown,
        )


def _cert_bytes(text: str) -> bytes:
    """A certificate cell: PEM, or base64 DER on one line."""
    text = text.strip()
    if len(text) > MAX_CERT_CHARS:
        raise ValueError(f"longer than {MAX_CERT_CHARS} characters")
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("neither PEM nor base64 DER") from exc


def _load(data: bytes) -> x509.Certificate:
    if data.startswith(b"-----BEGIN"):
        return pki.load_cert(data)
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"not a DER certificate ({exc})") from exc


def _device(cell: str) -> tuple[str, str]:
    """(PEM, sha256) of a device certificate as register accepts it."""
    try:
        cert = _load(_cert_bytes(cell))
        pki.verify_self_signed(cert)
        pki.check_validity(cert, what="device certificate")
    except (ValueError, pki.CertError) as exc:
        raise ValueError(f"device certificate refused: {exc}") from exc
    return cert.public_bytes(Encoding.PEM).decode(), pki.cert_sha256(cert)


def _ek(cell: str, bundle: EkCaBundle | None) -> str:
    if bundle is None:
        raise ValueError("this controller has no EK CA bundle: no TPM can enrol")
    try:
        data = _cert_bytes(cell)
        if data.startswith(b"-----BEGIN"):
            data = _load(data).public_bytes(Encoding.DER)
        return verify_ek_certificate(data, bundle).fingerprint
    except (ValueError, pki.CertError, EkCertError) as exc:
        raise ValueError(f"EK certificate refused: {exc}") from exc


def _records(data: bytes) -> Iterator[tuple[int, list[str]]]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ApiError(413, "too_large", f"manifest over {MAX_MANIFEST_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "bad_manifest", f"the manifest is not UTF-8: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for fields in reader:
            yield reader.line_num, fields
    except csv.Error as exc:
        raise ApiError(
            422, "bad_manifest", f"line {reader.line_num}: not CSV ({exc}); nothing imported"
        ) from exc


def parse_manifest(data: bytes, bundle: EkCaBundle | None, tpm_less: str) -> list[ManifestRow]:
    """Every row checked (422 ``bad_manifest`` listing the refused lines; 413 over the
    size limit); serials and device certificates unique within the manifest."""
    records = _records(data)
    header = next(records, None)
    names = [c.strip().lower() for c in header[1]] if header else []
    if names not in (list(COLUMNS[:2]), list(COLUMNS)):
        raise ApiError(
            422,
            "bad_manifest",
            "the first line must be the header 'serial,device_cert' or"
            " 'serial,device_cert,ek_cert'",
        )
    rows: list[ManifestRow] = []
    errors: list[dict[str, Any]] = []
    serials: dict[str, int] = {}
    devices: dict[str, int] = {}
    for count, (line, fields) in enumerate(records):
        if count % _YIELD_EVERY == 0:
            time.sleep(0)  # other requests of this (gevent) worker run meanwhile
        if not any(f.strip() for f in fields):
            continue
        if len(rows) + len(errors) >= MAX_MANIFEST_ROWS:
            raise ApiError(413, "too_large", f"more than {MAX_MANIFEST_ROWS} rows")
        row = _row(line, fields, len(names), bundle, tpm_less, serials, devices)
        if isinstance(row, ManifestRow):
            rows.append(row)
        else:
            errors.append(row)
    _refuse(errors)
    if not rows:
        raise ApiError(422, "bad_manifest", "the manifest has no rows")
    return rows


def _row(
    line: int,
    fields: list[str],
    width: int,
    bundle: EkCaBundle | None,
    tpm_less: str,
    serials: dict[str, int],
    devices: dict[str, int],
) -> ManifestRow | dict[str, Any]:
    """The checked row, or its error ({line, serial, error})."""
    serial = fields[0].strip() if fields else ""

    def error(text: str) -> dict[str, Any]:
        return {"line": line, "serial": serial[:128], "error": text}

    if len(fields) != width:
        return error(f"{len(fields)} fields, the header has {width}")
    if not _SERIAL.fullmatch(serial):
        return error("serial: letters, digits, '.', '_', ':', '-' (1 to 128, first alphanumeric)")
    if serial in RESERVED_SERIALS:
        return error(f"serial {serial!r} is reserved (a path word)")
    if serial in serials:
        return error(f"serial is also on line {serials[serial]}")
    serials[serial] = line
    try:
        pem, sha = _device(fields[1])
        ek_cell = fields[2].strip() if width == 3 else ""
        ek = _ek(ek_cell, bundle) if ek_cell else None
    except ValueError as exc:
        return error(str(exc))
    if ek is None and tpm_less != "allow":
        return error("no EK certificate and the trust policy refuses TPM-less nodes")
    if sha in devices:
        return error(f"device certificate is also on line {devices[sha]}")
    devices[sha] = line
    return ManifestRow(line, serial, pem, sha, ek)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _stored(session: Session, rows: list[ManifestRow]) -> tuple[dict[str, Node], dict[str, str]]:
    """(serial → existing node, device sha256 → serial it is registered to)."""
    by_serial: dict[str, Node] = {}
    by_device: dict[str, str] = {}
    for chunk in _chunks(rows):
        serials = [r.serial for r in chunk]
        for node in session.scalars(select(Node).where(Node.serial.in_(serials))):
            by_serial[node.serial] = node
        shas = [r.device_sha256 for r in chunk]
        for serial, sha in session.execute(
            select(Node.serial, Node.device_cert_sha256).where(Node.device_cert_sha256.in_(shas))
        ):
            by_device[sha] = serial
    return by_serial, by_device


def _conflicts(
    session: Session, rows: list[ManifestRow], by_serial: dict[str, Node], by_device: dict[str, str]
) -> tuple[list[ManifestRow], list[tuple[ManifestRow, Node]], int]:
    """(rows to insert, claimed nodes to register, rows already registered as they say);
    409 ``conflict`` listing the rows that contradict stored nodes."""
    new: list[ManifestRow] = []
    claimed: list[tuple[ManifestRow, Node]] = []
    same = 0
    errors: list[dict[str, Any]] = []
    for r in rows:
        node = by_serial.get(r.serial)
        owner = by_device.get(r.device_sha256)
        if owner is not None and owner != r.serial:
            errors.append(
                {
                    "line": r.line,
                    "serial": r.serial,
                    "error": f"device certificate is registered to {owner!r}",
                }
            )
        elif node is None:
            new.append(r)
        elif node.state == "registered":
            ek = session.scalar(select(NodeTrust.ek_sha256).where(NodeTrust.node_id == node.id))
            if node.device_cert_sha256 != r.device_sha256 or ek != r.ek_sha256:
                errors.append(
                    {
                        "line": r.line,
                        "serial": r.serial,
                        "error": "registered with another identity",
                    }
                )
            else:
                same += 1
        elif node.pinned_device_cert_sha256 not in (None, r.device_sha256) or (
            node.pinned_ek_sha256 not in (None, r.ek_sha256)
        ):
            errors.append(
                {"line": r.line, "serial": r.serial, "error": "claimed for another identity"}
            )
        else:
            claimed.append((r, node))
    _refuse(errors, 409, "conflict")
    return new, claimed, same


def import_manifest(
    session: Session, actor: str, rows: list[ManifestRow], manifest_sha256: str
) -> dict[str, Any]:
    """Register every row's node (see the module docstring); {created, registered_claims,
    unchanged, nodes: [{serial, uuid}]}."""
    by_serial, by_device = _stored(session, rows)
    new, claimed, same = _conflicts(session, rows, by_serial, by_device)
    now = utcnow()
    made: dict[str, str] = {}
    ids: list[tuple[int, ManifestRow]] = []
    for chunk in _chunks(new):
        values = []
        for r in chunk:
            made[r.serial] = str(uuid.uuid4())
            values.append(_node_values(r, made[r.serial], now))
        time.sleep(0)  # between chunks, other requests of this worker run
        result = session.execute(insert(Node).returning(Node.id, Node.serial), values)
        line_of = {r.serial: r for r in chunk}
        ids += [(node_id, line_of[serial]) for node_id, serial in result]
    for chunk in _chunks(ids):
        time.sleep(0)
        session.execute(insert(NodeTrust), [_trust_values(node_id, r) for node_id, r in chunk])
    for r, node in claimed:  # rows a claim made: registered in place (its labels, apps kept)
        for key, value in _node_values(r, str(uuid.uuid4()), now).items():
            setattr(node, key, value)
        made[r.serial] = node.uuid or ""
        for key, value in _trust_values(node.id, r).items():
            setattr(trust_of(session, node), key, value)
        ids.append((node.id, r))
    session.flush()
    for chunk in _chunks(ids):
        session.execute(
            insert(Event),
            [
                {
                    "node_id": node_id,
                    "kind": "registered",
                    "message": f"device {r.device_sha256[:16]}… (bulk import)",
                    "app_uuid": None,
                }
                for node_id, r in chunk
            ],
        )
    audit(
        session,
        actor,
        "node.bulk_import",
        f"{len(rows)} nodes",
        manifest_sha256=manifest_sha256,
        created=len(new),
        registered_claims=len(claimed),
        unchanged=same,
    )
    notify.changed(session, notify.ALL)
    return {
        "created": len(new),
        "registered_claims": len(claimed),
        "unchanged": same,
        "nodes": [{"serial": s, "uuid": u} for s, u in made.items()],
    }


def _node_values(r: ManifestRow, node_uuid: str, now: Any) -> dict[str, Any]:
    return {
        "serial": r.serial,
        "uuid": node_uuid,
        "state": "registered",
        "device_cert_pem": r.device_pem,
        "device_cert_sha256": r.device_sha256,
        "pinned_device_cert_sha256": r.device_sha256,
        "pinned_ek_sha256": r.ek_sha256,
        "registered_at": now,
    }


def _trust_values(node_id: int, r: ManifestRow) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "state": "unattested",
        "result": "",
        "reason": "",
        "tpm": "" if r.ek_sha256 else "none",
        "device_key_in_tpm": False,
        "baseline": {},
        "evidence": {},
        "revoked_reason": "",
        "ek_sha256": r.ek_sha256,
        "ak_activated": False,
    }
