"""Certificates and keys: the controller's CAs and certs, onboarding and device identities.

All keys are ECDSA P-256 and all certificate work goes through ``cryptography``;
nothing here implements a primitive.  The shapes (see docs/architecture.md):

    root CA ──┬── TLS server cert        (EKU serverAuth, SANs)
              └── config-signing cert    (EKU codeSigning)
    onboarding CA ── onboarding certs    (EKU clientAuth; one per node batch)
    device key ── self-signed device cert (as EVE: the device makes its own)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attestation.files import atomic_write

__all__ = [
    "CertError",
    "CertNotValid",
    "Identity",
    "cert_sha256",
    "check_validity",
    "generate_key",
    "issue_cert",
    "load_cert",
    "load_identity",
    "make_ca",
    "make_device_cert",
    "save_identity",
    "verify_chain",
]

PrivateKey = ec.EllipticCurvePrivateKey


class CertError(Exception):
    """A certificate is malformed, expired, of the wrong kind or not from the expected CA."""


class CertNotValid(CertError):
    """A certificate is outside its validity dates (expired or not yet valid)."""


def check_validity(
    cert: x509.Certificate, now: dt.datetime | None = None, what: str = "certificate"
) -> None:
    """Refuse (CertNotValid) ``cert`` unless ``now`` is within not-before .. not-after."""
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        raise CertNotValid(
            f"{what} {cert.subject.rfc4514_string()} is not valid before"
            f" {cert.not_valid_before_utc:%F %T}Z (now {now:%F %T}Z)"
        )
    if now > cert.not_valid_after_utc:
        raise CertNotValid(
            f"{what} {cert.subject.rfc4514_string()} expired at"
            f" {cert.not_valid_after_utc:%F %T}Z (now {now:%F %T}Z)"
        )


@dataclass(frozen=True)
class Identity:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def sha256(self) -> str:
        return cert_sha256(self.cert)

    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def generate_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def cert_sha256(cert: x509.Certificate) -> str:
    """The hex sha256 of the DER certificate: how envelopes name their signer."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Outpost"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(common_name: str, days: int = 3650) -> Identity:
    """A self-signed CA (the controller root, or an onboarding CA)."""
    key = generate_key()
    cert = (
        _builder(common_name, _name(common_name), key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Identity(cert, key)


def issue_cert(
    issuer: Identity,
    common_name: str,
    *,
    usage: x509.ObjectIdentifier,
    hosts: Sequence[str] = (),
    days: int = 825,
    key: PrivateKey | None = None,
) -> Identity:
    """A leaf cert under ``issuer`` with one extended key usage (and SANs for servers)."""
    key = key or generate_key()
    builder = (
        _builder(common_name, issuer.cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=usage == ExtendedKeyUsageOID.SERVER_AUTH,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
    return Identity(builder.sign(issuer.key, hashes.SHA256()), key)


def _sans(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_device_cert(serial: str, key: PrivateKey | None = None, days: int = 7300) -> Identity:
    """The device's own self-signed certificate over its device key (EVE's model)."""
    key = key or generate_key()
    cert = (
        _builder(f"device {serial}", _name(f"device {serial}"), key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(cert, key)


def verify_chain(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    usage: x509.ObjectIdentifier | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Check ``cert`` was signed by ``issuer`` (a CA), both are in date, and the usage fits.

    Raises :class:`CertError` saying which check failed.
    """
    now = now or dt.datetime.now(dt.UTC)
    check_validity(cert, now, "certificate")
    check_validity(issuer, now, "issuer")
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise CertError("issuer is not a CA (no basic constraints)") from exc
    if not constraints.ca:
        raise CertError(f"issuer {issuer.subject.rfc4514_string()} is not a CA")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertError(
            f"{cert.subject.rfc4514_string()} was not issued by {issuer.subject.rfc4514_string()}"
        ) from exc
    if usage is not None:
        try:
            ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound as exc:
            raise CertError("certificate has no extended key usage") from exc
        if usage not in ekus:
            raise CertError(f"certificate is not for {usage._name}")


def verify_self_signed(cert: x509.Certificate) -> None:
    """Check a device certificate's self-signature (proves the device holds its key)."""
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertError("device certificate is not validly self-signed") from exc


def load_cert(data: bytes | str) -> x509.Certificate:
    if isinstance(data, str):
        data = data.encode()
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate: {exc}") from exc


def save_identity(identity: Identity, cert_path: Path, key_path: Path) -> None:
    """Write cert (0644) and key (0600) atomically."""
    key_pem = identity.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, identity.cert_pem().encode(), mode=0o644)


def load_identity(cert_path: Path, key_path: Path) -> Identity:
    cert = load_cert(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path}: not an EC private key")
    return Identity(cert, key)
