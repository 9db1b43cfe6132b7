"""The agent's side of TPM enrolment on a real swtpm with EK certificates, against a
controller stand-in built only from the library the controller will call
(attestation/enrolment.py, quote.py): register carries the EK certificate and the AK;
the challenge is answered by TPM2_ActivateCredential and its answer goes with the
first quote; the register answer's generation floor is kept.

The stand-in (``EnrollingController``) is the reference for controller/: it opens the
real envelopes and validates the real protocol models."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import envelope, pki
from attestation.ek_cert import EkCaBundle
from attestation.enrolment import (
    EnrolmentRefused,
    begin_tpm_enrolment,
    check_credential_answer,
    new_challenge,
)
from attestation.quote import check_ak_public, verify_quote
from attestation.tpm import Tpm, TpmError, parse_tpm_setting
from node_agent.attest import AttestationRefused, Attestor
from node_agent.identity import load_identity, onboard
from node_agent.measure import Measurements
from node_agent.tpm_enrolment import PendingAnswer, answer_challenge
from protocol.attest import AttestRequest, AttestResponse, AttestResult, NonceResponse
from protocol.messages import RegisterRequest, RegisterResponse

pytestmark = pytest.mark.integration
NODE = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
FLOOR = 5


class EnrollingController:
    """register → EK chain + challenge; attest → answer checked before the quote."""

    def __init__(self, bundle: EkCaBundle, challenge_at: str = "register") -> None:
        self.bundle = bundle
        self.challenge_at = challenge_at
        self.ek_public = b""
        self.ak_name = b""
        self.secret_sha256 = ""
        self.enrolled = False
        self.nonces: set[str] = set()
        self.refusals: list[str] = []

    def register(self, onboarding: pki.Identity, body: dict[str, Any]) -> tuple[int, Any]:
        opened = envelope.open_envelope(envelope.seal(body, onboarding), lambda _h: onboarding.cert)
        req = RegisterRequest.model_validate(opened.body)
        assert req.tpm is not None
        enrolment = begin_tpm_enrolment(req.tpm, self.bundle)
        self.ek_public, self.ak_name = enrolment.ek_public, enrolment.ak.name
        self.secret_sha256 = enrolment.secret_sha256
        credential = enrolment.challenge if self.challenge_at == "register" else None
        answer = RegisterResponse(node_uuid=NODE, generation_floor=FLOOR, credential=credential)
        return 201, answer.model_dump(mode="json")

    def signed(self, device: pki.Identity, path: str, body: dict[str, Any], *_a: Any, **_k: Any):  # type: ignore[no-untyped-def]
        assert path == "attest"
        opened = envelope.open_envelope(envelope.seal(body, device), lambda _h: device.cert)
        req = AttestRequest.model_validate(opened.body).root
        if req.request == "nonce":
            nonce = secrets.token_hex(32)
            self.nonces.add(nonce)
            credential = None
            if not self.enrolled and self.challenge_at == "nonce":
                credential, self.secret_sha256 = new_challenge(self.ek_public, self.ak_name)
            answer = NonceResponse(
                nonce=nonce, expires_in_s=60, ak_enrolled=self.enrolled, credential=credential
            )
            return answer.model_dump(mode="json")
        assert req.nonce in self.nonces and req.quote and req.ak_public
        ak = check_ak_public(base64.b64decode(req.ak_public))
        try:
            if ak.name != self.ak_name:
                raise EnrolmentRefused("bad_ak", "the quote's AK is not the registered AK")
            if not self.enrolled:
                check_credential_answer(self.secret_sha256, req.credential)
        except EnrolmentRefused as exc:
            self.refusals.append(exc.reason)
            return AttestResponse(result=AttestResult.NO_CERT_FOUND, reason=str(exc)).model_dump()
        verify_quote(
            base64.b64decode(req.quote.attest),
            base64.b64decode(req.quote.signature),
            ak,
            bytes.fromhex(req.nonce),
            {i: bytes.fromhex(v) for i, v in req.pcrs.items()},
        )
        self.enrolled = True
        return AttestResponse(
            result=AttestResult.SUCCESS, integrity_token="token", expires_in_s=60
        ).model_dump()


@pytest.fixture
def onboarding_bundle(tmp_path: Path) -> Path:
    ca = pki.make_ca("onboarding")
    batch = pki.issue_cert(ca, "batch", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    pki.save_identity(batch, bundle / "onboarding.pem", bundle / "onboarding.key")
    (bundle / "root-ca.pem").write_text(ca.cert_pem())
    return bundle


@pytest.fixture
def tpm(certified_tpm: Tpm) -> Tpm:
    return certified_tpm


@pytest.fixture
def bundle(ek_ca_bundle: EkCaBundle) -> EkCaBundle:
    return ek_ca_bundle


def _onboarded(
    bundle: EkCaBundle, onboarding: Path, tpm: Tpm, state: Path, challenge_at: str = "register"
) -> tuple[EnrollingController, Any]:
    ctl = EnrollingController(bundle, challenge_at)
    return ctl, onboard(ctl, state, onboarding, "sn-ek", {}, tpm)  # type: ignore[arg-type]


def _attestor(ctl: EnrollingController, tpm: Tpm, state: Path) -> Attestor:
    measurements = Measurements(state / "measurements.json", tpm)
    return Attestor(ctl, measurements, tpm, True, PendingAnswer(state))  # type: ignore[arg-type]


def test_the_agent_answers_the_register_challenge_and_attests_with_the_answer(
    tpm, bundle, onboarding_bundle, tmp_path
):  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    ctl, identity = _onboarded(bundle, onboarding_bundle, tpm, state)
    assert PendingAnswer(state).load() is not None
    assert identity.generation_floor == FLOOR == load_identity(state, tpm).generation_floor  # type: ignore[union-attr]

    token = _attestor(ctl, tpm, state).attest(identity.device)

    assert token == "token" and ctl.enrolled and ctl.refusals == []
    assert PendingAnswer(state).load() is None  # used up


def test_the_answer_survives_an_agent_restart_before_the_first_quote(
    swtpm_with_ek, bundle, onboarding_bundle, tmp_path
):  # type: ignore[no-untyped-def]
    ctl = EnrollingController(bundle)
    state = tmp_path / "state"
    with Tpm(parse_tpm_setting(swtpm_with_ek.tcti)) as first:
        first.ensure_keys()
        onboard(ctl, state, onboarding_bundle, "sn-ek", {}, first)  # type: ignore[arg-type]
    swtpm_with_ek.reboot()
    with Tpm(parse_tpm_setting(swtpm_with_ek.tcti)) as again:
        again.ensure_keys()
        identity = load_identity(state, again)
        assert identity is not None
        _attestor(ctl, again, state).attest(identity.device)
    assert ctl.enrolled


def test_a_challenge_in_the_nonce_answer_is_answered_in_the_quote(
    tpm, bundle, onboarding_bundle, tmp_path
):  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    ctl, identity = _onboarded(bundle, onboarding_bundle, tpm, state, challenge_at="nonce")
    assert PendingAnswer(state).load() is None

    _attestor(ctl, tpm, state).attest(identity.device)

    assert ctl.enrolled


def test_a_quote_without_the_answer_is_refused_by_the_controller_side(
    tpm, bundle, onboarding_bundle, tmp_path
):  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    ctl, identity = _onboarded(bundle, onboarding_bundle, tpm, state)
    PendingAnswer(state).clear()  # e.g. a node that skips activation: no proof

    with pytest.raises(AttestationRefused, match="NO_CERT_FOUND"):
        _attestor(ctl, tpm, state).attest(identity.device)
    assert ctl.refusals == ["bad_answer"] and not ctl.enrolled


def test_the_node_refuses_a_challenge_for_another_ak(tpm, bundle):
    ek_public = tpm.certified_ek_public()
    assert ek_public is not None
    challenge, _ = new_challenge(ek_public, tpm.ak_name()[:2] + bytes(32))
    with pytest.raises(TpmError, match="another AK"):
        answer_challenge(tpm, challenge)
