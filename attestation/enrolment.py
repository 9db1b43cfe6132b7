"""TPM enrolment, the controller's side: EK certificate → credential challenge → answer.

At register (``RegisterRequest.tpm``)::

    enrolment = begin_tpm_enrolment(req.tpm, bundle)       # EnrolmentRefused if not
    store enrolment.ek.fingerprint, enrolment.ak.name_hex, enrolment.ak_public,
          enrolment.ek_public, enrolment.secret_sha256
    answer RegisterResponse(..., credential=enrolment.challenge)

At the first quote (before trusting it)::

    check_credential_answer(stored secret_sha256, req.credential)   # EnrolmentRefused
    the quote's AK must be the stored AK (same name)

To issue a new challenge later (e.g. in a nonce answer while the AK is not enrolled):
``challenge, secret_sha256 = new_challenge(ek_public, ak_name)``.

What each step proves: the EK certificate chains to a TPM maker in the bundle (a real
TPM, not software); the EK public the node sent holds the certificate's key; the AK
public area, as the TPM made it, is a restricted, fixedTPM, fixedParent,
sensitiveDataOrigin signing key; only a TPM holding that EK's private key AND a loaded,
authorisable object with exactly that AK name can recover the secret (the TPM checks the
HMAC over the name; an AK loaded as a public-only external key cannot be authorised, and
a key with its private part loaded from outside cannot carry fixedTPM). The secret is
never stored, only its sha256, and is used once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from attestation.credential import (
    CredentialError,
    make_credential,
    parse_tpm_public,
    tpm_public_key,
)
from attestation.ek_cert import (
    EkCaBundle,
    EkCertError,
    EkCertificate,
    same_public_key,
    verify_ek_certificate,
)
from attestation.quote import QuoteError, TpmPublic, check_ak_public
from protocol.tpm_enrolment import CredentialAnswer, CredentialChallenge, TpmRegistration

__all__ = [
    "EnrolmentRefused",
    "TpmEnrolment",
    "begin_tpm_enrolment",
    "check_credential_answer",
    "new_challenge",
]

SECRET_BYTES = 32


class EnrolmentRefused(Exception):
    """The TPM identity is not acceptable; ``reason`` is a stable code:

    no_ek_cert     the TPM has no EK certificate
    ek_untrusted   the EK certificate is malformed, not an EK certificate, out of date
                   or not issued by a CA of the bundle
    ek_mismatch    the EK public area is not the certificate's key or not a restricted
                   decryption key the challenge can be made for
    bad_ak         the AK public area is not a TPM-made restricted signing key
    bad_answer     no, or the wrong, answer to the credential challenge
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TpmEnrolment:
    """A verified TPM identity and the challenge that binds its AK to its EK."""

    ek: EkCertificate
    ek_public: bytes
    """The EK's marshalled TPM2B_PUBLIC (keep it to issue new challenges)."""
    ak: TpmPublic
    challenge: CredentialChallenge
    secret_sha256: str
    """hex sha256 of the challenge's secret: store it, compare the answer against it."""


def _b64(value: str, what: str, reason: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnrolmentRefused(reason, f"{what} is not base64: {exc}") from exc


def new_challenge(ek_public: bytes, ak_name: bytes) -> tuple[CredentialChallenge, str]:
    """A fresh challenge for ``ak_name`` under the EK; returns it and its secret's sha256."""
    secret = os.urandom(SECRET_BYTES)
    try:
        made = make_credential(ek_public, ak_name, secret)
    except CredentialError as exc:
        raise EnrolmentRefused(
            "ek_mismatch", f"no challenge can be made for this EK: {exc}"
        ) from exc
    challenge = CredentialChallenge(
        id_object=base64.b64encode(made.id_object).decode(),
        encrypted_secret=base64.b64encode(made.encrypted_secret).decode(),
        ak_name=ak_name.hex(),
    )
    return challenge, hashlib.sha256(secret).hexdigest()


def begin_tpm_enrolment(registration: TpmRegistration, bundle: EkCaBundle) -> TpmEnrolment:
    """Check the EK certificate, the EK and AK public areas; make the challenge."""
    if registration.ek_cert is None:
        raise EnrolmentRefused("no_ek_cert", "the TPM has no EK certificate")
    try:
        ek = verify_ek_certificate(
            _b64(registration.ek_cert, "EK certificate", "ek_untrusted"), bundle
        )
    except EkCertError as exc:
        raise EnrolmentRefused("ek_untrusted", f"EK certificate refused: {exc}") from exc
    ek_public = _b64(registration.ek_public, "EK public", "ek_mismatch")
    try:
        ek_key = tpm_public_key(parse_tpm_public(ek_public, "EK"))
    except CredentialError as exc:
        raise EnrolmentRefused("ek_mismatch", str(exc)) from exc
    if not same_public_key(ek_key, ek.public_key):
        raise EnrolmentRefused("ek_mismatch", "the EK public area is not the certified key")
    try:
        ak = check_ak_public(_b64(registration.ak_public, "AK public", "bad_ak"))
    except QuoteError as exc:
        raise EnrolmentRefused("bad_ak", str(exc)) from exc
    challenge, secret_sha256 = new_challenge(ek_public, ak.name)
    return TpmEnrolment(ek, ek_public, ak, challenge, secret_sha256)


def check_credential_answer(secret_sha256: str, answer: CredentialAnswer | None) -> None:
    """Refuse unless ``answer`` holds the secret whose sha256 is ``secret_sha256``."""
    if answer is None:
        raise EnrolmentRefused("bad_answer", "the credential challenge was not answered")
    got = hashlib.sha256(bytes.fromhex(answer.secret)).hexdigest()
    if not hmac.compare_digest(got, secret_sha256):
        raise EnrolmentRefused(
            "bad_answer", "the credential answer is wrong: the AK is not in the certified TPM"
        )
