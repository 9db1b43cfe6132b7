"""TPM enrolment messages: the EK certificate and AK at register, the credential challenge.

    register  → RegisterRequest.tpm = TpmRegistration{ek_cert, ek_public, ak_public}
    201/200   ← RegisterResponse.credential = CredentialChallenge{id_object,
                encrypted_secret, ak_name}   (MakeCredential to the EK for the AK's name)
    (nonce    ← NonceResponse.credential: a fresh challenge while the AK is not enrolled)
    quote     → QuoteRequest.credential = CredentialAnswer{secret}
                (what TPM2_ActivateCredential recovered: proof the AK is in that TPM)

TPM structures travel as base64 of their marshalled bytes (TPM2B_PUBLIC,
TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET), the EK certificate as base64 of its DER.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = [
    "CredentialAnswer",
    "CredentialChallenge",
    "TpmRegistration",
]


_B64 = r"^[A-Za-z0-9+/]*={0,2}$"


def _b64_chars(max_bytes: int) -> int:
    return (max_bytes + 2) // 3 * 4


EkCertB64 = Annotated[
    str, StringConstraints(pattern=_B64, min_length=4, max_length=_b64_chars(4096))
]
"""The EK certificate, DER (≤ 4096 bytes)."""
TpmPublicB64 = Annotated[
    str, StringConstraints(pattern=_B64, min_length=4, max_length=_b64_chars(1024))
]
"""A marshalled TPM2B_PUBLIC (an RSA 4096 key's is about 600 bytes)."""
IdObjectB64 = Annotated[
    str, StringConstraints(pattern=_B64, min_length=4, max_length=_b64_chars(256))
]
"""A marshalled TPM2B_ID_OBJECT: HMAC (≤ 64) + encrypted TPM2B_DIGEST (≤ 66) + sizes."""
EncryptedSecretB64 = Annotated[
    str, StringConstraints(pattern=_B64, min_length=4, max_length=_b64_chars(1024))
]
"""A marshalled TPM2B_ENCRYPTED_SECRET: an RSA-4096 ciphertext or an ECC point."""
NameHex = Annotated[str, StringConstraints(pattern=r"^(?:[0-9a-f]{2}){34,66}$")]
"""A TPM name: nameAlg (2 bytes) || digest (32..64 bytes), hex."""
SecretHex = Annotated[str, StringConstraints(pattern=r"^(?:[0-9a-f]{2}){1,32}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TpmRegistration(_Strict):
    """The node's TPM identity, sent at register (signed by the onboarding key)."""

    ek_cert: EkCertB64 | None = None
    """The EK certificate from the TPM's NV (DER); None: the TPM has none."""
    ek_public: TpmPublicB64
    """The certified EK's TPM2B_PUBLIC (its key must be the certificate's)."""
    ak_public: TpmPublicB64
    """The AK's TPM2B_PUBLIC as the TPM made it (attributes checked from it)."""


class CredentialChallenge(_Strict):
    """TPM2_MakeCredential's output: only the TPM with that EK and AK can open it."""

    id_object: IdObjectB64
    encrypted_secret: EncryptedSecretB64
    ak_name: NameHex
    """The AK name the credential is bound to (the node checks it is its AK's)."""


class CredentialAnswer(_Strict):
    """What TPM2_ActivateCredential recovered from the challenge."""

    secret: SecretHex
