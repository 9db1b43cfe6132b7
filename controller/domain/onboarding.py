"""Onboarding actions: claim serials (one, or a CSV), approve or reject pending nodes, and
remember refused registrations of unclaimed serials for an operator to approve."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from controller.domain.bodies import ClaimBody
from controller.domain.common import parse
from controller.errors import ApiError, validation_details
from controller.store.audit import audit
from controller.store.models import Node, PendingRegistration, utcnow

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_CSV_ROWS",
    "CsvClaim",
    "NotClaimed",
    "claim",
    "claim_csv",
    "claim_serial",
    "decide",
    "record_pending",
]

MAX_CSV_BYTES = 64 * 1024
MAX_CSV_ROWS = 1000

MAX_PENDING = 1000


class NotClaimed(ApiError):
    """403: a genuine node (valid onboarding chain and signature) with an unclaimed serial."""

    def __init__(self, serial: str, device_hash: str, onboarding_hash: str) -> None:
        super().__init__(403, "not_claimed", f"serial {serial!r} has not been claimed")
        self.serial, self.device_hash, self.onboarding_hash = serial, device_hash, onboarding_hash


def record_pending(session: Session, exc: NotClaimed) -> None:
    """Remember the attempt so an operator can approve it (bounded, one row per serial)."""
    row = session.scalar(
        select(PendingRegistration).where(PendingRegistration.serial == exc.serial)
    )
    if row is not None:
        row.last_seen, row.attempts = utcnow(), row.attempts + 1
        row.device_cert_sha256 = exc.device_hash
        return
    if (session.scalar(select(func.count()).select_from(PendingRegistration)) or 0) >= MAX_PENDING:
        log.warning("pending registrations full; not recording serial %s", exc.serial)
        return
    session.add(
        PendingRegistration(
            serial=exc.serial,
            device_cert_sha256=exc.device_hash,
            onboarding_cert_sha256=exc.onboarding_hash,
        )
    )


log = logging.getLogger(__name__)


def claim_serial(session: Session, serial: str) -> Node:
    """Pre-register a serial so a node carrying it may onboard; idempotent."""
    return _claim_serial(session, serial)[0]


def _claim_serial(session: Session, serial: str) -> tuple[Node, bool]:
    """(the node, True when this call inserted it)."""
    node = session.scalar(select(Node).where(Node.serial == serial))
    if node is not None:
        return node, False
    node = Node(serial=serial, state="claimed")
    session.add(node)
    session.flush()
    return node, True


def claim(s: Session, actor: str, serial: str) -> bool:
    """``POST /nodes/claim``: claim a serial (idempotent) and drop its pending attempt;
    True when it was not claimed before."""
    body = parse(ClaimBody, {"serial": serial})
    _node, new = _claim_serial(s, body.serial)
    s.execute(delete(PendingRegistration).where(PendingRegistration.serial == body.serial))
    audit(s, actor, "node.claim", body.serial, after={"serial": body.serial})
    return new


@dataclass
class CsvClaim:
    """The outcome of a CSV upload: nothing is claimed unless every row is valid."""

    serials: list[str] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    """(row number, value, error) per refused row."""


def claim_csv(s: Session, actor: str, data: bytes) -> CsvClaim:
    """Claim every serial of a CSV (first column; a ``serial`` header row is skipped)."""
    out = CsvClaim()
    if len(data) > MAX_CSV_BYTES:
        out.errors.append((0, "", f"the file is larger than {MAX_CSV_BYTES // 1024} KiB"))
        return out
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        out.errors.append((0, "", "the file is not UTF-8 text"))
        return out
    seen: dict[str, int] = {}
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) > MAX_CSV_ROWS + 1:
        out.errors.append((0, "", f"more than {MAX_CSV_ROWS} rows"))
        return out
    for number, row in enumerate(rows, start=1):
        value = row[0].strip() if row else ""
        if not value or (number == 1 and value.lower() == "serial"):
            continue
        try:
            serial = ClaimBody.model_validate({"serial": value}).serial
        except ValidationError as exc:
            out.errors.append((number, value[:128], validation_details(exc)[0]["error"]))
            continue
        if serial in seen:
            out.errors.append((number, serial, f"repeats row {seen[serial]}"))
            continue
        seen[serial] = number
        out.serials.append(serial)
    if not out.serials and not out.errors:
        out.errors.append((0, "", "the file holds no serials"))
    if not out.errors:
        for serial in out.serials:
            claim(s, actor, serial)
    return out


def decide(s: Session, actor: str, serial: str, decision: str) -> None:
    """``POST /pending/<serial>/<decision>``: approve (claim) or reject a pending node."""
    if decision not in ("approve", "reject"):
        raise ApiError(404, "not_found", "decision must be approve or reject")
    row = s.scalar(select(PendingRegistration).where(PendingRegistration.serial == serial))
    if row is None:
        raise ApiError(404, "not_found", f"no pending node with serial {serial!r}")
    s.delete(row)
    if decision == "approve":
        claim_serial(s, serial)
    audit(s, actor, f"node.{decision}", serial, device_cert_sha256=row.device_cert_sha256)
