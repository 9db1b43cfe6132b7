"""Signed JSON envelopes (EVE's object signing, in JSON).

Wire form::

    {"payload": "<base64 of JSON {timestamp, request_id, body}>",
     "sender_cert_sha256": "<hex sha256 of the signer's DER cert>",
     "signature": "<base64 DER ECDSA-SHA256 over the payload bytes>"}

The receiver looks the signer up by hash, verifies the signature over the exact
payload bytes (no canonicalisation needed), then checks freshness.  Replay of a
request id is the receiver's job (it owns the store of seen ids).
"""

from __future__ import annotations

import base64
import binascii
import json
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

from attestation.pki import Identity

__all__ = [
    "BadSignature",
    "EnvelopeError",
    "MalformedEnvelope",
    "Opened",
    "StaleEnvelope",
    "UnknownSigner",
    "open_envelope",
    "seal",
]

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_SKEW_S = 300.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class EnvelopeError(Exception):
    """Base: the envelope cannot be trusted.

    MalformedEnvelope   not an envelope (bad JSON/base64/fields, too big)
    UnknownSigner       no certificate known for sender_cert_sha256
    BadSignature        the signature does not verify under that certificate
    StaleEnvelope       timestamp outside the allowed skew
    """


class MalformedEnvelope(EnvelopeError):
    pass


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


def seal(body: Any, identity: Identity, *, now: float | None = None) -> dict[str, str]:
    """Sign ``body`` (any JSON value) with ``identity``; adds timestamp and request id."""
    payload = json.dumps(
        {
            "timestamp": time.time() if now is None else now,
            "request_id": str(uuid.uuid4()),
            "body": body,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
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
) -> Opened:
    """Verify an envelope and return its body.

    ``resolve`` maps a signer hash to its certificate (None when unknown).
    ``max_skew_s=None`` skips the freshness check (for stored documents such as
    a signed config, whose freshness is its generation number).
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

    try:
        inner = json.loads(payload)
    except ValueError as exc:
        raise MalformedEnvelope(f"payload is not JSON: {exc}") from exc
    if not isinstance(inner, dict) or set(inner) != {"timestamp", "request_id", "body"}:
        raise MalformedEnvelope("payload must hold exactly timestamp, request_id and body")
    ts, rid = inner["timestamp"], inner["request_id"]
    if not isinstance(ts, int | float) or not isinstance(rid, str) or not 8 <= len(rid) <= 64:
        raise MalformedEnvelope("bad timestamp or request_id")
    if max_skew_s is not None:
        current = time.time() if now is None else now
        if abs(current - ts) > max_skew_s:
            raise StaleEnvelope(f"timestamp is {current - ts:+.0f} s off (limit {max_skew_s} s)")
    return Opened(inner["body"], rid, float(ts), cert, signer_hash)
