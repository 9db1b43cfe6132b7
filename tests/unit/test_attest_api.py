"""The attest endpoint and the config gate, with simulated TPM-less nodes (TPM quotes
are checked on swtpm in the integration tests)."""

from __future__ import annotations

import hashlib

import pytest

from attestation.measurement import replay
from controller.store.models import AttestNonce, IntegrityToken
from tests.device_sim import SIM_AGENT_DIGEST, SimDevice


def _node(client, admin_headers, controller_dir, tmp_path, serial):  # type: ignore[no-untyped-def]
    dev = SimDevice.from_bundle(controller_dir.bundle(tmp_path / f"b-{serial}"), serial)
    client.post("/api/v1/nodes/claim", json={"serial": serial}, headers=admin_headers)
    assert client.post("/api/v1/device/register", json=dev.register_body()).status_code == 201
    return dev


@pytest.fixture
def node(client, admin_headers, controller_dir, tmp_path):  # type: ignore[no-untyped-def]
    return _node(client, admin_headers, controller_dir, tmp_path, "sn-1")


def _attest(client, dev, body):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/device/attest", json=dev.signed(body))


def _nonce(client, dev) -> str:  # type: ignore[no-untyped-def]
    return _attest(client, dev, {"request": "nonce"}).json["nonce"]


def _quote(nonce: str, agent: str = SIM_AGENT_DIGEST, pcr14: str | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "request": "quote",
        "nonce": nonce,
        "tpm": "none",
        "pcrs": {"14": pcr14 or replay([agent]).hex()},
        "event_log": [{"type": "agent", "digest": agent, "description": "code"}],
    }


def _config(client, dev, headers=None):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/device/config", json=dev.signed({"config_hash": ""}), headers=headers or {}
    )


def _services(client):  # type: ignore[no-untyped-def]
    return client.application.extensions["outpost"]


def test_a_nonce_is_fresh_and_says_whether_an_ak_is_enrolled(client, node):
    r = _attest(client, node, {"request": "nonce"})
    assert r.status_code == 200
    assert len(r.json["nonce"]) == 64 and r.json["ak_enrolled"] is False
    assert _nonce(client, node) != r.json["nonce"]


def test_success_returns_a_token_that_config_accepts(client, node):
    r = _attest(client, node, _quote(_nonce(client, node)))
    assert r.json["result"] == "SUCCESS" and r.json["expires_in_s"] > 0
    token = {"Outpost-Integrity-Token": r.json["integrity_token"]}
    assert _config(client, node, token).status_code == 200


def test_config_without_a_token_is_403(client, node):
    r = _config(client, node)
    assert (r.status_code, r.json["error"]["code"]) == (403, "integrity_token_missing")


def test_config_with_an_unknown_token_is_403(client, node):
    r = _config(client, node, {"Outpost-Integrity-Token": "made-up"})
    assert (r.status_code, r.json["error"]["code"]) == (403, "integrity_token_invalid")


def test_another_nodes_token_is_not_accepted(client, admin_headers, controller_dir, tmp_path, node):
    other = _node(client, admin_headers, controller_dir, tmp_path, "sn-2")
    headers = other.attest_with(client)
    assert _config(client, node, headers).json["error"]["code"] == "integrity_token_invalid"


def test_a_nonce_is_single_use(client, node):
    nonce = _nonce(client, node)
    assert _attest(client, node, _quote(nonce)).json["result"] == "SUCCESS"
    assert _attest(client, node, _quote(nonce)).json["result"] == "NONCE_MISMATCH"


def test_a_nonce_issued_to_another_node_is_a_mismatch(
    client, admin_headers, controller_dir, tmp_path, node
):
    other = _node(client, admin_headers, controller_dir, tmp_path, "sn-2")
    r = _attest(client, node, _quote(_nonce(client, other)))
    assert r.json["result"] == "NONCE_MISMATCH"


def test_an_expired_nonce_is_a_mismatch(client, node):
    nonce = _nonce(client, node)
    with _services(client).db.transaction() as s:
        row = s.get(AttestNonce, nonce)
        row.expires_at = row.expires_at.replace(year=2000)
    assert _attest(client, node, _quote(nonce)).json["result"] == "NONCE_MISMATCH"


def test_an_event_log_that_does_not_replay_is_a_quote_failure(client, node):
    r = _attest(client, node, _quote(_nonce(client, node), pcr14="0" * 64))
    assert r.json["result"] == "QUOTE_FAILED" and "does not replay" in r.json["reason"]


def test_a_tpm_quote_request_without_a_quote_is_422_naming_the_problem(client, node):
    body = _quote(_nonce(client, node)) | {"tpm": "swtpm"}
    r = _attest(client, node, body)
    assert r.status_code == 422
    assert "needs quote and ak_public" in str(r.json["error"]["details"])


def test_an_unknown_request_kind_is_422(client, node):
    assert _attest(client, node, {"request": "dance"}).status_code == 422


def test_a_refusal_kills_the_token_the_node_had(client, node):
    headers = node.attest_with(client)
    bad = hashlib.sha256(b"patched agent").hexdigest()
    r = _attest(client, node, _quote(_nonce(client, node), agent=bad))
    assert r.json["result"] == "POLICY_MISMATCH"
    assert _config(client, node, headers).json["error"]["code"] == "integrity_token_invalid"


def test_an_expired_token_is_403_expired(client, node):
    headers = node.attest_with(client)
    with _services(client).db.transaction() as s:
        for row in s.query(IntegrityToken).all():
            row.expires_at = row.expires_at.replace(year=2000)
    assert _config(client, node, headers).json["error"]["code"] == "integrity_token_expired"


def test_trust_state_shows_failed_with_the_reason(client, admin_headers, node):
    node.attest_with(client)
    bad = hashlib.sha256(b"patched agent").hexdigest()
    _attest(client, node, _quote(_nonce(client, node), agent=bad))
    t = client.get("/api/v1/trust/nodes/sn-1", headers=admin_headers).json
    assert (t["state"], t["result"]) == ("failed", "POLICY_MISMATCH")
    assert "not in the node's baseline" in t["reason"]


def test_accepting_a_new_baseline_lets_the_node_attest_again_and_is_audited(
    client, admin_headers, node
):
    node.attest_with(client)
    new = hashlib.sha256(b"agent v2").hexdigest()
    _attest(client, node, _quote(_nonce(client, node), agent=new))
    r = client.post("/api/v1/trust/nodes/sn-1/accept-baseline", headers=admin_headers)
    assert r.status_code == 200 and r.json["baseline"]["agent"] == [new]
    assert _attest(client, node, _quote(_nonce(client, node), agent=new)).json["result"] == (
        "SUCCESS"
    )
    event = client.get("/api/v1/audit", headers=admin_headers).json["events"][0]
    assert event["action"] == "trust.accept_baseline"
    assert event["before"]["agent"] == [SIM_AGENT_DIGEST] and event["after"]["agent"] == [new]


def test_accepting_a_baseline_without_verified_evidence_is_409(client, admin_headers, node):
    r = client.post("/api/v1/trust/nodes/sn-1/accept-baseline", headers=admin_headers)
    assert r.status_code == 409


def test_a_policy_refusing_tpm_less_nodes_answers_no_cert_found(client, admin_headers, node):
    r = client.patch("/api/v1/trust/policy", json={"tpm_less": "refuse"}, headers=admin_headers)
    assert r.status_code == 200 and r.json["tpm_less"] == "refuse"
    assert _attest(client, node, _quote(_nonce(client, node))).json["result"] == "NO_CERT_FOUND"


def test_a_bad_policy_change_is_422_and_changes_nothing(client, admin_headers):
    before = client.get("/api/v1/trust/policy", headers=admin_headers).json
    r = client.patch("/api/v1/trust/policy", json={"tpm_less": "maybe"}, headers=admin_headers)
    assert r.status_code == 422
    assert client.get("/api/v1/trust/policy", headers=admin_headers).json == before


def test_the_trust_list_shows_every_registered_node(client, admin_headers, node):
    node.attest_with(client)
    (t,) = client.get("/api/v1/trust/nodes", headers=admin_headers).json["nodes"]
    assert (t["serial"], t["state"], t["tpm"]) == ("sn-1", "attested", "none")
