"""Judge one quote request: nonce, AK, credential answer, quote, PCR digest, event-log
replay, then policy.

    nonce unknown/used/expired/other node's ........................ NONCE_MISMATCH
    TPM-less node refused by policy; an AK other than the one whose
      EK certificate register checked; no or a wrong answer to the
      credential challenge (the AK is not in that TPM) ............... NO_CERT_FOUND
    bad AK, signature, structure, PCR digest or replay ............... QUOTE_FAILED
    quote made over another nonce .................................... NONCE_MISMATCH
    measurements the policy does not allow ........................... POLICY_MISMATCH

The AK is never trusted on first use: register checked the EK certificate against the
EK CA bundle and the AK's TPM-made public area, and sent a credential challenge bound to
both (:mod:`controller.trust.enrolment`); the first quote must carry its answer.  The
nonce and the challenge are used up whatever the result.  A refusal changes only the
node's trust record (state ``failed``, result, reason) and drops its tokens; the AK is
marked activated and the evidence kept only when the quote verified; the baseline is
recorded only on the first success.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from attestation.measurement import MEASUREMENT_PCR, QUOTED_PCRS, replay
from attestation.quote import (
    QuoteError,
    check_ak_public,
    load_public,
    verify_certify,
    verify_quote,
)
from controller.store.models import Node, utcnow
from controller.trust.enrolment import EnrolmentRefused, take_answer
from controller.trust.policy import PolicyInput, evaluate
from controller.trust.state import (
    drop_tokens,
    fleet_policy,
    issue_token,
    issued_for,
    take_nonce,
    trust_of,
)
from protocol.attest import AttestResponse, AttestResult, QuoteRequest, TpmKind

__all__ = ["check_quote"]

log = logging.getLogger(__name__)


@dataclass
class _Outcome:
    enrol: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] | None = None
    new_baseline: dict[str, Any] | None = None


class _Refused(Exception):
    def __init__(self, result: AttestResult, reason: str, verified: _Outcome | None = None) -> None:
        super().__init__(reason)
        self.result, self.reason = result, reason
        self.verified = verified
        """Set when the evidence verified (POLICY_MISMATCH): enrol the AK, keep it."""


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise _Refused(AttestResult.QUOTE_FAILED, f"{what} is not base64") from exc


def _same_key(a: Any, b: Any) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(a.public_bytes(der, fmt) == b.public_bytes(der, fmt))


def _device_key_proof(
    req: QuoteRequest, ak: Any, nonce: bytes, device_cert: x509.Certificate
) -> dict[str, Any]:
    """At activation: whether the AK certified the device certificate's key (in the TPM)."""
    if req.device_key is None:
        return {"ak_activated": True, "device_key_in_tpm": False}
    device = load_public(_b64(req.device_key.public, "device key"), "device key")
    if not _same_key(device.key, device_cert.public_key()):
        raise _Refused(
            AttestResult.QUOTE_FAILED, "the certified key is not the device certificate's key"
        )
    verify_certify(
        _b64(req.device_key.attest, "certification"),
        _b64(req.device_key.signature, "certification signature"),
        ak,
        nonce,
        device,
    )
    return {"ak_activated": True, "device_key_in_tpm": True}


def _enrolled_ak(trust: Any, req: QuoteRequest) -> Any:
    """The quote's AK, which must be the one register enrolled (checked, TPM-made)."""
    assert req.ak_public is not None  # the schema checks it
    if not trust.ak_name:
        raise _Refused(
            AttestResult.NO_CERT_FOUND, "the node registered without a TPM: no AK is enrolled"
        )
    ak = check_ak_public(_b64(req.ak_public, "AK"))
    if ak.name_hex != trust.ak_name:
        raise _Refused(AttestResult.NO_CERT_FOUND, "the AK is not the one enrolled for this node")
    if not trust.ak_activated:
        try:
            take_answer(trust, req.credential)
        except EnrolmentRefused as exc:
            raise _Refused(AttestResult.NO_CERT_FOUND, str(exc)) from exc
    return ak


def _verify(session: Session, node: Node, req: QuoteRequest, cert: x509.Certificate) -> _Outcome:
    trust = trust_of(session, node)
    policy = fleet_policy(session)
    if not take_nonce(session, node, req.nonce):
        raise _Refused(
            AttestResult.NONCE_MISMATCH, "the nonce is unknown, used, expired or another node's"
        )
    nonce = bytes.fromhex(req.nonce)
    pcrs = {i: bytes.fromhex(v) for i, v in req.pcrs.items()}
    out = _Outcome()
    if req.tpm is TpmKind.NONE:
        if trust.ak_name or trust.ek_sha256:
            raise _Refused(
                AttestResult.QUOTE_FAILED, "this node enrolled a TPM: a TPM quote is required"
            )
        if policy.tpm_less == "refuse":
            raise _Refused(
                AttestResult.NO_CERT_FOUND, "the node has no TPM and the policy refuses TPM-less"
            )
        if set(pcrs) != {MEASUREMENT_PCR}:
            raise _Refused(AttestResult.QUOTE_FAILED, "a TPM-less node reports PCR 14 only")
    else:
        assert req.quote is not None  # the schema checks it
        activating = not trust.ak_activated
        ak = _enrolled_ak(trust, req)
        if activating:
            out.enrol = _device_key_proof(req, ak, nonce, cert)
        if not set(QUOTED_PCRS) <= set(pcrs):
            raise _Refused(AttestResult.QUOTE_FAILED, f"the quote must cover PCRs {QUOTED_PCRS}")
        verify_quote(
            _b64(req.quote.attest, "quote"),
            _b64(req.quote.signature, "quote signature"),
            ak,
            nonce,
            pcrs,
        )
    if any(e.pcr != MEASUREMENT_PCR for e in req.event_log):
        raise _Refused(AttestResult.QUOTE_FAILED, f"events may only extend PCR {MEASUREMENT_PCR}")
    if replay(e.digest for e in req.event_log) != pcrs[MEASUREMENT_PCR]:
        raise _Refused(
            AttestResult.QUOTE_FAILED, f"the event log does not replay to PCR {MEASUREMENT_PCR}"
        )
    hex_pcrs = {i: v.hex() for i, v in pcrs.items()}
    out.evidence = {
        "event_log": [e.model_dump(mode="json") for e in req.event_log],
        "pcrs": {str(i): v for i, v in hex_pcrs.items()},
    }
    payloads, images = issued_for(session, node)
    verdict = evaluate(
        PolicyInput(
            events=req.event_log,
            pcrs=hex_pcrs if req.tpm is not TpmKind.NONE else {},
            baseline=trust.baseline or {},
            allowlist=policy.agent_allowlist or [],
            issued_payloads=payloads,
            issued_images=images,
        )
    )
    out.new_baseline = verdict.new_baseline
    if not verdict.ok:
        raise _Refused(AttestResult.POLICY_MISMATCH, "; ".join(verdict.reasons), out)
    return out


def check_quote(
    session: Session, node: Node, req: QuoteRequest, device_cert: x509.Certificate
) -> AttestResponse:
    """Judge ``req`` and record the outcome on the node's trust record."""
    trust = trust_of(session, node)
    now = utcnow()
    trust.last_attempt_at = now
    try:
        try:
            out = _verify(session, node, req, device_cert)
        except QuoteError as exc:
            raise _Refused(AttestResult(exc.result), str(exc)) from exc
    except _Refused as refused:
        if refused.verified is not None:
            _apply(trust, req, refused.verified)
        trust.state, trust.result, trust.reason = "failed", refused.result.value, refused.reason
        drop_tokens(session, node)
        log.warning(
            "attestation refused: %s (%s)",
            refused.result.value,
            refused.reason,
            extra={"node_uuid": node.uuid},
        )
        return AttestResponse(result=refused.result, reason=refused.reason)
    _apply(trust, req, out)
    if out.new_baseline is not None:
        trust.baseline = out.new_baseline
    trust.state, trust.result, trust.attested_at = "attested", AttestResult.SUCCESS.value, now
    trust.reason = "" if req.tpm is not TpmKind.NONE else "no TPM: measurements self-reported"
    policy = fleet_policy(session)
    token = issue_token(session, node, policy.token_ttl_s)
    log.info("node attested", extra={"node_uuid": node.uuid, "tpm": req.tpm.value})
    return AttestResponse(
        result=AttestResult.SUCCESS,
        reason=trust.reason,
        integrity_token=token,
        expires_in_s=policy.token_ttl_s,
    )


def _apply(trust: Any, req: QuoteRequest, out: _Outcome) -> None:
    trust.tpm = req.tpm.value
    for key, value in out.enrol.items():
        setattr(trust, key, value)
    if out.evidence is not None:
        trust.evidence = out.evidence
