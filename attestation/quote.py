"""Checking TPM evidence: AK publics, quotes and certifications (the controller's side).

TPM structures are parsed with tpm2-pytss (unmarshal only, no TPM needed) and every
signature is checked with ``cryptography``.  Errors carry EVE's result names::

    QuoteError(result, message)
      ├── QuoteFailed      QUOTE_FAILED    bad structure, signature, PCR digest, key kind
      └── NonceMismatch    NONCE_MISMATCH  signed, but over another nonce
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attestation.measurement import pcr_digest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tpm2_pytss import (
        TPM2_ALG,
        TPM2_ECC,
        TPM2_ST,
        TPM2B_PUBLIC,
        TPMA_OBJECT,
        TPMS_ATTEST,
        TPMT_SIGNATURE,
    )
    from tpm2_pytss.constants import TPM2_GENERATED

__all__ = [
    "NonceMismatch",
    "QuoteError",
    "QuoteFailed",
    "QuoteInfo",
    "TpmPublic",
    "check_ak_public",
    "check_ek_public",
    "load_public",
    "verify_certify",
    "verify_quote",
]

_REQUIRED_KEY_ATTRS = (
    TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
)


class QuoteError(Exception):
    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


class QuoteFailed(QuoteError):
    def __init__(self, message: str) -> None:
        super().__init__("QUOTE_FAILED", message)


class NonceMismatch(QuoteError):
    def __init__(self, message: str) -> None:
        super().__init__("NONCE_MISMATCH", message)


@dataclass(frozen=True)
class TpmPublic:
    """A parsed TPM2B_PUBLIC of an ECC P-256 signing key."""

    raw: bytes
    name: bytes
    """The TPM name: nameAlg (2 bytes) || digest of the public area."""
    key: ec.EllipticCurvePublicKey
    restricted: bool
    attributes: int

    @property
    def name_hex(self) -> str:
        return self.name.hex()


@dataclass(frozen=True)
class QuoteInfo:
    """What a verified quote says besides the PCR digest."""

    pcrs: tuple[int, ...]
    reset_count: int
    restart_count: int
    firmware_version: int


def _unmarshal(cls: Any, data: bytes, what: str) -> Any:
    try:
        obj, used = cls.unmarshal(data)
    except Exception as exc:  # the TSS raises its own errors for truncated input
        raise QuoteFailed(f"{what} is not a valid TPM structure: {exc}") from exc
    if used != len(data):
        raise QuoteFailed(f"{what} has {len(data) - used} trailing bytes")
    return obj


def load_public(data: bytes, what: str = "key") -> TpmPublic:
    """Parse a TPM2B_PUBLIC and check it is a TPM-bound ECC P-256 signing key."""
    pub = _unmarshal(TPM2B_PUBLIC, data, what)
    area = pub.publicArea
    if area.type != TPM2_ALG.ECC or area.parameters.eccDetail.curveID != TPM2_ECC.NIST_P256:
        raise QuoteFailed(f"{what} is not an ECC P-256 key")
    attrs = area.objectAttributes
    if attrs & _REQUIRED_KEY_ATTRS != _REQUIRED_KEY_ATTRS:
        raise QuoteFailed(f"{what} is not a TPM-generated, non-exportable signing key ({attrs})")
    if attrs & TPMA_OBJECT.DECRYPT:
        raise QuoteFailed(f"{what} is also a decryption key")
    try:
        x = int.from_bytes(bytes(area.unique.ecc.x), "big")
        y = int.from_bytes(bytes(area.unique.ecc.y), "big")
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise QuoteFailed(f"{what} is not a point on P-256: {exc}") from exc
    return TpmPublic(
        raw=data,
        name=bytes(pub.get_name()),
        key=key,
        restricted=bool(attrs & TPMA_OBJECT.RESTRICTED),
        attributes=int(attrs),
    )


def check_ak_public(data: bytes) -> TpmPublic:
    """The AK's TPM2B_PUBLIC, checked from the TPM-made structure (not self-declared):
    ECC P-256 with a SHA-256 name, fixedTPM, fixedParent, sensitiveDataOrigin,
    restricted, sign, not decrypt. Its name (what credential activation binds) is
    computed from these bytes, so the attributes cannot differ from the activated key's."""
    ak = load_public(data, "AK")
    if not ak.restricted:
        raise QuoteFailed("the AK is not a restricted signing key: it could sign anything")
    if ak.name[:2] != int(TPM2_ALG.SHA256).to_bytes(2, "big"):
        raise QuoteFailed("the AK's name algorithm is not SHA-256")
    return ak


def check_ek_public(data: bytes) -> None:
    """Check an EK's TPM2B_PUBLIC parses and is a TPM-bound restricted decryption key."""
    area = _unmarshal(TPM2B_PUBLIC, data, "EK").publicArea
    wanted = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
    if area.objectAttributes & wanted != wanted:
        raise QuoteFailed(
            f"the EK is not a restricted TPM decryption key ({area.objectAttributes})"
        )


def _verified_attest(attest: bytes, signature: bytes, signer: TpmPublic, what: str) -> Any:
    """Check ``signature`` (TPMT_SIGNATURE) over ``attest`` and parse it as TPMS_ATTEST."""
    sig = _unmarshal(TPMT_SIGNATURE, signature, f"{what} signature")
    if sig.sigAlg != TPM2_ALG.ECDSA or sig.signature.ecdsa.hash != TPM2_ALG.SHA256:
        raise QuoteFailed(f"{what} signature is not ECDSA with SHA-256")
    r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
    try:
        signer.key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise QuoteFailed(f"{what} signature does not verify under the AK") from exc
    info = _unmarshal(TPMS_ATTEST, attest, what)
    if info.magic != TPM2_GENERATED.VALUE:
        raise QuoteFailed(f"{what} was not generated by a TPM (magic {int(info.magic):#x})")
    return info


def verify_quote(
    attest: bytes,
    signature: bytes,
    ak: TpmPublic,
    nonce: bytes,
    pcrs: dict[int, bytes],
) -> QuoteInfo:
    """Check a quote: AK signature, TPM origin, nonce, and that ``pcrs`` are what it covers.

    ``pcrs`` are the sha256 values the node reported; the quote's pcrDigest must equal
    their digest in the quote's selection order, and the selection must be exactly them.
    """
    if not ak.restricted:
        raise QuoteFailed("the attestation key is not restricted: it could sign anything")
    info = _verified_attest(attest, signature, ak, "quote")
    if info.type != TPM2_ST.ATTEST_QUOTE:
        raise QuoteFailed(f"the attestation is a {info.type}, not a quote")
    if bytes(info.extraData) != nonce:
        raise NonceMismatch("the quote was made over another nonce (replayed or stale quote)")
    selected: list[int] = []
    for sel in info.attested.quote.pcrSelect:
        if sel.hash != TPM2_ALG.SHA256:
            raise QuoteFailed("the quote covers a PCR bank other than sha256")
        bitmap = bytes(sel.pcrSelect)[: sel.sizeofSelect]
        selected += [i * 8 + b for i, byte in enumerate(bitmap) for b in range(8) if byte >> b & 1]
    if sorted(selected) != sorted(pcrs):
        raise QuoteFailed(f"the quote covers PCRs {selected}, the report lists {sorted(pcrs)}")
    if bytes(info.attested.quote.pcrDigest) != pcr_digest(pcrs[i] for i in selected):
        raise QuoteFailed("the reported PCR values do not match the quoted PCR digest")
    return QuoteInfo(
        pcrs=tuple(selected),
        reset_count=int(info.clockInfo.resetCount),
        restart_count=int(info.clockInfo.restartCount),
        firmware_version=int(info.firmwareVersion),
    )


def verify_certify(
    attest: bytes, signature: bytes, ak: TpmPublic, nonce: bytes, certified: TpmPublic
) -> None:
    """Check a TPM2_Certify by ``ak`` over ``nonce`` names the ``certified`` key."""
    info = _verified_attest(attest, signature, ak, "certification")
    if info.type != TPM2_ST.ATTEST_CERTIFY:
        raise QuoteFailed(f"the certification is a {info.type}, not a certify")
    if bytes(info.extraData) != nonce:
        raise NonceMismatch("the certification was made over another nonce")
    if bytes(info.attested.certify.name) != certified.name:
        raise QuoteFailed("the certification names another key than the one presented")
