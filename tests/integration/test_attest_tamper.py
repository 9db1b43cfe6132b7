"""Tampering, each refused with its own result and nothing of the node's identity, AK,
baseline or configs changed on the controller; no token is issued and the one the node
held stops working, so it gets no new config but keeps running what it had.

Real swtpm (with EK certificates), real controller over HTTPS, the agent's own TPM and
measurement code.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from attestation.tpm import Tpm, parse_tpm_setting
from node_agent.agent import CODE_ROOTS
from node_agent.attest import AttestationRefused
from node_agent.client import ControllerError
from protocol.attest import AttestResult, QuoteEvidence
from protocol.messages import AppState
from tests.fixtures.attest_node import live_tokens, make_agent, provision, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def attested(controller_server, tmp_path, swtpm_with_ek):  # type: ignore[no-untyped-def]
    """A node that attested, got its config and runs its app; plus the controller's view."""
    bundle = provision(controller_server, tmp_path)
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    agent.once()
    agent.attest()  # evidence now covers the config and the image
    yield agent
    agent.close()


def _result(ctl) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    t = ctl.api("GET", "/trust/nodes/sn-a").json()
    return t["state"], t["result"]


def _config_with(agent, token):  # type: ignore[no-untyped-def]
    return agent.client.signed(agent.identity.device, "config", {"config_hash": ""}, token)


def _refused_and_unchanged(ctl, agent, before, result: str) -> None:  # type: ignore[no-untyped-def]
    """The node is failed with ``result``, its old token is dead, nothing else changed."""
    assert _result(ctl) == ("failed", result)
    assert snapshot(ctl) == before
    assert live_tokens(ctl) == 0
    with pytest.raises(ControllerError) as err:
        _config_with(agent, agent.attestor.token)
    assert err.value.status == 403


def test_a_changed_agent_file_is_a_policy_mismatch(controller_server, tmp_path, swtpm_with_ek):
    code = tmp_path / "code"
    roots = [shutil.copytree(root, code / root.name) for root in CODE_ROOTS]
    bundle = provision(controller_server, tmp_path)
    first = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti, code_roots=roots)
    first.start()
    first.once()
    first.attest()
    first.close()
    before = snapshot(controller_server)
    (Path(roots[0]) / "agent.py").write_text("# patched by an attacker\n", encoding="utf-8")
    patched = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti, code_roots=roots)
    patched.start()
    with pytest.raises(AttestationRefused) as err:
        patched.attest()
    assert err.value.result is AttestResult.POLICY_MISMATCH
    assert "agent code" in err.value.reason
    _refused_and_unchanged(controller_server, patched, before, "POLICY_MISMATCH")
    (status,) = patched.once()  # autonomy: the checkpoint is still enforced
    assert status.state is AppState.RUNNING
    patched.close()


def test_a_changed_checkpoint_is_a_policy_mismatch(
    attested, controller_server, tmp_path, swtpm_with_ek
):
    attested.close()
    path = tmp_path / "state" / "checkpoint.json"
    data = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(data["envelope"]["payload"]))
    payload["body"]["apps"] = []
    data["envelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(data))
    before = snapshot(controller_server)
    restarted = make_agent(attested.settings.bundle_dir, tmp_path / "state", swtpm_with_ek.tcti)
    restarted.start()
    with pytest.raises(AttestationRefused) as err:
        restarted.attest()
    assert err.value.result is AttestResult.POLICY_MISMATCH
    assert "config checkpoint" in err.value.reason and "was not issued" in err.value.reason
    _refused_and_unchanged(controller_server, restarted, before, "POLICY_MISMATCH")
    restarted.close()


def test_a_replayed_nonce_is_a_nonce_mismatch(attested, controller_server):
    device = attested.identity.device
    request = attested.attestor.quote_request(attested.attestor.nonce(device))
    assert attested.attestor.submit(device, request).result is AttestResult.SUCCESS
    before = snapshot(controller_server)
    again = attested.attestor.submit(device, request)  # same nonce, newly signed envelope
    assert again.result is AttestResult.NONCE_MISMATCH and again.integrity_token is None
    _refused_and_unchanged(controller_server, attested, before, "NONCE_MISMATCH")


def test_an_old_quote_with_a_fresh_nonce_is_a_nonce_mismatch(attested, controller_server):
    device = attested.identity.device
    old = attested.attestor.quote_request(attested.attestor.nonce(device))
    fresh = attested.attestor.nonce(device)
    before = snapshot(controller_server)
    answer = attested.attestor.submit(device, old.model_copy(update={"nonce": fresh.nonce}))
    assert answer.result is AttestResult.NONCE_MISMATCH
    assert "another nonce" in answer.reason
    _refused_and_unchanged(controller_server, attested, before, "NONCE_MISMATCH")


def _other_tpm_quote(swtpm_factory, nonce: bytes, pcrs: list[int]):  # type: ignore[no-untyped-def]
    with Tpm(parse_tpm_setting(swtpm_factory("other").tcti)) as other:
        other.ensure_keys()
        return other.quote(nonce, pcrs), base64.b64encode(other.public("ak")).decode()


def test_a_quote_from_another_tpm_is_a_quote_failure(attested, controller_server, swtpm_factory):
    device = attested.identity.device
    nonce = attested.attestor.nonce(device)
    honest = attested.attestor.quote_request(nonce)
    evidence, _ = _other_tpm_quote(swtpm_factory, bytes.fromhex(nonce.nonce), sorted(honest.pcrs))
    forged = honest.model_copy(
        update={
            "quote": QuoteEvidence(
                attest=base64.b64encode(evidence.attest).decode(),
                signature=base64.b64encode(evidence.signature).decode(),
            )
        }
    )
    before = snapshot(controller_server)
    answer = attested.attestor.submit(device, forged)
    assert answer.result is AttestResult.QUOTE_FAILED
    assert "does not verify under the AK" in answer.reason
    _refused_and_unchanged(controller_server, attested, before, "QUOTE_FAILED")


def test_a_quote_by_another_ak_is_no_cert_found(attested, controller_server, swtpm_factory):
    device = attested.identity.device
    nonce = attested.attestor.nonce(device)
    honest = attested.attestor.quote_request(nonce)
    evidence, other_ak = _other_tpm_quote(
        swtpm_factory, bytes.fromhex(nonce.nonce), sorted(honest.pcrs)
    )
    forged = honest.model_copy(
        update={
            "ak_public": other_ak,
            "pcrs": {i: v.hex() for i, v in evidence.pcrs.items()},
            "quote": QuoteEvidence(
                attest=base64.b64encode(evidence.attest).decode(),
                signature=base64.b64encode(evidence.signature).decode(),
            ),
        }
    )
    before = snapshot(controller_server)
    answer = attested.attestor.submit(device, forged)
    assert answer.result is AttestResult.NO_CERT_FOUND
    assert "not the one enrolled" in answer.reason
    _refused_and_unchanged(controller_server, attested, before, "NO_CERT_FOUND")


def test_an_expired_token_is_refused_and_changes_nothing(attested, controller_server):
    from controller.store.database import Database
    from controller.store.models import IntegrityToken

    db = Database(f"sqlite:///{controller_server.data_dir / 'outpost.db'}")
    with db.transaction() as s:  # let the token's lifetime run out
        for row in s.query(IntegrityToken).all():
            row.expires_at = row.expires_at.replace(year=2000)
    db.engine.dispose()
    before = snapshot(controller_server)
    with pytest.raises(ControllerError) as err:
        _config_with(attested, attested.attestor.token)
    assert (err.value.status, err.value.code) == (403, "integrity_token_expired")
    assert snapshot(controller_server) == before
    assert _result(controller_server) == ("attested", "SUCCESS")
    attested.fetch_config()  # the agent's answer to that 403: attest again, then ask
    assert live_tokens(controller_server) == 1


def test_a_revoked_node_is_refused_everything(attested, controller_server):
    ctl = controller_server
    r = ctl.api("POST", "/trust/nodes/sn-a/revoke", json={"reason": "stolen"})
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    before = snapshot(ctl)
    device = attested.identity.device
    calls = {
        "attest": lambda: attested.attestor.nonce(device),
        "config": lambda: _config_with(attested, attested.attestor.token),
        "info": lambda: attested.client.signed(
            device, "info", {"agent_version": "t", "config_generation": 1}
        ),
    }
    for name, call in calls.items():
        with pytest.raises(ControllerError) as err:
            call()
        assert (err.value.status, err.value.code) == (403, "revoked"), name
    status, _ = _register_again(attested)
    assert status == 403
    assert snapshot(ctl) == before and live_tokens(ctl) == 0
    assert ctl.api("GET", "/audit").json()["events"][0]["action"] == "node.revoke"


def _register_again(agent):  # type: ignore[no-untyped-def]
    from attestation import pki

    bundle = agent.settings.bundle_dir
    onboarding = pki.load_identity(bundle / "onboarding.pem", bundle / "onboarding.key")
    body = {
        "serial": "sn-a",
        "onboarding_cert_pem": onboarding.cert_pem(),
        "device_cert_pem": agent.identity.device.cert_pem(),
        "inventory": {},
    }
    try:
        return agent.client.register(onboarding, body)
    except ControllerError as exc:
        return exc.status, exc.code
