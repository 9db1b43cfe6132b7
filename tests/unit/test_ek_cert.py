"""EK certificate checks (attestation/ek_cert.py) on certificates made here the way TPM
makers and swtpm make them; the real swtpm ones are in tests/integration/test_tpm_enrolment.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from attestation.ek_cert import (
    EK_CERTIFICATE_EKU,
    EkCaBundle,
    EkCertError,
    ek_fingerprint,
    trim_der,
    verify_ek_certificate,
)

NOW = dt.datetime.now(dt.UTC)
TCG_SAN = x509.SubjectAlternativeName(
    [
        x509.DirectoryName(
            x509.Name(
                [
                    x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.1"), "id:00001014"),
                    x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.2"), "swtpm"),
                    x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.3"), "id:20191023"),
                ]
            )
        )
    ]
)


def _usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(flags | on))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str, days: int = 3650) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(65537, 2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _ek(
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey],
    *,
    key: object | None = None,
    usage: x509.KeyUsage | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    san: bool = True,
    ca: bool = False,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    ek_key = key or ec.generate_private_key(ec.SECP384R1()).public_key()
    if usage is None:
        is_rsa = isinstance(ek_key, rsa.RSAPublicKey)
        usage = _usage(key_encipherment=is_rsa, key_agreement=not is_rsa)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("unknown"))
        .issuer_name(issuer[0].subject)
        .public_key(ek_key)  # type: ignore[arg-type]
        .serial_number(2)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku or [EK_CERTIFICATE_EKU]), critical=False)
    )
    if san:
        builder = builder.add_extension(TCG_SAN, critical=True)
    return builder.sign(issuer[1], hashes.SHA256())


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def maker() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return _ca("tpm maker")


@pytest.fixture(scope="module")
def bundle(maker) -> EkCaBundle:  # type: ignore[no-untyped-def]
    return EkCaBundle([maker[0]])


def test_an_ecc_ek_certificate_from_a_bundle_ca_verifies(maker, bundle):
    cert = _ek(maker)
    ek = verify_ek_certificate(_der(cert), bundle)
    assert (ek.manufacturer, ek.model, ek.version) == ("id:00001014", "swtpm", "id:20191023")
    assert ek.fingerprint == ek_fingerprint(_der(cert)) and ek.issuer == maker[0]


def test_an_rsa_ek_certificate_with_key_encipherment_verifies(maker, bundle):
    verify_ek_certificate(
        _der(_ek(maker, key=rsa.generate_private_key(65537, 2048).public_key())), bundle
    )


def test_nv_padding_after_the_certificate_is_ignored(maker, bundle):
    der = _der(_ek(maker))
    assert trim_der(der + bytes(64)) == der
    assert verify_ek_certificate(der + bytes(64), bundle).der == der


def test_a_certificate_from_a_ca_outside_the_bundle_is_refused(bundle):
    with pytest.raises(EkCertError, match="not in the EK CA bundle"):
        verify_ek_certificate(_der(_ek(_ca("other maker"))), bundle)


def test_a_ca_with_the_same_name_but_another_key_is_refused(maker, bundle):
    impostor = _ca("tpm maker")  # same subject, different key
    with pytest.raises(EkCertError, match="signature does not verify"):
        verify_ek_certificate(_der(_ek(impostor)), bundle)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"san": False}, "no TPM manufacturer"),
        ({"eku": [x509.ObjectIdentifier("1.3.6.1.5.5.7.3.2")]}, "tcg-kp-EKCertificate"),
        ({"usage": _usage(digital_signature=True)}, "keyAgreement"),
        ({"ca": True}, "CA certificate"),
        ({"key": ec.generate_private_key(ec.SECP256K1()).public_key()}, "curve"),
        ({"key": rsa.generate_private_key(65537, 1024).public_key()}, "1024 bits"),
        ({"not_after": NOW - dt.timedelta(seconds=1)}, "expired"),
    ],
)
def test_what_is_not_an_ek_certificate_is_refused(maker, bundle, kwargs, match):
    with pytest.raises(EkCertError, match=match):
        verify_ek_certificate(_der(_ek(maker, **kwargs)), bundle)


def test_an_rsa_ek_without_key_encipherment_is_refused(maker, bundle):
    cert = _ek(
        maker,
        key=rsa.generate_private_key(65537, 2048).public_key(),
        usage=_usage(key_agreement=True),
    )
    with pytest.raises(EkCertError, match="keyEncipherment"):
        verify_ek_certificate(_der(cert), bundle)


def test_an_expired_issuer_is_refused():
    old = _ca("old maker", days=-1)
    with pytest.raises(EkCertError, match="expired"):
        verify_ek_certificate(_der(_ek(old)), EkCaBundle([old[0]]))


def test_garbage_is_refused_as_not_a_certificate(bundle):
    with pytest.raises(EkCertError, match="not a DER certificate"):
        verify_ek_certificate(b"\x30\x03\x02\x01\x00", bundle)


def test_a_bundle_loads_from_a_pem_file_or_a_directory_of_pem_and_der(tmp_path: Path, maker):
    other = _ca("second maker")
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (maker[0], other[0]))
    (tmp_path / "all.pem").write_bytes(pem)
    assert len(EkCaBundle.load(tmp_path / "all.pem")) == 2
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.pem").write_bytes(maker[0].public_bytes(serialization.Encoding.PEM))
    (d / "b.der").write_bytes(_der(other[0]))
    (d / "README").write_text("ignored")
    assert len(EkCaBundle.load(d)) == 2
    with pytest.raises(EkCertError, match="does not exist"):
        EkCaBundle.load(tmp_path / "missing")
