"""Revocation and rotation with a real agent on swtpm: the device cert is renewed before
it expires (same TPM key), the node follows a config-signing rotation without
re-onboarding and then refuses configs signed by the rotated-out key, and a revoked node
is cut off but keeps running what it had, treating the revocation as permanent."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from attestation import envelope, pki
from node_agent.client import ControllerError
from node_agent.config_verifier import ConfigRejected
from node_agent.identity import renew_if_due
from protocol.messages import AppState
from tests.fixtures.attest_node import make_agent, provision

pytestmark = pytest.mark.integration


@pytest.fixture
def bundle(controller_server, tmp_path):  # type: ignore[no-untyped-def]
    return provision(controller_server, tmp_path)


def _registered_cert(ctl) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from controller.store.database import Database
    from controller.store.models import Node

    db = Database(f"sqlite:///{ctl.data_dir / 'outpost.db'}")
    with db.transaction() as s:
        sha = s.scalar(select(Node.device_cert_sha256).where(Node.serial == "sn-a"))
    db.engine.dispose()
    return str(sha)


def test_the_agent_renews_its_device_cert_before_it_expires(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    first = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    first.start()
    old = first.identity.device
    first.close()
    # a renewal window longer than the cert's life: due at the next start
    again = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti, device_cert_renew_days=36500)
    again.start()
    new = again.identity.device
    assert new.sha256 != old.sha256
    assert new.cert.public_key() == old.cert.public_key() == again.tpm.device_key().public_key()
    assert _registered_cert(controller_server) == new.sha256
    assert pki.load_cert((tmp_path / "state/identity/device.pem").read_bytes()) == new.cert
    (status,) = again.once()
    assert status.state is AppState.RUNNING
    again.close()


def test_a_renewal_the_controller_took_but_the_node_did_not_finish_completes_at_start(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    pending = pki.make_device_cert("sn-a", agent.identity.device.key)
    (tmp_path / "state/identity/device.next.pem").write_text(pending.cert_pem())
    agent.client.signed(agent.identity.device, "renew", {"device_cert_pem": pending.cert_pem()})
    agent.close()  # the node stopped before promoting the new cert
    again = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    again.start()
    assert again.identity.device.sha256 == pending.sha256 == _registered_cert(controller_server)
    assert not (tmp_path / "state/identity/device.next.pem").exists()
    again.close()


def test_renewal_is_not_done_long_before_expiry(bundle, tmp_path, swtpm_with_ek):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    same = renew_if_due(agent.client, tmp_path / "state", agent.identity, "sn-a", 30)
    assert same is agent.identity
    agent.close()


def _rotated(ctl, agent) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Rotate the signing cert and deliver a config signed by the new one."""
    rotated = ctl.api("POST", "/trust/rotate-signing").json()
    ctl.api("DELETE", "/nodes/sn-a/apps/web").raise_for_status()  # a change to deliver
    assert agent.fetch_config() is True
    assert agent.desired.apps == []
    return rotated


def test_the_node_follows_a_signing_cert_rotation_without_onboarding_again(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    agent.once()
    node_uuid = agent.identity.node_uuid
    rotated = _rotated(controller_server, agent)
    kept = {pki.cert_sha256(c) for c in agent.checkpoint.load_signers()}
    assert kept == {rotated["signing_sha256"]}  # the old cert is retired with the new config
    assert agent.identity.node_uuid == node_uuid
    agent.close()
    restarted = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    restarted.start()  # the checkpoint signed by the new cert verifies from disk
    assert restarted.desired is not None and restarted.desired.apps == []
    restarted.close()


def test_a_config_signed_by_a_rotated_out_key_is_refused_by_the_node(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    ctl = controller_server
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    agent.once()
    rotated = _rotated(ctl, agent)  # the node holds a config signed by the new key
    # whoever holds the old key (kept on the controller, or leaked) signs a newer config
    old = rotated["previous_sha256"][:16]
    pki_dir = ctl.data_dir / "pki"
    old_key = pki.load_identity(pki_dir / f"signing-{old}.pem", pki_dir / f"signing-{old}.key")
    assert old_key.sha256 == rotated["previous_sha256"]
    forged = agent.desired.model_copy(update={"generation": agent.desired.generation + 1})
    wire = envelope.seal(forged.model_dump(mode="json"), old_key)

    with pytest.raises(ConfigRejected, match="unknown signer"):
        agent.take_config(wire)

    assert agent.desired.generation == forged.generation - 1
    agent.close()


def test_a_rotation_alone_moves_the_node_off_the_old_key(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    """No content change after the rotation: the controller still re-signs the node's
    config with the new key, the node takes it and drops the old cert, and a config the
    old key signs afterwards is refused."""
    ctl = controller_server
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    agent.once()
    generation = agent.desired.generation
    rotated = ctl.api("POST", "/trust/rotate-signing").json()

    agent.fetch_config()

    kept = {pki.cert_sha256(c) for c in agent.checkpoint.load_signers()}
    assert kept == {rotated["signing_sha256"]}
    assert agent.desired.generation == generation  # same content, re-signed
    old = rotated["previous_sha256"][:16]
    pki_dir = ctl.data_dir / "pki"
    old_key = pki.load_identity(pki_dir / f"signing-{old}.pem", pki_dir / f"signing-{old}.key")
    forged = agent.desired.model_copy(update={"generation": generation + 1})
    with pytest.raises(ConfigRejected, match="unknown signer"):
        agent.take_config(envelope.seal(forged.model_dump(mode="json"), old_key))
    agent.close()


def test_a_revoked_node_checks_back_slowly_and_never_reports_an_outage(
    bundle, tmp_path, swtpm_with_ek, controller_server, caplog
):
    ctl = controller_server
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti, revoked_check_s=321.0)
    agent.start()
    agent.once()
    ctl.api("POST", "/trust/nodes/sn-a/revoke", json={"reason": "stolen"}).raise_for_status()
    caplog.set_level(logging.INFO)

    assert agent.fetch_once(0.0) == 321.0
    assert agent.fetch_once(0.0) == 321.0
    (status,) = agent.step(force_report=True)

    assert agent.revocation.revoked and "revoked" in agent.revocation.reason
    assert status.state is AppState.RUNNING  # the checkpoint keeps running
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the controller revoked this node" in m for m in messages) == 1
    assert not any("controller away" in m or "not delivered" in m for m in messages)
    assert not any("config fetch failed" in m for m in messages)
    agent.close()


def test_a_node_revoked_from_the_cli_is_cut_off_but_keeps_its_apps(
    bundle, tmp_path, swtpm_with_ek, controller_server
):
    ctl = controller_server
    agent = make_agent(bundle, tmp_path / "state", swtpm_with_ek.tcti)
    agent.start()
    agent.once()
    cli = [sys.executable, "-m", "outpost_cli.main", "--url", ctl.url]
    cli += ["--token", ctl.token, "--ca", str(ctl.root_ca)]
    done = subprocess.run(
        [*cli, "revoke", "sn-a", "--reason", "decommissioned"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([*cli, "trust"], capture_output=True, text=True).stdout
    assert "revoked" in shown and "decommissioned" in shown
    one = subprocess.run([*cli, "trust", "sn-a"], capture_output=True, text=True).stdout
    assert "state:" in one and "revoked" in one and "device_key_in_tpm: True" in one
    with pytest.raises(ControllerError) as err:
        agent.attest()
    assert (err.value.status, err.value.code) == (403, "revoked")
    (status,) = agent.once()
    assert status.state is AppState.RUNNING
    agent.close()
