"""The controller's PKI on disk: created once by ``init``, loaded by ``serve``.

Layout of ``<data_dir>/pki``: ``root-ca``, ``tls``, ``signing``, ``onboarding-ca``
(each ``.pem`` + ``.key``, keys 0600); rotated-out signing identities as
``signing-<sha16>.pem/.key`` until their grace period ends.  Onboarding bundles are
issued from here.

:class:`LivePki` is what a running process holds: it notices (within a second) when
``signing.pem`` was replaced — a ``rotate-signing`` handled by another replica sharing
the data dir — and loads the new identity, so every replica signs with the current key
without a restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import pki
from attestation.files import atomic_write

__all__ = [
    "ControllerPki",
    "LivePki",
    "create_pki",
    "load_pki",
    "retired_key_paths",
    "write_onboarding_bundle",
]

log = logging.getLogger(__name__)

_NAMES = ("root-ca", "tls", "signing", "onboarding-ca")


@dataclass(frozen=True)
class ControllerPki:
    root: pki.Identity
    tls: pki.Identity
    signing: pki.Identity
    onboarding_ca: pki.Identity


def _paths(pki_dir: Path, name: str) -> tuple[Path, Path]:
    return pki_dir / f"{name}.pem", pki_dir / f"{name}.key"


def create_pki(pki_dir: Path, tls_hosts: tuple[str, ...]) -> ControllerPki:
    """Create every CA and cert; refuses to overwrite an existing PKI."""
    if (pki_dir / "root-ca.pem").exists():
        raise FileExistsError(f"{pki_dir} already holds a PKI; refusing to replace it")
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    root = pki.make_ca("Outpost controller root CA")
    made = ControllerPki(
        root=root,
        tls=pki.issue_cert(
            root, "Outpost controller", usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=tls_hosts
        ),
        signing=pki.issue_cert(
            root, "Outpost config signing", usage=ExtendedKeyUsageOID.CODE_SIGNING
        ),
        onboarding_ca=pki.make_ca("Outpost onboarding CA"),
    )
    for name, identity in zip(
        _NAMES, (made.root, made.tls, made.signing, made.onboarding_ca), strict=True
    ):
        pki.save_identity(identity, *_paths(pki_dir, name))
    return made


def load_pki(pki_dir: Path) -> ControllerPki:
    if not (pki_dir / "root-ca.pem").exists():
        raise FileNotFoundError(f"no PKI in {pki_dir}: run `outpost-controller init` first")
    loaded = [pki.load_identity(*_paths(pki_dir, n)) for n in _NAMES]
    return ControllerPki(*loaded)


def retired_key_paths(pki_dir: Path, sha256: str) -> tuple[Path, Path]:
    """Where a rotated-out signing identity is kept until its grace period ends."""
    return _paths(pki_dir, f"signing-{sha256[:16]}")


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


class LivePki:
    """The PKI a process signs with, reloaded when ``signing.pem`` changes on disk.

    ``current()`` costs one ``stat`` at most once per ``check_s``; a signing cert whose
    key file does not (yet) match — a rotation half written — is not taken until it does.
    """

    def __init__(self, pki_dir: Path, loaded: ControllerPki, check_s: float = 1.0) -> None:
        self.pki_dir = pki_dir
        self.check_s = check_s
        self._pki = loaded
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._stamp = self._signing_stamp()

    def _signing_stamp(self) -> tuple[int, int, int] | None:
        try:
            return _stamp(self.pki_dir / "signing.pem")
        except OSError:
            return None

    def current(self) -> ControllerPki:
        now = time.monotonic()
        if now - self._checked < self.check_s:
            return self._pki
        with self._lock:
            self._checked = now
            stamp = self._signing_stamp()
            if stamp is not None and stamp != self._stamp:
                self._reload(stamp)
            return self._pki

    def reload(self) -> ControllerPki:
        """Read the signing identity now (after this process rotated it)."""
        with self._lock:
            stamp = self._signing_stamp()
            if stamp is not None:
                self._reload(stamp)
            self._checked = time.monotonic()
            return self._pki

    def _reload(self, stamp: tuple[int, int, int]) -> None:
        try:
            signing = pki.load_identity(*_paths(self.pki_dir, "signing"))
        except (OSError, ValueError, pki.CertError) as exc:
            log.warning("signing identity changed but cannot be read yet: %s", exc)
            return
        if not _key_matches(signing):
            return  # the key and the cert of a rotation are written one after the other
        if signing.sha256 != self._pki.signing.sha256:
            log.info("config-signing cert is now %s…", signing.sha256[:16])
        self._pki = replace(self._pki, signing=signing)
        self._stamp = stamp


def _key_matches(identity: pki.Identity) -> bool:
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(
        identity.key.public_key().public_bytes(der, spki)
        == identity.cert.public_key().public_bytes(der, spki)
    )


def write_onboarding_bundle(
    controller_pki: ControllerPki,
    out_dir: Path,
    controller_url: str,
    batch: str,
    labels: dict[str, str] | None = None,
) -> x509.Certificate:
    """Issue an onboarding cert for a batch of nodes and write what a node image needs;
    returns the issued cert (record it: :func:`controller.domain.batches.issue_bundle`).

    The bundle holds: ``controller.json`` (URL; ``labels`` the nodes report about
    themselves, e.g. their site), ``root-ca.pem`` (to pin), ``onboarding.pem`` and
    ``onboarding.key`` (0600).
    """
    onboarding = pki.issue_cert(
        controller_pki.onboarding_ca,
        f"onboarding {batch}",
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        days=3650,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(0o700)
    pki.save_identity(onboarding, out_dir / "onboarding.pem", out_dir / "onboarding.key")
    atomic_write(out_dir / "root-ca.pem", controller_pki.root.cert_pem().encode())
    atomic_write(
        out_dir / "controller.json",
        json.dumps(
            {"url": controller_url, "batch": batch, **({"labels": labels} if labels else {})},
            indent=2,
        ).encode(),
    )
    return onboarding.cert
