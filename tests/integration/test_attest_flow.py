"""The whole trust flow on real components: swtpm, tpm2-pytss, an HTTPS controller and
the agent: onboarding with a TPM-resident key, quote, verification, token, config."""

from __future__ import annotations

import pytest

from node_agent.attest import AttestationRefused
from node_agent.client import ControllerError
from node_agent.identity import OnboardingRefused, onboard
from protocol.attest import AttestResult
from protocol.messages import AppState
from tests.fixtures.attest_node import make_agent, provision

pytestmark = pytest.mark.integration


@pytest.fixture
def bundle(controller_server, tmp_path):  # type: ignore[no-untyped-def]
    return provision(controller_server, tmp_path)


def _trust(ctl, serial="sn-a"):  # type: ignore[no-untyped-def]
    return ctl.api("GET", f"/trust/nodes/{serial}").json()


def test_a_node_with_a_tpm_onboards_with_a_key_that_never_leaves_the_tpm(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    identity_dir = tmp_path / "state" / "identity"
    assert not (identity_dir / "device.key").exists()
    assert (identity_dir / "tpm.json").exists()
    assert agent.identity.device.cert.public_key() == agent.tpm.device_key().public_key()
    node = controller_server.api("GET", "/nodes/sn-a").json()
    assert node["inventory"]["tpm"] == "swtpm"
    agent.close()


def test_the_node_attests_with_a_tpm_quote_and_then_gets_its_config(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    (status,) = agent.once()
    assert status.state is AppState.RUNNING
    agent.attest()  # what the next config fetch does: the config and image were measured
    trust = _trust(controller_server)
    assert (trust["state"], trust["result"], trust["tpm"]) == ("attested", "SUCCESS", "swtpm")
    assert trust["device_key_in_tpm"] is True
    kinds = [e["type"] for e in trust["evidence"]["event_log"]]
    assert kinds[0] == "agent" and "config" in kinds and "image" in kinds
    agent.close()


def test_config_without_an_integrity_token_is_refused(bundle, tmp_path, swtpm_with_ek):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    with pytest.raises(ControllerError) as err:
        agent.client.signed(agent.identity.device, "config", {"config_hash": ""})
    assert (err.value.status, err.value.code) == (403, "integrity_token_missing")
    agent.close()


def test_the_integrity_token_is_kept_in_memory_only(bundle, tmp_path, swtpm_with_ek):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    agent.once()
    token = agent.attestor.token.encode()
    for path in (tmp_path / "state").rglob("*"):
        assert not path.is_file() or token not in path.read_bytes(), path
    agent.close()


def test_an_agent_restart_attests_again_and_carries_on_the_event_log(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    first = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    first.start()
    first.once()
    events = list(first.measurements.events)
    first.close()
    attested_at = _trust(controller_server)["attested_at"]
    again = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    again.start()
    assert again.measurements.events == events  # same TPM boot: nothing new to measure
    assert again.attestor.token is None
    (status,) = again.once()
    assert status.state is AppState.RUNNING
    assert _trust(controller_server)["attested_at"] != attested_at
    again.close()


def test_after_a_tpm_reset_the_node_measures_afresh_and_attests(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    first = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    first.start()
    first.once()
    first.close()
    swtpm_with_ek.reboot()
    again = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    again.start()
    assert [e.type.value for e in again.measurements.events] == ["agent", "config", "image"]
    again.attest()
    assert _trust(controller_server)["result"] == "SUCCESS"
    again.close()


def test_a_node_without_a_tpm_attests_with_self_reported_measurements(
    bundle, tmp_path, controller_server
):
    agent = make_agent(bundle, tmp_path / "state", "none")
    agent.start()
    (status,) = agent.once()
    assert status.state is AppState.RUNNING
    trust = _trust(controller_server)
    assert (trust["state"], trust["tpm"], trust["device_key_in_tpm"]) == ("attested", "none", False)
    assert "self-reported" in trust["reason"]


def test_the_fleet_policy_refuses_a_node_without_a_tpm_at_register(
    bundle, tmp_path, controller_server
):
    r = controller_server.api("PATCH", "/trust/policy", json={"tpm_less": "refuse"})
    assert r.status_code == 200
    agent = make_agent(bundle, tmp_path / "state", "none")
    with pytest.raises(OnboardingRefused) as err:
        onboard(agent.client, tmp_path / "state", bundle, "sn-a", {})
    assert (err.value.status, err.value.code) == (403, "tpm_required")
    assert controller_server.api("GET", "/nodes/sn-a").json()["state"] == "claimed"


def test_a_tpm_less_node_registered_before_the_policy_changed_is_refused_at_attest(
    bundle, tmp_path, controller_server
):
    agent = make_agent(bundle, tmp_path / "state", "none")
    agent.start()
    r = controller_server.api("PATCH", "/trust/policy", json={"tpm_less": "refuse"})
    assert r.status_code == 200
    with pytest.raises(AttestationRefused) as err:
        agent.attest()
    assert err.value.result is AttestResult.NO_CERT_FOUND
    assert agent.once() == []  # no token, so no config: nothing to run
    trust = _trust(controller_server)
    assert (trust["state"], trust["result"]) == ("failed", "NO_CERT_FOUND")
