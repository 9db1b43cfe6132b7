"""Signed JSON envelopes (EVE's object signing, in JSON).

Wire form::

    {"payload": "<base64 of JSON {timestamp, request_id, body}>",
     "sender_cert_sha256": "<hex sha256 of the signer's DER cert>",
     "signature": "<base64 DER ECDSA-SHA256 over the payload bytes>"}

The receiver looks the signer up by hash, verifies the signature over the exact
payload bytes (no canonicalisation needed), optionally checks the signer's certificate is
in date, parses the payload with bounded size and depth (``protocol.bounded_json``: no
NaN, no infinity, no 400-digit integer), checks the timestamp is a finite number of
seconds between 1970 and the end of year 9999, then freshness.  Replay of a request id is
the receiver's job (it owns the store of seen ids).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestation.pki import CertError, Identity, check_validity
from protocol.bounded_json import JsonRefused, dump_json, load_json

__all__ = [
    "BadSignature",
    "EnvelopeError",
    "InvalidTimestamp",
    "MalformedEnvelope",
    "NumberOutOfRange",
    "Opened",
    "SignerNotValid",
    "StaleEnvelope",
    "UnknownSigner",
    "check_timestamp",
    "open_envelope",
    "seal",
]

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_SKEW_S = 300.0
MAX_PAYLOAD_DEPTH = 64
MAX_TIMESTAMP = 253402300799.0
"""9999-12-31T23:59:59Z: the last second a timestamp may name."""
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class EnvelopeError(Exception):
    """Base: the envelope cannot be trusted.

    MalformedEnvelope   not an envelope (bad JSON/base64/fields, too big, too deep)
      InvalidTimestamp  timestamp not a finite number in [0, end of year 9999]
      NumberOutOfRange  NaN, infinity or a huge integer anywhere in the payload
    UnknownSigner       no certificate known for sender_cert_sha256
    BadSignature        the signature does not verify under that certificate
    SignerNotValid      the signer's certificate is expired or not yet valid
    StaleEnvelope       timestamp outside the allowed skew

    Client input errors (the receiver answers 4xx): MalformedEnvelope and its subclasses
    → 422; the others → 401/403.  Nothing here raises OverflowError or RecursionError.
    """


class MalformedEnvelope(EnvelopeError):
    pass


class InvalidTimestamp(MalformedEnvelope):
    """NaN, infinity, a bool, a negative or a far-future timestamp (a client error: 422)."""


class NumberOutOfRange(MalformedEnvelope):
    """A number in the payload is NaN, infinite or too long (a client error: 422)."""


class SignerNotValid(EnvelopeError):
    """The signature verifies but the signer's certificate is outside its validity dates."""


class UnknownSigner(EnvelopeError):
    pass


class BadSignature(EnvelopeError):
    pass


class StaleEnvelope(EnvelopeError):
    pass


@dataclass(frozen=True)
class Opened:
    """A verified envelope's contents."""

    body: Any
    request_id: str
    timestamp: float
    signer: x509.Certificate
    signer_sha256: str


def check_timestamp(value: Any) -> float:
    """``value`` as seconds since the epoch, or InvalidTimestamp (never OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTimestamp(f"timestamp must be a number, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError as exc:
        raise InvalidTimestamp("timestamp is out of range") from exc
    if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_TIMESTAMP:
        raise InvalidTimestamp(
            f"timestamp {str(value)[:24]} is not between 0 and {MAX_TIMESTAMP:.0f} (year 9999)"
        )
    return seconds


def seal(body: Any, identity: Identity, *, now: float | None = None) -> dict[str, str]:
    """Sign ``body`` (any JSON value) with ``identity``; adds timestamp and request id.

    A body holding NaN or infinity is refused (JsonRefused, a ValueError), as the
    receiver would refuse it.
    """
    payload = dump_json(
        {
            "timestamp": check_timestamp(time.time() if now is None else now),
            "request_id": str(uuid.uuid4()),
            "body": body,
        }
    )
    signature = identity.key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return {
        "payload": base64.b64encode(payload).decode(),
        "sender_cert_sha256": identity.sha256,
        "signature": base64.b64encode(signature).decode(),
    }


def open_envelope(
    wire: Any,
    resolve: Callable[[str], x509.Certificate | None],
    *,
    max_skew_s: float | None = DEFAULT_MAX_SKEW_S,
    now: float | None = None,
    check_signer_dates: bool = False,
) -> Opened:
    """Verify an envelope and return its body.

    ``resolve`` maps a signer hash to its certificate (None when unknown).
    ``max_skew_s=None`` skips the freshness check (for stored documents such as
    a signed config, whose freshness is its generation number).
    ``check_signer_dates`` refuses (SignerNotValid) a signer whose certificate is not
    valid at ``now``: on for every device request.
    """
    if not isinstance(wire, dict) or set(wire) != {"payload", "sender_cert_sha256", "signature"}:
        raise MalformedEnvelope("expected exactly payload, sender_cert_sha256 and signature")
    if not all(isinstance(v, str) for v in wire.values()):
        raise MalformedEnvelope("envelope fields must be strings")
    signer_hash = wire["sender_cert_sha256"]
    if not _HEX64.match(signer_hash):
        raise MalformedEnvelope("sender_cert_sha256 is not a hex sha256")
    if len(wire["payload"]) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
        raise MalformedEnvelope(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        payload = base64.b64decode(wire["payload"], validate=True)
        signature = base64.b64decode(wire["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEnvelope(f"bad base64: {exc}") from exc

    cert = resolve(signer_hash)
    if cert is None:
        raise UnknownSigner(f"unknown signer {signer_hash[:16]}…")
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BadSignature("signer key is not ECDSA")
    try:
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise BadSignature(f"signature does not verify for signer {signer_hash[:16]}…") from exc

    current = time.time() if now is None else now
    if check_signer_dates:
        try:
            check_validity(cert, dt.datetime.fromtimestamp(current, dt.UTC), "signer certificate")
        except CertError as exc:
            raise SignerNotValid(str(exc)) from exc
    try:
        inner = load_json(payload, max_bytes=MAX_PAYLOAD_BYTES, max_depth=MAX_PAYLOAD_DEPTH)
    except JsonRefused as exc:
        if exc.reason == "bad_number":
            raise NumberOutOfRange(f"payload holds a number out of range: {exc}") from exc
        raise MalformedEnvelope(f"payload refused: {exc}") from exc
    if not isinstance(inner, dict) or set(inner) != {"timestamp", "request_id", "body"}:
        raise MalformedEnvelope("payload must hold exactly timestamp, request_id and body")
    ts, rid = check_timestamp(inner["timestamp"]), inner["request_id"]
    if not isinstance(rid, str) or not 8 <= len(rid) <= 64:
        raise MalformedEnvelope("bad request_id")
    if max_skew_s is not None and abs(current - ts) > max_skew_s:
        raise StaleEnvelope(f"timestamp is {current - ts:+.0f} s off (limit {max_skew_s} s)")
    return Opened(inner["body"], rid, ts, cert, signer_hash)
