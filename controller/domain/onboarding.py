"""Onboarding actions: claim serials (one, or a CSV) pinned to the node's identity,
approve or reject pending nodes, and remember refused registrations.

A claim pins the node's device-certificate fingerprint and/or its EK-certificate
fingerprint (``outpost-agent identity`` prints both; the node image shows them on its
console); then only that identity registers.  A claim naming only a serial is the
explicit "first registration wins" mode: refused unless the controller allows unpinned
claims (``init --allow-unpinned-claims``), and audited as such.  Approving a pending
registration pins exactly the identity the operator was shown.  An attempt with another
identity for a pending serial is counted (``conflicts``) and audited, never recorded over
the first; the pending table is bounded overall, per onboarding batch and per client
address, so one onboarding key cannot crowd out real nodes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from controller.domain.bodies import ClaimBody
from controller.domain.common import changed, parse
from controller.errors import ApiError, field_error, validation_details
from controller.store.audit import audit
from controller.store.models import AuditEvent, Node, NodeTrust, PendingRegistration, utcnow

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_CSV_ROWS",
    "Attempt",
    "CsvClaim",
    "NotClaimed",
    "PendingLimits",
    "claim",
    "claim_csv",
    "claim_serial",
    "decide",
    "pending_json",
    "record_pending",
    "record_refusal",
]

log = logging.getLogger(__name__)
MAX_CSV_BYTES = 64 * 1024
MAX_CSV_ROWS = 1000
MAX_PENDING = 1000
REFUSAL_AUDIT_WINDOW = dt.timedelta(hours=1)
"""A refused identity is audited once per serial and hour (attempts are not a flood)."""
UNPINNED = (
    "a claim must pin the node's identity (device_cert_sha256 and/or ek_sha256, printed by"
    " `outpost-agent identity`), or approve its pending registration; this controller does"
    " not allow unpinned claims (init --allow-unpinned-claims)"
)


@dataclass(frozen=True)
class Attempt:
    """A register request whose signature and chains verified: who it claims to be."""

    serial: str
    device_hash: str
    ek_hash: str | None
    onboarding_hash: str
    source: str


@dataclass(frozen=True)
class PendingLimits:
    per_batch: int
    per_source: int
    total: int = MAX_PENDING


class NotClaimed(ApiError):
    """403: a genuine node (valid onboarding chain and signature) with an unclaimed serial."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(403, "not_claimed", f"serial {attempt.serial!r} has not been claimed")
        self.attempt = attempt


def _audit_refusal_once(s: Session, action: str, attempt: Attempt, **detail: Any) -> None:
    since = utcnow() - REFUSAL_AUDIT_WINDOW
    recent = s.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.action == action,
            AuditEvent.target == attempt.serial,
            AuditEvent.at >= since,
        )
    ).all()
    if any((d or {}).get("device_cert_sha256") == attempt.device_hash for d in recent):
        return
    audit(
        s,
        "device",
        action,
        attempt.serial,
        device_cert_sha256=attempt.device_hash,
        ek_sha256=attempt.ek_hash,
        onboarding_cert_sha256=attempt.onboarding_hash,
        source=attempt.source,
        **detail,
    )


def record_refusal(s: Session, attempt: Attempt, code: str, message: str) -> None:
    """A register refused for a claimed or registered serial (another identity): audited."""
    log.warning("register of %s refused: %s (%s)", attempt.serial, code, message)
    _audit_refusal_once(s, "node.register_refused", attempt, reason=code, message=message)


def record_pending(s: Session, attempt: Attempt, limits: PendingLimits) -> None:
    """Remember an unclaimed serial's attempt for an operator to approve (bounded)."""
    row = s.scalar(select(PendingRegistration).where(PendingRegistration.serial == attempt.serial))
    if row is not None:
        if (row.device_cert_sha256, row.ek_sha256) != (attempt.device_hash, attempt.ek_hash):
            row.conflicts += 1
            _audit_refusal_once(
                s, "pending.conflict", attempt, pending_device_cert_sha256=row.device_cert_sha256
            )
            return
        row.last_seen, row.attempts = utcnow(), row.attempts + 1
        return
    counts = (
        (limits.total, None),
        (limits.per_batch, PendingRegistration.onboarding_cert_sha256 == attempt.onboarding_hash),
        (limits.per_source, PendingRegistration.source == attempt.source),
    )
    for cap, where in counts:
        query = select(func.count()).select_from(PendingRegistration)
        if (s.scalar(query if where is None else query.where(where)) or 0) >= cap:
            log.warning("pending registrations full (cap %d); not recording %s", cap, attempt)
            return
    s.add(
        PendingRegistration(
            serial=attempt.serial,
            device_cert_sha256=attempt.device_hash,
            ek_sha256=attempt.ek_hash,
            onboarding_cert_sha256=attempt.onboarding_hash,
            source=attempt.source[:64],
        )
    )


def pending_json(p: PendingRegistration) -> dict[str, object]:
    return {
        "serial": p.serial,
        "device_cert_sha256": p.device_cert_sha256,
        "ek_sha256": p.ek_sha256,
        "onboarding_cert_sha256": p.onboarding_cert_sha256,
        "source": p.source,
        "first_seen": p.first_seen.isoformat() + "Z",
        "last_seen": p.last_seen.isoformat() + "Z",
        "attempts": p.attempts,
        "conflicts": p.conflicts,
    }


def claim_serial(
    session: Session, serial: str, device_sha: str | None = None, ek_sha: str | None = None
) -> Node:
    """Pre-register a serial (pinned to an identity when given) so its node may onboard."""
    return _claim_serial(session, serial, device_sha, ek_sha)[0]


def _claim_serial(
    session: Session, serial: str, device_sha: str | None, ek_sha: str | None
) -> tuple[Node, bool]:
    """(the node, True when this call inserted it)."""
    node = session.scalar(select(Node).where(Node.serial == serial))
    new = node is None
    if node is None:
        node = Node(serial=serial, state="claimed")
        session.add(node)
    if node.state == "claimed" and (device_sha or ek_sha):
        node.pinned_device_cert_sha256, node.pinned_ek_sha256 = device_sha, ek_sha
    session.flush()
    return node, new


def _pins(node: Node) -> dict[str, str | None]:
    return {
        "device_cert_sha256": node.pinned_device_cert_sha256,
        "ek_sha256": node.pinned_ek_sha256,
    }


def _check_registered(s: Session, node: Node, body: ClaimBody) -> None:
    """Claiming a registered serial again: fine when it names that node's identity."""
    trust = s.get(NodeTrust, node.id)
    ek = trust.ek_sha256 if trust else None
    if (body.device_cert_sha256 and body.device_cert_sha256 != node.device_cert_sha256) or (
        body.ek_sha256 and body.ek_sha256 != ek
    ):
        raise ApiError(
            409, "conflict", f"serial {node.serial!r} is registered with another identity"
        )


def claim(
    s: Session,
    actor: str,
    serial: str,
    device_cert_sha256: str | None = None,
    ek_sha256: str | None = None,
    *,
    allow_unpinned: bool = False,
) -> tuple[Node, bool]:
    """``POST /nodes/claim``: claim a serial (idempotent), pinned to the node's identity,
    and drop its pending attempt (see the module docstring); True when it was not claimed
    before."""
    body = parse(
        ClaimBody,
        {"serial": serial, "device_cert_sha256": device_cert_sha256, "ek_sha256": ek_sha256},
    )
    if not body.pinned and not allow_unpinned:
        raise field_error("device_cert_sha256", UNPINNED)
    node = s.scalar(select(Node).where(Node.serial == body.serial))
    before = None if node is None else {"serial": node.serial, **_pins(node)}
    if node is not None and node.state == "registered":
        _check_registered(s, node, body)
    node, new = _claim_serial(s, body.serial, body.device_cert_sha256, body.ek_sha256)
    s.execute(delete(PendingRegistration).where(PendingRegistration.serial == body.serial))
    mode = "pinned" if body.pinned else "first-registration-wins"
    after = {"serial": body.serial, **_pins(node)}
    audit(s, actor, "node.claim", body.serial, before=before, after=after, mode=mode)
    changed(s, node)
    return node, new


@dataclass
class CsvClaim:
    """The outcome of a CSV upload: nothing is claimed unless every row is valid."""

    serials: list[str] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    """(row number, value, error) per refused row."""
    rows: list[ClaimBody] = field(default_factory=list)


def _csv_row(number: int, row: list[str], allow_unpinned: bool) -> ClaimBody | None:
    """One CSV row as a claim: serial[,device_cert_sha256[,ek_sha256]]."""
    cells = [c.strip() for c in row] + ["", ""]
    try:
        body = ClaimBody.model_validate(
            {
                "serial": cells[0],
                "device_cert_sha256": cells[1] or None,
                "ek_sha256": cells[2] or None,
            }
        )
    except ValidationError as exc:
        detail = validation_details(exc)[0]
        raise ValueError(f"{detail['field']}: {detail['error']}") from exc
    if not body.pinned and not allow_unpinned:
        raise ValueError("no device_cert_sha256 or ek_sha256 (unpinned claims are off)")
    return body


def claim_csv(s: Session, actor: str, data: bytes, *, allow_unpinned: bool = False) -> CsvClaim:
    """Claim every row of a CSV (``serial,device_cert_sha256,ek_sha256``; a header row
    starting with ``serial`` is skipped)."""
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
            body = _csv_row(number, row, allow_unpinned)
        except ValueError as exc:
            out.errors.append((number, value[:128], str(exc)))
            continue
        assert body is not None
        if body.serial in seen:
            out.errors.append((number, body.serial, f"repeats row {seen[body.serial]}"))
            continue
        seen[body.serial] = number
        out.serials.append(body.serial)
        out.rows.append(body)
    if not out.serials and not out.errors:
        out.errors.append((0, "", "the file holds no serials"))
    if not out.errors:
        for body in out.rows:
            claim(
                s,
                actor,
                body.serial,
                body.device_cert_sha256,
                body.ek_sha256,
                allow_unpinned=allow_unpinned,
            )
    return out


def decide(s: Session, actor: str, serial: str, decision: str) -> None:
    """``POST /pending/<serial>/<decision>``: approve (claim, pinned to exactly the identity
    shown) or reject a pending node."""
    if decision not in ("approve", "reject"):
        raise ApiError(404, "not_found", "decision must be approve or reject")
    row = s.scalar(select(PendingRegistration).where(PendingRegistration.serial == serial))
    if row is None:
        raise ApiError(404, "not_found", f"no pending node with serial {serial!r}")
    s.delete(row)
    if decision == "approve":
        node = s.scalar(select(Node).where(Node.serial == serial))
        if node is not None and node.state == "registered":
            raise ApiError(409, "conflict", f"serial {serial!r} is already registered")
        claim_serial(s, serial, row.device_cert_sha256, row.ek_sha256)
    audit(
        s,
        actor,
        f"node.{decision}",
        serial,
        device_cert_sha256=row.device_cert_sha256,
        ek_sha256=row.ek_sha256,
        conflicts=row.conflicts,
    )
