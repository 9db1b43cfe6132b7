"""The controller's PKI on disk: created once by ``init``, loaded by ``serve``.

Layout of ``<data_dir>/pki``: ``root-ca``, ``tls``, ``signing``, ``onboarding-ca``
(each ``.pem`` + ``.key``, keys 0600).  Onboarding bundles are issued from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from attestation import pki
from attestation.files import atomic_write

__all__ = ["ControllerPki", "create_pki", "load_pki", "write_onboarding_bundle"]

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


def write_onboarding_bundle(
    controller_pki: ControllerPki,
    out_dir: Path,
    controller_url: str,
    batch: str,
    labels: dict[str, str] | None = None,
) -> Path:
    """Issue an onboarding cert for a batch of nodes and write what a node image needs.

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
    return out_dir
