"""``outpost-agent identity``: the fingerprints an operator pins in a claim, printed from
the node's own device cert and its TPM's EK certificate (real swtpm with EK certs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from attestation import pki
from attestation.tpm import Tpm, parse_tpm_setting
from node_agent.cli import main
from node_agent.identity import load_or_create_device

pytestmark = pytest.mark.integration


def _identity(capsys, state: Path, tpm: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    argv = ["--state-dir", str(state), "--bundle", str(state / "bundle")]
    assert main([*argv, "--serial", "sn-id", "--tpm", tpm, "identity"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "outpost-agent identity: serial sn-id"
    return dict(line.split(": ", 1) for line in lines[1:])


def _der_sha256(state: Path) -> str:
    cert = pki.load_cert((state / "identity" / "device.pem").read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_identity_prints_the_device_cert_and_ek_cert_fingerprints(capsys, tmp_path, swtpm_with_ek):  # type: ignore[no-untyped-def]
    shown = _identity(capsys, tmp_path, swtpm_with_ek.tcti)

    with Tpm(parse_tpm_setting(swtpm_with_ek.tcti)) as tpm:
        ek_der = tpm.ek_certificate()
        device = load_or_create_device(tmp_path, "sn-id", tpm)  # what register will send
    assert ek_der is not None
    assert shown["ek-cert-sha256"] == hashlib.sha256(ek_der).hexdigest()
    assert shown["device-cert-sha256"] == device.sha256 == _der_sha256(tmp_path)
    assert _identity(capsys, tmp_path, swtpm_with_ek.tcti) == shown  # stable across runs


def test_identity_without_a_tpm_or_without_an_ek_cert_says_so(capsys, tmp_path, swtpm):  # type: ignore[no-untyped-def]
    assert _identity(capsys, tmp_path / "a", "none")["ek-cert-sha256"] == "none (no TPM)"
    shown = _identity(capsys, tmp_path / "b", swtpm.tcti)
    assert shown["ek-cert-sha256"] == "none (the TPM has no EK certificate)"
    assert shown["device-cert-sha256"] == _der_sha256(tmp_path / "b")
