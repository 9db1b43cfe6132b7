"""TPM 2.0 access through tpm2-pytss: keys, PCRs, quotes (a real TPM or swtpm).

Which TPM is used comes from the agent's ``tpm`` setting (``attestation.tpm_setting``).
Three primary keys live under the endorsement hierarchy and are persisted so they
are found again after an agent or node restart:

    EK          0x81010002   TCG default ECC P-256 endorsement key (public part read)
    AK          0x81010010   restricted ECDSA-P256-SHA256 signing key: quotes, certify
    device key  0x81010011   unrestricted ECDSA-P256-SHA256 key: the node's identity

The device key is exposed as a ``cryptography`` EC private key whose ``sign`` runs in
the TPM, so certificates and envelopes are signed by it with the ordinary code.

The EK above is Outpost's own (no certificate names it). Enrolment uses the TPM maker's
*certified* EK instead (:mod:`attestation.tpm_endorsement`): :meth:`Tpm.ek_certificate`,
:meth:`Tpm.certified_ek_public` and :meth:`Tpm.activate_credential`, which proves to the
controller that the AK lives in the TPM that certificate names.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

with warnings.catch_warnings():  # tpm2-pytss imports ciphers cryptography calls decrepit
    warnings.simplefilter("ignore")
    from tpm2_pytss import (
        ESAPI,
        ESYS_TR,
        TPM2_ALG,
        TPM2_CAP,
        TPM2B_PUBLIC,
        TPMA_OBJECT,
        TPML_DIGEST_VALUES,
        TPMT_HA,
        TPMT_SIG_SCHEME,
        TSS2_Exception,
    )
    from tpm2_pytss.cryptography import tpm_ecc_private_key
    from tpm2_pytss.utils import NoSuchIndex, create_ek_template

from attestation.tpm_endorsement import (
    EK_TYPES,
    CertifiedEk,
    EndorsementError,
    activate,
    find_certified_ek,
)
from attestation.tpm_setting import TpmSetting, parse_tpm_setting

__all__ = [
    "AK_HANDLE",
    "DEVICE_KEY_HANDLE",
    "EK_HANDLE",
    "Tpm",
    "TpmError",
    "TpmEvidence",
    "TpmSetting",
    "TpmSigningKey",
    "parse_tpm_setting",
]

EK_HANDLE = 0x81010002
AK_HANDLE = 0x81010010
DEVICE_KEY_HANDLE = 0x81010011

_KEY_ATTRS = (
    TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)
AK_ATTRS = _KEY_ATTRS | TPMA_OBJECT.RESTRICTED
DEVICE_KEY_ATTRS = _KEY_ATTRS


class TpmError(Exception):
    """The TPM cannot be reached or refused an operation (the message says which)."""


F = TypeVar("F", bound=Callable[..., Any])


def _locked(fn: F) -> F:
    """One TPM command at a time: an ESAPI context is not thread-safe."""

    @functools.wraps(fn)
    def inner(self: Tpm, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return inner  # type: ignore[return-value]


class TpmSigningKey(tpm_ecc_private_key):  # type: ignore[misc]  # tpm2-pytss: untyped
    """The TPM-resident device key as a ``cryptography`` EC private key (sign only)."""

    lock: threading.RLock | None = None

    def sign(self, data: bytes, signature_algorithm: Any) -> bytes:
        with self.lock or contextlib.nullcontext():
            return bytes(super().sign(data, signature_algorithm))

    def __copy__(self) -> TpmSigningKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TpmSigningKey:
        return self


@dataclass(frozen=True)
class TpmEvidence:
    """A quote and what it covers, as raw TPM structures (marshalled bytes)."""

    attest: bytes
    """TPMS_ATTEST (the bytes the AK signed)."""
    signature: bytes
    """TPMT_SIGNATURE, marshalled (tpm2-tools' "tss" format)."""
    pcrs: dict[int, bytes]
    """sha256 PCR values read right after the quote."""


def _ecdsa_sha256() -> TPMT_SIG_SCHEME:
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
    scheme.details.any.hashAlg = TPM2_ALG.SHA256
    return scheme


def _no_nv(index: int) -> bytes:
    raise NoSuchIndex(index)


def _ek_template() -> TPM2B_PUBLIC:
    _cert, template = create_ek_template("EK-ECC256", _no_nv)
    return template


def _template(kind: str) -> TPM2B_PUBLIC:
    if kind == "ak":
        return TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=AK_ATTRS)
    if kind == "device":
        return TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=DEVICE_KEY_ATTRS)
    return _ek_template()


class Tpm:
    """One open TPM context; its commands (and device-key signatures) are serialised."""

    def __init__(self, setting: TpmSetting, ek_types: tuple[str, ...] = EK_TYPES) -> None:
        """``ek_types``: which certified EKs to look for, in order of preference."""
        if setting.kind == "none":
            raise TpmError("no TPM configured")
        self.setting = setting
        self._lock = threading.RLock()
        try:
            self._ctx = ESAPI(setting.tcti)
        except (TSS2_Exception, OSError, ValueError) as exc:
            raise TpmError(f"cannot open TPM {setting.tcti}: {exc}") from exc
        self._handles: dict[int, ESYS_TR] = {}
        self._ek_types = ek_types
        self._certified: CertifiedEk | None = None
        self._certified_read = False

    @property
    def kind(self) -> str:
        return self.setting.kind

    @_locked
    def close(self) -> None:
        self._ctx.close()

    def __enter__(self) -> Tpm:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- keys --------------------------------------------------------------------------
    def _persistent(self, handle: int, kind: str) -> ESYS_TR:
        """Load the key at ``handle``; create it as a primary and persist it if absent."""
        if handle in self._handles:
            return self._handles[handle]
        try:
            tr = self._ctx.tr_from_tpmpublic(handle) if self._exists(handle) else None
            if tr is None:
                transient, _pub, *_ = self._ctx.create_primary(
                    None, _template(kind), ESYS_TR.ENDORSEMENT
                )
                try:
                    tr = self._ctx.evict_control(ESYS_TR.OWNER, transient, handle)
                finally:
                    self._ctx.flush_context(transient)
            public = self._ctx.read_public(tr)[0].publicArea
        except TSS2_Exception as exc:
            raise TpmError(f"cannot create or load the {kind} key at {handle:#x}: {exc}") from exc
        expected = _template(kind).publicArea
        if public.type != TPM2_ALG.ECC or public.objectAttributes != expected.objectAttributes:
            raise TpmError(
                f"handle {handle:#x} holds a key that is not Outpost's {kind} key"
                f" (attributes {public.objectAttributes}); clear it or use another TPM"
            )
        self._handles[handle] = tr
        return tr

    def _exists(self, handle: int) -> bool:
        """Is ``handle`` a persistent object in the TPM? (asked, not tried: no TSS noise)"""
        _more, data = self._ctx.get_capability(TPM2_CAP.HANDLES, handle, 1)
        return handle in [int(h) for h in data.data.handles]

    @_locked
    def ensure_keys(self) -> None:
        """Create or load EK, AK and device key (idempotent)."""
        self._persistent(EK_HANDLE, "ek")
        self._persistent(AK_HANDLE, "ak")
        self._persistent(DEVICE_KEY_HANDLE, "device")

    @_locked
    def public(self, which: str) -> bytes:
        """Marshalled TPM2B_PUBLIC of ``ek`` | ``ak`` | ``device``."""
        handle = {"ek": EK_HANDLE, "ak": AK_HANDLE, "device": DEVICE_KEY_HANDLE}[which]
        try:
            return bytes(self._ctx.read_public(self._persistent(handle, which))[0].marshal())
        except TSS2_Exception as exc:
            raise TpmError(f"cannot read the {which} public key: {exc}") from exc

    @_locked
    def device_key(self) -> TpmSigningKey:
        """The device key; signing with it runs in the TPM."""
        try:
            key = TpmSigningKey(self._ctx, self._persistent(DEVICE_KEY_HANDLE, "device"))
        except TSS2_Exception as exc:
            raise TpmError(f"cannot use the device key: {exc}") from exc
        key.lock = self._lock
        return key

    @_locked
    def ak_name(self) -> bytes:
        """The AK's TPM name (nameAlg || digest of its public area)."""
        try:
            return bytes(self._ctx.tr_get_name(self._persistent(AK_HANDLE, "ak")))
        except TSS2_Exception as exc:
            raise TpmError(f"cannot read the AK name: {exc}") from exc

    # -- the certified EK (enrolment) ------------------------------------------------
    @_locked
    def _certified_ek(self) -> CertifiedEk | None:
        if not self._certified_read:
            try:
                self._certified = find_certified_ek(self._ctx, self._ek_types)
            except EndorsementError as exc:
                raise TpmError(str(exc)) from exc
            self._certified_read = True
        return self._certified

    def ek_certificate(self) -> bytes | None:
        """The EK certificate (DER) the TPM maker stored in NV; None when there is none."""
        ek = self._certified_ek()
        return ek.cert_der if ek else None

    def certified_ek_public(self) -> bytes | None:
        """The marshalled TPM2B_PUBLIC of the EK the certificate names."""
        ek = self._certified_ek()
        return ek.public if ek else None

    @_locked
    def activate_credential(self, id_object: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential of the AK under the certified EK: the secret."""
        ek = self._certified_ek()
        if ek is None:
            raise TpmError("the TPM has no EK certificate: no credential can be activated")
        try:
            return activate(
                self._ctx, self._persistent(AK_HANDLE, "ak"), ek, id_object, encrypted_secret
            )
        except EndorsementError as exc:
            raise TpmError(str(exc)) from exc

    # -- PCRs and quotes ------------------------------------------------------------
    @_locked
    def extend(self, pcr: int, digest: bytes) -> None:
        """Extend sha256 PCR ``pcr`` with ``digest`` (32 bytes)."""
        value = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
        value.digest.sha256 = digest
        values = TPML_DIGEST_VALUES([value])
        try:
            self._ctx.pcr_extend(ESYS_TR(ESYS_TR.PCR0 + pcr), values)
        except TSS2_Exception as exc:
            raise TpmError(f"cannot extend PCR {pcr}: {exc}") from exc

    @_locked
    def read_pcrs(self, pcrs: list[int]) -> dict[int, bytes]:
        """sha256 PCR values (PCR_Read answers at most 8 per call, so it is asked in turns)."""
        out: dict[int, bytes] = {}
        wanted = sorted(set(pcrs))
        try:
            while len(out) < len(wanted):
                todo = [p for p in wanted if p not in out]
                _counter, sel, digests = self._ctx.pcr_read("sha256:" + ",".join(map(str, todo)))
                got = [p for s in sel for p in _selected(s)]
                if not got:
                    raise TpmError(f"the TPM returned no sha256 PCRs for {todo}")
                out.update(zip(got, (bytes(d) for d in digests), strict=True))
        except TSS2_Exception as exc:
            raise TpmError(f"cannot read PCRs {pcrs}: {exc}") from exc
        return out

    @_locked
    def quote(self, nonce: bytes, pcrs: list[int]) -> TpmEvidence:
        """A quote over sha256 ``pcrs`` with ``nonce`` as qualifying data, signed by the AK."""
        selection = "sha256:" + ",".join(map(str, sorted(pcrs)))
        try:
            attest, signature = self._ctx.quote(
                self._persistent(AK_HANDLE, "ak"), selection, nonce, _ecdsa_sha256()
            )
        except TSS2_Exception as exc:
            raise TpmError(f"quote failed: {exc}") from exc
        return TpmEvidence(bytes(attest), bytes(signature.marshal()), self.read_pcrs(pcrs))

    @_locked
    def certify_device_key(self, nonce: bytes) -> tuple[bytes, bytes]:
        """TPM2_Certify of the device key by the AK: proof it lives in this TPM."""
        try:
            attest, signature = self._ctx.certify(
                self._persistent(DEVICE_KEY_HANDLE, "device"),
                self._persistent(AK_HANDLE, "ak"),
                nonce,
                _ecdsa_sha256(),
            )
        except TSS2_Exception as exc:
            raise TpmError(f"certify failed: {exc}") from exc
        return bytes(attest), bytes(signature.marshal())

    @_locked
    def boot_id(self) -> str:
        """Changes whenever the TPM resets or restarts (so PCRs start over)."""
        try:
            info = self._ctx.read_clock().clockInfo
        except TSS2_Exception as exc:
            raise TpmError(f"cannot read the TPM clock: {exc}") from exc
        return f"{int(info.resetCount)}.{int(info.restartCount)}"


def _selected(selection: Any) -> list[int]:
    """PCR indices set in one TPMS_PCR_SELECTION bitmap, in ascending order."""
    bitmap = bytes(selection.pcrSelect)[: selection.sizeofSelect]
    return [i * 8 + b for i, byte in enumerate(bitmap) for b in range(8) if byte >> b & 1]
