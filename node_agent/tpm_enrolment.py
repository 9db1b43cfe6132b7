"""The node's side of TPM enrolment: what register carries, answering the challenge.

    register → tpm_registration(tpm)                     (EK cert, EK and AK publics)
    201/200  ← credential challenge → answer_challenge()  → PendingAnswer.save()
    nonce    ← maybe a new challenge    → answer_challenge()
    quote    → QuoteRequest.credential = the pending answer; cleared after SUCCESS

The answer is kept in ``identity/credential.json`` (0600) between register and the first
successful attestation, so an agent restart in between does not lose it.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

from pydantic import ValidationError

from attestation.files import atomic_write
from attestation.tpm import Tpm, TpmError
from protocol.tpm_enrolment import CredentialAnswer, CredentialChallenge, TpmRegistration

__all__ = ["PendingAnswer", "answer_challenge", "tpm_registration"]

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tpm_registration(tpm: Tpm) -> TpmRegistration:
    """The TPM's identity for register: the EK certificate (None when the TPM has none,
    or it cannot be read: the controller then decides), the EK and the AK publics."""
    try:
        cert, ek_public = tpm.ek_certificate(), tpm.certified_ek_public()
    except TpmError as exc:
        log.error("the TPM's EK certificate cannot be used: %s", exc)
        cert, ek_public = None, None
    if cert is None:
        log.warning("the TPM has no EK certificate: a controller that requires one refuses it")
    return TpmRegistration(
        ek_cert=_b64(cert) if cert else None,
        ek_public=_b64(ek_public or tpm.public("ek")),
        ak_public=_b64(tpm.public("ak")),
    )


def answer_challenge(tpm: Tpm, challenge: CredentialChallenge) -> CredentialAnswer:
    """TPM2_ActivateCredential of the challenge; TpmError when it is not for this AK/EK."""
    if challenge.ak_name != tpm.ak_name().hex():
        raise TpmError("the credential challenge is for another AK than this TPM's")
    secret = tpm.activate_credential(
        base64.b64decode(challenge.id_object), base64.b64decode(challenge.encrypted_secret)
    )
    log.info("credential challenge answered (AK bound to the certified EK)")
    return CredentialAnswer(secret=secret.hex())


class PendingAnswer:
    """The answer waiting for the first quote (``identity/credential.json``, 0600)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "identity" / "credential.json"

    def save(self, answer: CredentialAnswer) -> None:
        atomic_write(self.path, answer.model_dump_json().encode(), mode=0o600)

    def load(self) -> CredentialAnswer | None:
        try:
            return CredentialAnswer.model_validate(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, ValidationError) as exc:
            log.error("%s is unusable, ignoring it: %s", self.path, exc)
            return None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
