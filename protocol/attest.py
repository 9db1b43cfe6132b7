"""Attestation messages (bodies of signed envelopes to ``POST /api/v1/device/attest``).

Two requests, as EVE's: ask for a nonce, then send a quote made with it::

    {"request": "nonce"}                    → NonceResponse
    {"request": "quote", "nonce": …, …}     → AttestResponse (SUCCESS carries the token)

TPM structures travel as base64 of their marshalled bytes (TPMS_ATTEST, TPMT_SIGNATURE,
TPM2B_PUBLIC), so any TSS or tpm2-tools can read them.  The integrity token goes back
to the controller in the ``Outpost-Integrity-Token`` header of ``config`` requests.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import Field, RootModel, StringConstraints, model_validator

from protocol.desired_state import Sha256Hex
from protocol.messages import Pem
from protocol.model_base import Duration, StrictModel
from protocol.tpm_enrolment import CredentialAnswer, CredentialChallenge

__all__ = [
    "TOKEN_HEADER",
    "AttestRequest",
    "AttestResponse",
    "AttestResult",
    "DeviceKeyProof",
    "Measurement",
    "MeasurementType",
    "NonceRequest",
    "NonceResponse",
    "QuoteEvidence",
    "QuoteRequest",
    "RenewRequest",
    "TpmKind",
]

TOKEN_HEADER = "Outpost-Integrity-Token"
MAX_EVENTS = 4096

Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
B64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]*={0,2}$", max_length=8192)]
PcrIndex = Annotated[int, Field(ge=0, le=23)]


class AttestResult(enum.StrEnum):
    """EVE's attestation results, plus POLICY_MISMATCH for measurements the policy refuses."""

    SUCCESS = "SUCCESS"
    NONCE_MISMATCH = "NONCE_MISMATCH"
    NO_CERT_FOUND = "NO_CERT_FOUND"
    QUOTE_FAILED = "QUOTE_FAILED"
    POLICY_MISMATCH = "POLICY_MISMATCH"


class TpmKind(enum.StrEnum):
    NONE = "none"
    SWTPM = "swtpm"
    DEVICE = "device"


class MeasurementType(enum.StrEnum):
    AGENT = "agent"
    """The agent's own code (node_agent, attestation, protocol packages)."""
    CONFIG = "config"
    """A config the agent enforces: sha256 of the signed payload bytes."""
    IMAGE = "image"
    """An image the agent runs: its sha256."""


class Measurement(StrictModel):
    """One event-log entry: ``digest`` was extended into ``pcr``."""

    pcr: PcrIndex = 14
    type: MeasurementType
    digest: Sha256Hex
    description: Annotated[str, StringConstraints(max_length=256)] = ""


class NonceRequest(StrictModel):
    request: Literal["nonce"]


class NonceResponse(StrictModel):
    nonce: Hex32
    expires_in_s: Duration
    ak_enrolled: bool
    """False until the controller has pinned this node's AK: send the enrolment fields."""
    credential: CredentialChallenge | None = None
    """A (new) credential challenge while the AK is not enrolled: answer it in the quote."""


class QuoteEvidence(StrictModel):
    attest: B64
    """TPMS_ATTEST as signed by the AK (qualifying data = the nonce)."""
    signature: B64
    """TPMT_SIGNATURE (ECDSA, SHA-256), marshalled."""


class DeviceKeyProof(StrictModel):
    """TPM2_Certify of the device key by the AK (proves the device key is TPM-resident)."""

    public: B64
    """The device key's TPM2B_PUBLIC."""
    attest: B64
    signature: B64


class QuoteRequest(StrictModel):
    request: Literal["quote"]
    nonce: Hex32
    tpm: TpmKind
    quote: QuoteEvidence | None = None
    pcrs: dict[PcrIndex, Sha256Hex] = Field(default_factory=dict, max_length=24)
    """sha256 PCR values covered by the quote (for tpm none: the software PCR 14)."""
    event_log: list[Measurement] = Field(default_factory=list, max_length=MAX_EVENTS)
    ak_public: B64 | None = None
    """The AK's TPM2B_PUBLIC (its name must match the enrolled AK)."""
    ek_public: B64 | None = None
    """Enrolment only: the EK's TPM2B_PUBLIC."""
    device_key: DeviceKeyProof | None = None
    """Enrolment only: present when the device key is TPM-resident."""
    credential: CredentialAnswer | None = None
    """Enrolment only: the secret TPM2_ActivateCredential recovered from the challenge."""

    @model_validator(mode="after")
    def _tpm_fields(self) -> QuoteRequest:
        if self.tpm is TpmKind.NONE:
            if self.quote or self.ak_public or self.ek_public or self.device_key or self.credential:
                raise ValueError(
                    "tpm none carries no quote, AK, EK, device-key proof or credential"
                )
        elif self.quote is None or self.ak_public is None:
            raise ValueError(f"tpm {self.tpm.value} needs quote and ak_public")
        return self


class AttestRequest(
    RootModel[Annotated[NonceRequest | QuoteRequest, Field(discriminator="request")]]
):
    """Either request, told apart by its ``request`` field."""


class AttestResponse(StrictModel):
    result: AttestResult
    reason: Annotated[str, StringConstraints(max_length=4096)] = ""
    integrity_token: str | None = None
    expires_in_s: Duration | None = None


class RenewRequest(StrictModel):
    """Device cert renewal: a new self-signed cert over the same device key."""

    device_cert_pem: Pem
