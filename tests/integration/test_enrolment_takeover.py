"""Node takeover, end to end on real swtpms with EK certificates and an HTTPS controller
with the production defaults (claims pinned, TPM-less nodes refused, the test's TPM maker
in the EK CA bundle).

The attacker holds a real onboarding key (it is on every node's disk) AND a genuine TPM
from the same maker: it still cannot register a serial claimed for, or approved as,
another node's identity, cannot enrol a software key as its AK, and a TPM without an EK
certificate (or one from a maker outside the bundle) cannot enrol at all; the genuine node
onboards and attests."""

from __future__ import annotations

import base64
import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from attestation import pki
from attestation.ek_cert import ek_fingerprint
from attestation.measurement import QUOTED_PCRS
from attestation.tpm import AK_ATTRS, Tpm, parse_tpm_setting
from node_agent.client import ControllerClient, ControllerError
from node_agent.identity import (
    OnboardingRefused,
    fingerprints,
    load_or_create_device,
    onboard,
)
from node_agent.measure import Measurements
from node_agent.tpm_enrolment import tpm_registration
from protocol.attest import MeasurementType
from protocol.messages import AppState
from tests.fixtures.attest_node import make_agent, provision
from tests.fixtures.controller_server import ControllerServer, running_controller

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tpm2_pytss import TPM2_ALG, TPM2B_PUBLIC, TPMT_SIGNATURE

pytestmark = pytest.mark.integration
SERIAL = "sn-victim"
AGENT_DIGEST = hashlib.sha256(b"the attacker's agent").hexdigest()


@pytest.fixture
def ctl(tmp_path: Path, ek_ca: Any) -> Iterator[ControllerServer]:
    with running_controller(tmp_path, ek_ca_bundle=ek_ca.bundle_path(), lenient=False) as server:
        yield server


@pytest.fixture
def bundle(ctl: ControllerServer, tmp_path: Path) -> Path:
    return provision(ctl, tmp_path, serial=None)  # an app "web"; nothing claimed


def _client(bundle: Path, ctl: ControllerServer) -> ControllerClient:
    return ControllerClient(ctl.url, bundle / "root-ca.pem")


def _attempt(ctl, bundle: Path, swtpm: Any, state: Path) -> OnboardingRefused | None:  # type: ignore[no-untyped-def]
    """One register with this TPM (its device key made in it); the refusal, if any."""
    with Tpm(parse_tpm_setting(swtpm.tcti)) as tpm:
        tpm.ensure_keys()
        try:
            onboard(_client(bundle, ctl), state, bundle, SERIAL, {}, tpm)
        except OnboardingRefused as refused:
            return refused
    return None


def _identity(swtpm: Any, state: Path) -> dict[str, str]:
    """What ``outpost-agent identity`` prints on the genuine node."""
    with Tpm(parse_tpm_setting(swtpm.tcti)) as tpm:
        tpm.ensure_keys()
        found = fingerprints(state, SERIAL, tpm)
    assert found.ek_cert_sha256 is not None
    return {"device_cert_sha256": found.device_cert_sha256, "ek_sha256": found.ek_cert_sha256}


def _genuine_onboards(ctl: ControllerServer, bundle: Path, swtpm: Any, state: Path) -> None:
    ctl.api("POST", f"/nodes/{SERIAL}/apps", json={"app": "web"}).raise_for_status()
    agent = make_agent(bundle, state, swtpm.tcti, serial=SERIAL)
    agent.start()
    (status,) = agent.once()
    assert status.state is AppState.RUNNING
    agent.close()
    trust = ctl.api("GET", f"/trust/nodes/{SERIAL}").json()
    assert (trust["state"], trust["tpm"], trust["device_key_in_tpm"]) == ("attested", "swtpm", True)


def test_a_claimed_serial_cannot_be_taken_with_a_real_onboarding_key_and_a_real_tpm(
    ctl, bundle, swtpm_factory, ek_ca, tmp_path
):
    genuine, attacker = swtpm_factory("genuine", ek_ca), swtpm_factory("attacker", ek_ca)
    pinned = _identity(genuine, tmp_path / "genuine")
    ctl.api("POST", "/nodes/claim", json={"serial": SERIAL, **pinned}).raise_for_status()

    refused = _attempt(ctl, bundle, attacker, tmp_path / "attacker")

    assert refused is not None and (refused.status, refused.code) == (403, "identity_mismatch")
    assert ctl.api("GET", f"/nodes/{SERIAL}").json()["state"] == "claimed"
    _genuine_onboards(ctl, bundle, genuine, tmp_path / "genuine")
    again = _attempt(ctl, bundle, attacker, tmp_path / "attacker")
    assert again is not None and again.status == 409
    refusals = [e for e in ctl.api("GET", "/audit").json()["events"] if "refused" in e["action"]]
    assert refusals and refusals[0]["target"] == SERIAL


def test_an_approved_serial_cannot_be_taken_and_the_genuine_node_onboards(
    ctl, bundle, swtpm_factory, ek_ca, tmp_path
):
    genuine, attacker = swtpm_factory("genuine", ek_ca), swtpm_factory("attacker", ek_ca)
    first = _attempt(ctl, bundle, genuine, tmp_path / "genuine")
    assert first is not None and first.code == "not_claimed"
    assert _attempt(ctl, bundle, attacker, tmp_path / "attacker") is not None
    (pending,) = ctl.api("GET", "/pending").json()["pending"]
    assert {k: pending[k] for k in ("device_cert_sha256", "ek_sha256")} == _identity(
        genuine, tmp_path / "genuine"
    )
    assert pending["conflicts"] == 1  # the attacker's attempt, counted, not recorded over
    ctl.api("POST", f"/pending/{SERIAL}/approve").raise_for_status()

    refused = _attempt(ctl, bundle, attacker, tmp_path / "attacker")

    assert refused is not None and (refused.status, refused.code) == (403, "identity_mismatch")
    _genuine_onboards(ctl, bundle, genuine, tmp_path / "genuine")


def _software_ak() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A software key whose TPM2B_PUBLIC claims every attribute of a TPM-made AK."""
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    pub = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=AK_ATTRS)
    pub.publicArea.unique.ecc.x = numbers.x.to_bytes(32, "big")
    pub.publicArea.unique.ecc.y = numbers.y.to_bytes(32, "big")
    return key, bytes(pub.marshal())


def _signed_by(key: ec.EllipticCurvePrivateKey, attest: bytes) -> str:
    r, s = decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA256())))
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA)
    sig.signature.ecdsa.hash = TPM2_ALG.SHA256
    sig.signature.ecdsa.signatureR = r.to_bytes(32, "big")
    sig.signature.ecdsa.signatureS = s.to_bytes(32, "big")
    return base64.b64encode(bytes(sig.marshal())).decode()


def test_a_software_ak_is_refused_even_with_a_genuine_certified_tpm(
    ctl, bundle, swtpm_factory, ek_ca, tmp_path
):
    """The attacker's own node, rightly claimed for its genuine TPM's EK, registers a
    software key as its AK (so it could sign any quote) and forges a quote over the real
    TPM's PCRs: without the answer only that TPM's AK could give, nothing is trusted."""
    soft_key, soft_ak = _software_ak()
    device = pki.make_device_cert(SERIAL)
    onboarding = pki.load_identity(bundle / "onboarding.pem", bundle / "onboarding.key")
    client = _client(bundle, ctl)
    with Tpm(parse_tpm_setting(swtpm_factory("own", ek_ca).tcti)) as tpm:
        tpm.ensure_keys()
        registration = tpm_registration(tpm).model_copy(
            update={"ak_public": base64.b64encode(soft_ak).decode()}
        )
        ek = registration.ek_cert
        assert ek is not None
        pin = {"device_cert_sha256": device.sha256, "ek_sha256": _ek_sha(ek)}
        ctl.api("POST", "/nodes/claim", json={"serial": SERIAL, **pin}).raise_for_status()
        status, answer = client.register(
            onboarding,
            {
                "serial": SERIAL,
                "onboarding_cert_pem": onboarding.cert_pem(),
                "device_cert_pem": device.cert_pem(),
                "tpm": registration.model_dump(mode="json", exclude_none=True),
            },
        )
        assert status == 201 and answer["credential"]  # a challenge it cannot answer
        measurements = Measurements(tmp_path / "m.json", tpm)
        measurements.measure(MeasurementType.AGENT, AGENT_DIGEST, "forged agent")
        nonce = client.signed(device, "attest", {"request": "nonce"})["nonce"]
        real = tpm.quote(bytes.fromhex(nonce), list(QUOTED_PCRS))
        quote = {
            "request": "quote",
            "nonce": nonce,
            "tpm": "swtpm",
            "quote": {
                "attest": base64.b64encode(real.attest).decode(),
                "signature": _signed_by(soft_key, real.attest),  # verifies under the soft AK
            },
            "pcrs": {str(i): v.hex() for i, v in real.pcrs.items()},
            "event_log": [e.model_dump(mode="json") for e in measurements.events],
            "ak_public": base64.b64encode(soft_ak).decode(),
            "credential": {"secret": "00" * 32},
        }
        result = client.signed(device, "attest", quote)

    assert result["result"] == "NO_CERT_FOUND" and not result.get("integrity_token")
    with pytest.raises(ControllerError) as err:
        client.signed(device, "config", {"config_hash": ""}, token="made-up")
    assert err.value.status == 403
    trust = ctl.api("GET", f"/trust/nodes/{SERIAL}").json()
    assert trust["state"] == "failed" and trust["result"] == "NO_CERT_FOUND"


def _ek_sha(ek_cert_b64: str) -> str:
    return ek_fingerprint(base64.b64decode(ek_cert_b64))


@pytest.mark.parametrize("maker", ["none", "foreign"])
def test_a_tpm_without_an_ek_certificate_from_the_bundle_cannot_enrol(
    ctl, bundle, swtpm_factory, foreign_ek_ca, tmp_path, maker
):
    swtpm = swtpm_factory("tpm", foreign_ek_ca if maker == "foreign" else None)
    with Tpm(parse_tpm_setting(swtpm.tcti)) as tpm:
        tpm.ensure_keys()
        device = fingerprints(tmp_path / "node", SERIAL, tpm).device_cert_sha256
    ctl.api("POST", "/nodes/claim", json={"serial": SERIAL, "device_cert_sha256": device})

    refused = _attempt(ctl, bundle, swtpm, tmp_path / "node")

    expected = {"none": "no_ek_cert", "foreign": "ek_untrusted"}[maker]
    assert refused is not None and (refused.status, refused.code) == (403, expected)
    assert ctl.api("GET", f"/nodes/{SERIAL}").json()["state"] == "claimed"


def test_a_bulk_imported_node_enrols_its_tpm_at_first_register_and_attests(
    ctl, bundle, swtpm_factory, ek_ca, tmp_path
):
    """Manufacturing: the maker's manifest names the serial, the device certificate and the
    TPM's EK certificate; the node never claimed registers (200: it is known), enrols the
    AK of that TPM and attests."""
    genuine = swtpm_factory("genuine", ek_ca)
    state = tmp_path / "genuine"
    with Tpm(parse_tpm_setting(genuine.tcti)) as tpm:
        tpm.ensure_keys()
        device = load_or_create_device(state, SERIAL, tpm)
        ek_der = tpm.ek_certificate()
    assert ek_der is not None
    b64 = base64.b64encode
    manifest = (
        f"serial,device_cert,ek_cert\n{SERIAL},"
        f"{b64(device.cert.public_bytes(Encoding.DER)).decode()},{b64(ek_der).decode()}\n"
    )
    r = ctl.api("POST", "/nodes/import", data=manifest, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1

    _genuine_onboards(ctl, bundle, genuine, state)
    node = ctl.api("GET", f"/nodes/{SERIAL}").json()
    assert node["uuid"] == r.json()["nodes"][0]["uuid"]
