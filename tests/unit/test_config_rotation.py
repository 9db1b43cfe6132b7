"""The node's config verifier: rotation retires signing keys, the generation floor from
registration (node_agent/config_verifier.py, checkpoint.py, identity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import envelope, pki
from node_agent.checkpoint import Checkpoint
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from node_agent.identity import load_identity, load_or_create_device
from protocol.desired_state import DesiredState

NODE = "6f1c3a1e-0d7b-4c1e-9a55-2d1f0e6b7c8d"


@pytest.fixture(scope="module")
def root() -> pki.Identity:
    return pki.make_ca("root")


def _signer(root: pki.Identity, name: str) -> pki.Identity:
    return pki.issue_cert(root, name, usage=ExtendedKeyUsageOID.CODE_SIGNING)


def _config(signer: pki.Identity, generation: int) -> dict[str, str]:
    doc = DesiredState(node_uuid=NODE, generation=generation)
    return envelope.seal(doc.model_dump(mode="json"), signer)


def test_after_a_config_from_the_new_key_the_old_key_is_retired(root):
    old, new = _signer(root, "signing 1"), _signer(root, "signing 2")
    verifier = ConfigVerifier(root.cert, [old.cert])
    current = verifier.verify(_config(old, 1), NODE)

    doc, changed = verifier.verify_fetched(_config(new, 2), NODE, current, 0, lambda: [new.cert])

    assert doc.generation == 2 and changed
    assert [pki.cert_sha256(c) for c in verifier.signers] == [new.sha256]
    with pytest.raises(ConfigRejected, match="unknown signer"):  # the attack: an old-key config
        verifier.verify_fetched(_config(old, 3), NODE, doc, 0, lambda: [new.cert])


def test_while_the_controller_lists_both_keys_both_stay(root):
    old, new = _signer(root, "signing 1"), _signer(root, "signing 2")
    verifier = ConfigVerifier(root.cert, [old.cert])
    verifier.verify_fetched(_config(new, 2), NODE, None, 0, lambda: [old.cert, new.cert])
    assert {pki.cert_sha256(c) for c in verifier.signers} == {old.sha256, new.sha256}


def test_nothing_is_retired_when_the_new_config_is_refused(root):
    old, new = _signer(root, "signing 1"), _signer(root, "signing 2")
    verifier = ConfigVerifier(root.cert, [old.cert])
    current = verifier.verify(_config(old, 5), NODE)
    with pytest.raises(ConfigRejected, match="older than the checkpoint"):
        verifier.verify_fetched(_config(new, 4), NODE, current, 0, lambda: [new.cert])
    assert old.sha256 in {pki.cert_sha256(c) for c in verifier.signers}


def test_a_known_signer_does_not_fetch_the_controllers_list(root):
    old = _signer(root, "signing 1")
    verifier = ConfigVerifier(root.cert, [old.cert])

    def fetch() -> list:  # type: ignore[type-arg]
        raise AssertionError("certs fetched for a known signer")

    _doc, changed = verifier.verify_fetched(_config(old, 1), NODE, None, 0, fetch)
    assert not changed


def test_a_listed_cert_not_issued_by_the_pinned_root_is_refused(root):
    stranger = _signer(pki.make_ca("other root"), "signing")
    verifier = ConfigVerifier(root.cert, [])
    with pytest.raises(ConfigRejected, match="signing certificate refused"):
        verifier.verify_fetched(_config(stranger, 1), NODE, None, 0, lambda: [stranger.cert])


def test_without_a_checkpoint_a_config_below_the_generation_floor_is_refused(root):
    signer = _signer(root, "signing")
    verifier = ConfigVerifier(root.cert, [signer.cert])
    with pytest.raises(ConfigRejected, match="generation floor 7"):
        verifier.verify(_config(signer, 6), NODE, floor=7)
    assert verifier.verify(_config(signer, 7), NODE, floor=7).generation == 7


def test_a_checkpoint_below_the_floor_is_not_used(root, tmp_path: Path):
    signer = _signer(root, "signing")
    verifier = ConfigVerifier(root.cert, [signer.cert])
    checkpoint = Checkpoint(tmp_path)
    checkpoint.save(_config(signer, 3))
    assert checkpoint.load(verifier, NODE).generation == 3  # type: ignore[union-attr]
    assert checkpoint.load(verifier, NODE, floor=4) is None


def test_the_floor_registration_gave_is_read_back_with_the_identity(tmp_path: Path):
    load_or_create_device(tmp_path, "sn-1")
    node = {"node_uuid": NODE, "generation_floor": 12}
    (tmp_path / "identity" / "node.json").write_text(json.dumps(node))
    identity = load_identity(tmp_path)
    assert identity is not None and identity.generation_floor == 12
    (tmp_path / "identity" / "node.json").write_text(json.dumps({"node_uuid": NODE}))
    assert load_identity(tmp_path).generation_floor == 0  # type: ignore[union-attr]
