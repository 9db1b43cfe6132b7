"""EK certificates: is this TPM's endorsement key certified by a TPM maker we trust?

The controller's side. An EK certificate (TCG EK Credential Profile for TPM 2.0) is an
X.509 certificate the TPM maker put in the TPM's NV at manufacture; it certifies the
EK's public key, so a credential encrypted to that key can only be read by that TPM.

    bundle = EkCaBundle.load(Path("/etc/outpost/tpm-ca"))   # PEM file or directory
    ek = verify_ek_certificate(der, bundle)                 # EkCertError if not trusted
    ek.fingerprint, ek.public_key, ek.manufacturer

Trust: every certificate in the bundle is a trust anchor (put the makers' root AND
intermediate CAs there, as their EK certs are issued by intermediates). The EK
certificate must be issued directly by a CA certificate of the bundle (signature,
basic constraints CA, keyCertSign when a key usage is present, both in date).

Profile checks (what makes it an EK certificate, as TPM makers and swtpm make them):
not a CA; key usage keyEncipherment (RSA EK) or keyAgreement (ECC EK); if an extended
key usage is present it holds tcg-kp-EKCertificate (2.23.133.8.1); a subject alternative
name with the TCG TPM manufacturer attribute (2.23.133.2.1); an RSA (>= 2048 bits) or
NIST P-256/P-384/P-521 key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestation.pki import CertError, check_validity

__all__ = [
    "EK_CERTIFICATE_EKU",
    "EkCaBundle",
    "EkCertError",
    "EkCertificate",
    "ek_fingerprint",
    "trim_der",
    "verify_ek_certificate",
]

EK_CERTIFICATE_EKU = x509.ObjectIdentifier("2.23.133.8.1")
TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
TPM_MODEL = x509.ObjectIdentifier("2.23.133.2.2")
TPM_VERSION = x509.ObjectIdentifier("2.23.133.2.3")
MAX_EK_CERT_BYTES = 4096
MAX_BUNDLE_CERTS = 1024
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class EkCertError(Exception):
    """The EK certificate is malformed, not an EK certificate, or not from a trusted CA."""


@dataclass(frozen=True)
class EkCertificate:
    """A verified EK certificate."""

    cert: x509.Certificate
    der: bytes
    fingerprint: str
    """hex sha256 of the DER certificate: what an operator pins in a claim."""
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    issuer: x509.Certificate
    manufacturer: str
    model: str
    version: str


def ek_fingerprint(der: bytes) -> str:
    """The EK certificate's fingerprint (hex sha256 of its DER bytes, trimmed)."""
    return hashlib.sha256(trim_der(der)).hexdigest()


def trim_der(data: bytes) -> bytes:
    """A DER certificate without the padding some TPMs leave after it in NV."""
    if len(data) < 4 or data[0] != 0x30:
        return data
    first = data[1]
    if first < 0x80:
        return data[: 2 + first]
    count = first & 0x7F
    if not 1 <= count <= 3 or len(data) < 2 + count:
        return data
    return data[: 2 + count + int.from_bytes(data[2 : 2 + count], "big")]


def _load_many(data: bytes, where: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(trim_der(data))]
    except ValueError as exc:
        raise EkCertError(f"{where}: not a certificate file: {exc}") from exc


class EkCaBundle:
    """The TPM-maker CA certificates the operator trusts (every one is a trust anchor)."""

    def __init__(self, certs: Iterable[x509.Certificate]) -> None:
        self.certs = list(certs)
        if len(self.certs) > MAX_BUNDLE_CERTS:
            raise EkCertError(f"more than {MAX_BUNDLE_CERTS} certificates in the EK CA bundle")
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in self.certs:
            self._by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)

    @classmethod
    def load(cls, path: Path) -> EkCaBundle:
        """A PEM file (any number of certificates) or a directory of PEM/DER files
        (``*.pem``, ``*.crt``, ``*.cer``, ``*.der``)."""
        path = Path(path)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.suffix in (".pem", ".crt", ".cer", ".der")
            )
        elif path.is_file():
            files = [path]
        else:
            raise EkCertError(f"EK CA bundle {path} does not exist")
        certs = [c for f in files for c in _load_many(f.read_bytes(), str(f))]
        if not certs:
            raise EkCertError(f"EK CA bundle {path} holds no certificate")
        return cls(certs)

    @classmethod
    def from_pem(cls, data: bytes) -> EkCaBundle:
        return cls(_load_many(data, "EK CA bundle"))

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        return self._by_subject.get(cert.issuer.public_bytes(), [])

    def __len__(self) -> int:
        return len(self.certs)


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise EkCertError(f"the EK certificate has a malformed extension: {exc}") from exc


def _tpm_attributes(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    attrs: dict[x509.ObjectIdentifier, str] = {}
    if isinstance(san, x509.SubjectAlternativeName):
        for name in san.get_values_for_type(x509.DirectoryName):
            for attr in name:
                value = attr.value
                attrs[attr.oid] = value if isinstance(value, str) else value.hex()
    return attrs


def _check_profile(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, str]:
    """Refuse a certificate that is not an EK certificate; return its TPM attributes."""
    constraints = _extension(cert, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise EkCertError("the EK certificate is a CA certificate")
    key = cert.public_key()
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise EkCertError(f"the EK is an RSA key of {key.key_size} bits (< 2048)")
        if not isinstance(usage, x509.KeyUsage) or not usage.key_encipherment:
            raise EkCertError("an RSA EK certificate must allow keyEncipherment")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise EkCertError(f"the EK's curve {key.curve.name} is not NIST P-256/384/521")
        if not isinstance(usage, x509.KeyUsage) or not usage.key_agreement:
            raise EkCertError("an ECC EK certificate must allow keyAgreement")
    else:
        raise EkCertError("the EK is neither an RSA nor an ECC key")
    ekus = _extension(cert, x509.ExtendedKeyUsage)
    if isinstance(ekus, x509.ExtendedKeyUsage) and EK_CERTIFICATE_EKU not in ekus:
        raise EkCertError("the certificate's extended key usage is not tcg-kp-EKCertificate")
    attrs = _tpm_attributes(cert)
    if TPM_MANUFACTURER not in attrs:
        raise EkCertError("the certificate names no TPM manufacturer (TCG subjectAltName)")
    return attrs


def _issued_by(cert: x509.Certificate, ca: x509.Certificate, now: dt.datetime) -> str | None:
    """None when ``ca`` is a valid CA that signed ``cert``; else why not."""
    constraints = _extension(ca, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        return f"{ca.subject.rfc4514_string()} is not a CA"
    usage = _extension(ca, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        return f"{ca.subject.rfc4514_string()} may not sign certificates"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return f"the signature does not verify under {ca.subject.rfc4514_string()}"
    try:
        check_validity(ca, now, "EK issuer")
    except CertError as exc:
        return str(exc)
    return None


def verify_ek_certificate(
    data: bytes, bundle: EkCaBundle, *, now: dt.datetime | None = None
) -> EkCertificate:
    """Check ``data`` (DER, NV padding allowed) is an EK certificate issued by a CA of
    ``bundle`` and in date; raise :class:`EkCertError` saying which check failed."""
    der = trim_der(data)
    if len(der) > MAX_EK_CERT_BYTES:
        raise EkCertError(f"EK certificate larger than {MAX_EK_CERT_BYTES} bytes")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise EkCertError(f"not a DER certificate: {exc}") from exc
    attrs = _check_profile(cert)
    now = now or dt.datetime.now(dt.UTC)
    try:
        check_validity(cert, now, "EK certificate")
    except CertError as exc:
        raise EkCertError(str(exc)) from exc
    candidates = bundle.issuers_of(cert)
    if not candidates:
        raise EkCertError(
            f"the EK certificate's issuer {cert.issuer.rfc4514_string()} is not in the EK CA bundle"
        )
    reasons = []
    for ca in candidates:
        reason = _issued_by(cert, ca, now)
        if reason is None:
            return EkCertificate(
                cert=cert,
                der=der,
                fingerprint=hashlib.sha256(der).hexdigest(),
                public_key=cert.public_key(),  # type: ignore[arg-type]
                issuer=ca,
                manufacturer=attrs.get(TPM_MANUFACTURER, ""),
                model=attrs.get(TPM_MODEL, ""),
                version=attrs.get(TPM_VERSION, ""),
            )
        reasons.append(reason)
    raise EkCertError("the EK certificate is not trusted: " + "; ".join(reasons))


def same_public_key(a: object, b: object) -> bool:
    """Do two ``cryptography`` public keys hold the same key?"""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        return bool(a.public_bytes(der, fmt) == b.public_bytes(der, fmt))  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False
