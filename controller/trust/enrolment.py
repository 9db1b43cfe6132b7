"""TPM enrolment as the controller does it: at register the EK certificate chain, the EK
and AK public areas and a credential challenge; at attest the challenge's answer.

    identity = check_tpm(settings, bundle, req.tpm, tpm_less)   register, before anything
    challenge = enrol(session, node, identity)                 a new registration
    challenge = re_enrol(session, node, identity)              an identical repeat (200)
    nonce_challenge(session, node)                             a fresh one, when none open
    take_answer(trust, answer)                                 at the first quote

Only the sha256 of a challenge's secret is stored, and it is used once: a wrong or
missing answer closes it (the next nonce answer carries a new one).  A node whose AK has
not answered a challenge is not ``ak_activated`` and no quote of it is trusted.  Every
change here commits a wake-up for the node (its cached entry is read again).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy.orm import Session

from attestation.ek_cert import EkCaBundle
from attestation.enrolment import (
    EnrolmentRefused,
    TpmEnrolment,
    begin_tpm_enrolment,
    check_credential_answer,
    new_challenge,
)
from controller.store import notify
from controller.store.models import Node, NodeTrust
from controller.trust.state import trust_of
from protocol.tpm_enrolment import CredentialAnswer, CredentialChallenge, TpmRegistration

__all__ = [
    "EnrolmentRefused",
    "TpmIdentity",
    "check_tpm",
    "enrol",
    "nonce_challenge",
    "re_enrol",
    "take_answer",
]


@dataclass(frozen=True)
class TpmIdentity:
    """What register proved about the node's TPM (None fields: the node has no TPM)."""

    enrolment: TpmEnrolment | None
    ak_public: str | None = None

    @property
    def ek_sha256(self) -> str | None:
        return self.enrolment.ek.fingerprint if self.enrolment else None


def check_tpm(
    registration: TpmRegistration | None, bundle: EkCaBundle | None, tpm_less: str
) -> TpmIdentity:
    """The TPM part of a register body checked (EnrolmentRefused with its reason code:
    ``no_ek_cert``, ``ek_untrusted``, ``ek_mismatch``, ``bad_ak``, ``tpm_required``)."""
    if registration is None:
        if tpm_less != "allow":
            raise EnrolmentRefused(
                "tpm_required", "the node has no TPM and the trust policy refuses TPM-less nodes"
            )
        return TpmIdentity(None)
    if bundle is None:
        raise EnrolmentRefused(
            "ek_untrusted", "this controller has no EK CA bundle: no TPM can enrol"
        )
    return TpmIdentity(begin_tpm_enrolment(registration, bundle), registration.ak_public)


def enrol(session: Session, node: Node, identity: TpmIdentity) -> CredentialChallenge | None:
    """Record a new registration's TPM identity; the challenge to answer (None: no TPM)."""
    trust = trust_of(session, node)
    made = identity.enrolment
    trust.ak_activated = False
    if made is None:
        trust.ek_sha256 = trust.ek_public = trust.ak_public = trust.ak_name = None
        trust.credential_sha256 = None
        trust.tpm = "none"
        notify.changed(session, node.id)
        return None
    trust.ek_sha256 = made.ek.fingerprint
    trust.ek_public = base64.b64encode(made.ek_public).decode()
    trust.ak_public = identity.ak_public
    trust.ak_name = made.ak.name_hex
    trust.credential_sha256 = made.secret_sha256
    notify.changed(session, node.id)
    return made.challenge


def re_enrol(session: Session, node: Node, identity: TpmIdentity) -> CredentialChallenge | None:
    """An identical repeat of a registration: the same TPM identity is required (409
    otherwise); a new challenge while the AK is not activated yet.  A node imported in
    bulk (its EK certificate known, no AK yet) enrols the AK it shows now."""
    trust = trust_of(session, node)
    made = identity.enrolment
    if made is not None and trust.ak_name is None and made.ek.fingerprint == trust.ek_sha256:
        return enrol(session, node, identity)  # bulk-imported: its EK was certified, its AK new
    if (made.ek.fingerprint if made else None) != trust.ek_sha256 or (
        made.ak.name_hex if made else None
    ) != trust.ak_name:
        raise EnrolmentRefused(
            "identity_mismatch", "the node registered with another TPM (EK or AK)"
        )
    if made is None or trust.ak_activated:
        return None
    challenge, trust.credential_sha256 = new_challenge(made.ek_public, made.ak.name)
    notify.changed(session, node.id)
    return challenge


def nonce_challenge(session: Session, trust: NodeTrust) -> CredentialChallenge | None:
    """A fresh challenge for a node whose AK is not activated and has none open."""
    if trust.ak_activated or trust.credential_sha256 or not trust.ek_public or not trust.ak_name:
        return None
    challenge, trust.credential_sha256 = new_challenge(
        base64.b64decode(trust.ek_public), bytes.fromhex(trust.ak_name)
    )
    return challenge


def take_answer(trust: NodeTrust, answer: CredentialAnswer | None) -> None:
    """Check (and use up) the answer to the open challenge; EnrolmentRefused if wrong."""
    expected = trust.credential_sha256
    trust.credential_sha256 = None
    if not expected:
        raise EnrolmentRefused("bad_answer", "no credential challenge is open for this node")
    check_credential_answer(expected, answer)
