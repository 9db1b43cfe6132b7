"""The node's certified EK: its certificate from NV, the EK itself, TPM2_ActivateCredential.

Used by :class:`attestation.tpm.Tpm` (under its lock, on its ESAPI context).

EK certificate: the first of the TCG EK Credential Profile's NV indices that holds one,
ECC first (cheaper to recreate)::

    EK-ECC256       0x01c0000a   low range, NIST P-256, policy A (PolicySecret endorsement)
    EK-HIGH-ECC256  0x01c00014
    EK-HIGH-ECC384  0x01c00016   swtpm 0.7's ECC EK
    EK-RSA2048      0x01c00002   low range, policy A
    EK-HIGH-RSA2048 0x01c00012

The EK whose key the certificate holds: a persistent object in the endorsement range
(0x81010000-0x8101ffff; swtpm_setup persists its EKs at 0x81010001/0x81010016) with
that public key, else recreated from the profile's template (CreatePrimary under the
endorsement hierarchy; same seed and template give the same key) and flushed after use.

ActivateCredential authorises the AK (ADMIN role) by its empty password and the EK (USER
role) by its default policy: a PolicySecret session on the endorsement hierarchy, or the
empty password for the high-range templates, which set userWithAuth.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from attestation.credential import CredentialError, tpm_public_key
from attestation.ek_cert import same_public_key, trim_der

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tpm2_pytss import (
        ESAPI,
        ESYS_TR,
        TPM2_ALG,
        TPM2_CAP,
        TPM2_SE,
        TPM2B_ENCRYPTED_SECRET,
        TPM2B_ID_OBJECT,
        TPM2B_PUBLIC,
        TPMA_OBJECT,
        TPMT_SYM_DEF,
        TSS2_Exception,
    )
    from tpm2_pytss.utils import NoSuchIndex, NVReadEK, create_ek_template

__all__ = ["EK_TYPES", "CertifiedEk", "EndorsementError", "activate", "find_certified_ek"]

EK_TYPES = ("EK-ECC256", "EK-HIGH-ECC256", "EK-HIGH-ECC384", "EK-RSA2048", "EK-HIGH-RSA2048")
_NV_FIRST, _NV_COUNT = 0x01C00000, 0x100
_EK_RANGE = range(0x81010000, 0x81020000)


class EndorsementError(Exception):
    """The EK certificate or EK cannot be read or used (the message says which)."""


@dataclass(frozen=True)
class CertifiedEk:
    """The EK certificate found in NV and the template its EK is made from."""

    ek_type: str
    cert_der: bytes
    template: Any
    """TPM2B_PUBLIC (the profile's template, or the TPM's own from NV)."""
    persistent: int | None
    """Handle of a persistent EK holding the certificate's key, if there is one."""
    public: bytes
    """The EK's marshalled TPM2B_PUBLIC."""


def _handles(ctx: ESAPI, first: int, count: int) -> list[int]:
    _more, data = ctx.get_capability(TPM2_CAP.HANDLES, first, count)
    return [int(h) for h in data.data.handles]


class _NvReader:
    """NV reads for ``create_ek_template``; missing indices are known beforehand (listed),
    so the TSS never logs an error for an absent certificate."""

    def __init__(self, ctx: ESAPI) -> None:
        self._present = set(_handles(ctx, _NV_FIRST, _NV_COUNT))
        self._read = NVReadEK(ctx)

    def __call__(self, index: Any) -> bytes:
        if int(index) not in self._present:
            raise NoSuchIndex(index)
        return bytes(self._read(index))


def _matches(area: Any, key: Any) -> bool:
    attrs = area.objectAttributes
    if not (attrs & TPMA_OBJECT.RESTRICTED and attrs & TPMA_OBJECT.DECRYPT):
        return False
    try:
        return same_public_key(tpm_public_key(area), key)
    except CredentialError:
        return False


def _persistent_ek(ctx: ESAPI, key: Any) -> tuple[int, bytes] | None:
    for handle in _handles(ctx, _EK_RANGE.start, 256):
        if handle not in _EK_RANGE:
            break
        # not tr_close'd: ESAPI hands out one ESYS_TR per handle, and the caller (Tpm)
        # keeps using those of its own keys
        public = ctx.read_public(ctx.tr_from_tpmpublic(handle))[0]
        if _matches(public.publicArea, key):
            return handle, bytes(public.marshal())
    return None


def find_certified_ek(ctx: ESAPI, ek_types: tuple[str, ...] = EK_TYPES) -> CertifiedEk | None:
    """The TPM's EK certificate and how to get its EK (the first of ``ek_types`` with a
    certificate); None when the TPM has no EK certificate."""
    try:
        reader = _NvReader(ctx)
        for ek_type in ek_types:
            try:
                cert, template = create_ek_template(ek_type, reader)
            except ValueError:  # a high-range type without its certificate
                continue
            if not cert:
                continue
            der = trim_der(bytes(cert))
            try:
                key = x509.load_der_x509_certificate(der).public_key()
            except ValueError as exc:
                raise EndorsementError(
                    f"the {ek_type} certificate in NV is unreadable: {exc}"
                ) from exc
            found = _persistent_ek(ctx, key)
            if found is not None:
                return CertifiedEk(ek_type, der, template, found[0], found[1])
            with _primary(ctx, template) as (_tr, public):
                if not _matches(public.publicArea, key):
                    raise EndorsementError(
                        f"the {ek_type} EK made from its template does not hold the"
                        " certificate's key"
                    )
                return CertifiedEk(ek_type, der, template, None, bytes(public.marshal()))
    except TSS2_Exception as exc:
        raise EndorsementError(f"cannot read the EK certificate: {exc}") from exc
    return None


@contextmanager
def _primary(ctx: ESAPI, template: TPM2B_PUBLIC) -> Iterator[tuple[ESYS_TR, Any]]:
    handle, public, *_ = ctx.create_primary(None, template, ESYS_TR.ENDORSEMENT)
    try:
        yield handle, public
    finally:
        ctx.flush_context(handle)


@contextmanager
def _ek_handle(ctx: ESAPI, ek: CertifiedEk) -> Iterator[ESYS_TR]:
    if ek.persistent is not None:
        yield ctx.tr_from_tpmpublic(ek.persistent)
    else:
        with _primary(ctx, ek.template) as (tr, _public):
            yield tr


@contextmanager
def _ek_auth(ctx: ESAPI, area: Any) -> Iterator[ESYS_TR]:
    """The EK's USER-role authorisation: its password, or its PolicySecret policy."""
    if area.objectAttributes & TPMA_OBJECT.USERWITHAUTH:
        yield ESYS_TR.PASSWORD
        return
    session = ctx.start_auth_session(
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        TPM2_SE.POLICY,
        TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
        area.nameAlg,
    )
    try:
        ctx.policy_secret(ESYS_TR.RH_ENDORSEMENT, session, b"", b"", b"", 0)
        yield session
    finally:
        ctx.flush_context(session)


def _unmarshal(cls: Any, data: bytes, what: str) -> Any:
    try:
        value, used = cls.unmarshal(data)
    except Exception as exc:
        raise EndorsementError(f"the {what} is not a valid TPM structure: {exc}") from exc
    if used != len(data):
        raise EndorsementError(f"the {what} has trailing bytes")
    return value


def activate(
    ctx: ESAPI, ak: ESYS_TR, ek: CertifiedEk, id_object: bytes, encrypted_secret: bytes
) -> bytes:
    """TPM2_ActivateCredential of ``ak`` under the certified EK: the recovered secret."""
    blob = _unmarshal(TPM2B_ID_OBJECT, id_object, "credential blob")
    secret = _unmarshal(TPM2B_ENCRYPTED_SECRET, encrypted_secret, "encrypted secret")
    area = TPM2B_PUBLIC.unmarshal(ek.public)[0].publicArea
    try:
        with _ek_handle(ctx, ek) as ek_tr, _ek_auth(ctx, area) as ek_auth:
            out = ctx.activate_credential(
                ak, ek_tr, blob, secret, session1=ESYS_TR.PASSWORD, session2=ek_auth
            )
    except TSS2_Exception as exc:
        raise EndorsementError(f"credential activation failed: {exc}") from exc
    return bytes(out)
