"""The config-signing key's life: rotation, what ``certs`` offers, retirement.

    rotate_signing(services, actor)   new key signs at once; the old one is recorded
    signing_certs(services)           what ``GET certs`` lists: the current cert only
    retire_due_keys(services)         background job: delete rotated-out keys after grace

Why ``certs`` lists only the current cert: a node fetches ``certs`` when a config
arrives from a signer it does not know, and then keeps exactly the certs listed (it
drops the others once it accepted a config from a listed one).  Listing the old cert
too would make every node that fetched during a grace period trust it for good — the
very key rotation is meant to retire.  So nodes move to the new cert with their next
config (a rotation re-signs every node's config and every agent-release manifest), and
the grace period is how long the old key file is kept on the controller (for the
replicas still signing with it in memory, at most a second) before the background job
deletes it.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select

from attestation import envelope, pki
from controller.services import Services
from controller.store import notify
from controller.store.audit import audit
from controller.store.models import Node, RetiredSigningCert, utcnow
from controller.store.pki import retired_key_paths
from protocol.bounded_json import load_json

__all__ = ["resign_agent_targets", "retire_due_keys", "rotate_signing", "signing_certs"]

log = logging.getLogger(__name__)


def signing_certs(services: Services) -> list[str]:
    """The PEM certs ``GET certs`` offers (see the module docstring)."""
    return [services.pki.signing.cert_pem()]


def rotate_signing(services: Services, actor: str) -> tuple[str, str]:
    """Issue a new config-signing cert under the root and sign with it from now on; the
    old identity is kept as ``signing-<sha16>`` until the grace period ends.  Returns
    (old sha256, new sha256)."""
    ctl_pki = services.keys.reload()
    new = pki.issue_cert(
        ctl_pki.root, "Outpost config signing", usage=ExtendedKeyUsageOID.CODE_SIGNING
    )
    old = ctl_pki.signing
    pki_dir = services.settings.pki_dir
    now = utcnow()
    with services.db.transaction() as s:
        audit(
            s,
            actor,
            "pki.rotate_signing",
            "config-signing",
            before={"cert_sha256": old.sha256},
            after={"cert_sha256": new.sha256},
            grace_s=services.settings.signing_grace_s,
        )
        s.add(
            RetiredSigningCert(
                sha256=old.sha256,
                cert_pem=old.cert_pem(),
                rotated_at=now,
                retire_at=now + dt.timedelta(seconds=services.settings.signing_grace_s),
            )
        )
        pki.save_identity(old, *retired_key_paths(pki_dir, old.sha256))
        pki.save_identity(new, pki_dir / "signing.pem", pki_dir / "signing.key")
        resign_agent_targets(s, new)
        notify.changed(s)  # every node's config is re-signed at its next poll
    services.keys.reload()
    return old.sha256, new.sha256


def resign_agent_targets(s: Any, signing: pki.Identity) -> int:
    """Re-sign the agent-release manifests in nodes' settings with ``signing`` (a node
    drops the old cert once it accepts a config signed by the new one).  The manifests
    are this controller's own, read back from its database."""
    count = 0
    for node in s.scalars(select(Node).where(Node.settings.is_not(None))):
        target = (node.settings or {}).get("agent")
        if not isinstance(target, dict) or not isinstance(target.get("manifest"), dict):
            continue
        body = load_json(base64.b64decode(target["manifest"]["payload"]))["body"]
        node.settings = {
            **node.settings,
            "agent": {**target, "manifest": envelope.seal(body, signing)},
        }
        count += 1
    return count


def retire_due_keys(services: Services) -> list[str]:
    """Delete the key files of rotated-out signing certs whose grace period has ended
    (a background job, once across replicas).  Returns the retired certs' sha256."""
    now = utcnow()
    done: list[str] = []
    with services.db.transaction() as s:
        due = s.scalars(
            select(RetiredSigningCert).where(
                RetiredSigningCert.retire_at <= now, RetiredSigningCert.key_deleted_at.is_(None)
            )
        ).all()
        for row in due:
            for path in retired_key_paths(services.settings.pki_dir, row.sha256):
                path.unlink(missing_ok=True)
            row.key_deleted_at = now
            audit(s, "controller", "pki.retire_signing", "config-signing", cert_sha256=row.sha256)
            log.info("rotated-out signing key %s… deleted", row.sha256[:16])
            done.append(row.sha256)
    return done
