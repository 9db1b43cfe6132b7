"""Remote attestation from the node: nonce → quote + event log → integrity token.

The token is kept in memory only (so every agent start attests again) and is sent
with every ``config`` request.  The agent attests again when it has none, when it
is about to expire, when something new was measured since the last attestation, and
whenever ``config`` answers 403 for want of a valid token.

Until the controller has enrolled the AK, the quote request carries the answer to its
credential challenge (from register, or a new one in the nonce answer), which proves the
AK lives in the TPM the EK certificate names.
"""

from __future__ import annotations

import base64
import logging
import time

from attestation.measurement import MEASUREMENT_PCR, QUOTED_PCRS
from attestation.pki import Identity
from attestation.tpm import Tpm
from node_agent.client import ControllerClient
from node_agent.measure import Measurements
from node_agent.tpm_enrolment import PendingAnswer, answer_challenge
from protocol.attest import (
    AttestResponse,
    AttestResult,
    DeviceKeyProof,
    NonceResponse,
    QuoteEvidence,
    QuoteRequest,
    TpmKind,
)

__all__ = ["AttestationRefused", "Attestor"]

log = logging.getLogger(__name__)
RENEW_AT = 0.8  # attest again once 80 % of the token's life has passed


class AttestationRefused(Exception):
    """The controller did not accept the evidence; ``result`` says why."""

    def __init__(self, result: AttestResult, reason: str) -> None:
        super().__init__(f"{result.value}: {reason}")
        self.result, self.reason = result, reason


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Attestor:
    def __init__(
        self,
        client: ControllerClient,
        measurements: Measurements,
        tpm: Tpm | None,
        device_key_in_tpm: bool,
        pending: PendingAnswer | None = None,
    ) -> None:
        self.client = client
        self.measurements = measurements
        self.tpm = tpm
        self.device_key_in_tpm = device_key_in_tpm
        self.pending = pending
        """The credential answer waiting for the first quote (None: nothing kept on disk)."""
        self.token: str | None = None
        self._renew_at = 0.0
        self._events_attested = -1
        self.last_result: AttestResult | None = None

    def due(self) -> bool:
        """True when config would need a fresh token (none, ageing, or new measurements)."""
        return (
            self.token is None
            or time.monotonic() >= self._renew_at
            or len(self.measurements.events) != self._events_attested
        )

    def forget(self) -> None:
        self.token = None

    def nonce(self, device: Identity) -> NonceResponse:
        return NonceResponse.model_validate(
            self.client.signed(device, "attest", {"request": "nonce"})
        )

    def quote_request(self, nonce: NonceResponse) -> QuoteRequest:
        """The evidence for ``nonce``: a TPM quote (or the software PCR) and the event log."""
        raw_nonce = bytes.fromhex(nonce.nonce)
        events = list(self.measurements.events)
        if self.tpm is None:
            return QuoteRequest(
                request="quote",
                nonce=nonce.nonce,
                tpm=TpmKind.NONE,
                pcrs={MEASUREMENT_PCR: self.measurements.software_pcr().hex()},
                event_log=events,
            )
        evidence = self.tpm.quote(raw_nonce, list(QUOTED_PCRS))
        credential = None
        if not nonce.ak_enrolled:
            if nonce.credential is not None:
                credential = answer_challenge(self.tpm, nonce.credential)
                if self.pending is not None:
                    self.pending.save(credential)
            elif self.pending is not None:
                credential = self.pending.load()
        proof = None
        if not nonce.ak_enrolled and self.device_key_in_tpm:
            attest, signature = self.tpm.certify_device_key(raw_nonce)
            proof = DeviceKeyProof(
                public=_b64(self.tpm.public("device")),
                attest=_b64(attest),
                signature=_b64(signature),
            )
        return QuoteRequest(
            request="quote",
            nonce=nonce.nonce,
            tpm=TpmKind(self.tpm.kind),
            quote=QuoteEvidence(attest=_b64(evidence.attest), signature=_b64(evidence.signature)),
            pcrs={i: v.hex() for i, v in evidence.pcrs.items()},
            event_log=events,
            ak_public=_b64(self.tpm.public("ak")),
            ek_public=None if nonce.ak_enrolled else _b64(self.tpm.public("ek")),
            device_key=proof,
            credential=credential,
        )

    def submit(self, device: Identity, request: QuoteRequest) -> AttestResponse:
        wire = request.model_dump(mode="json", exclude_none=True)
        return AttestResponse.model_validate(self.client.signed(device, "attest", wire))

    def attest(self, device: Identity) -> str:
        """One round trip; returns the token or raises AttestationRefused."""
        request = self.quote_request(self.nonce(device))
        answer = self.submit(device, request)
        self.last_result = answer.result
        if answer.result is not AttestResult.SUCCESS or not answer.integrity_token:
            self.token = None
            log.error("attestation refused: %s %s", answer.result.value, answer.reason)
            raise AttestationRefused(answer.result, answer.reason)
        self.token = answer.integrity_token
        if request.credential is not None and self.pending is not None:
            self.pending.clear()  # the AK is enrolled: the answer is used up
        self._renew_at = time.monotonic() + RENEW_AT * (answer.expires_in_s or 60.0)
        self._events_attested = len(request.event_log)
        log.info("attested (%d measurements)", len(request.event_log))
        return self.token
