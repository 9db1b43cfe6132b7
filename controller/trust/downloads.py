"""Who may download a datastore blob: the node a URL was made for, while it is registered,
not revoked and attested (a live integrity token) — and operators with a token.

The image URLs a node's config carries are ``…/datastore/sha256/<digest>?node=<uuid>&
sig=<hmac>``: the HMAC (``download-url.key`` in the data dir, shared by replicas) binds
the URL to that node and that blob, so a URL copied from one node's config serves no
other blob, and serves nothing once that node is revoked or its attestation fails.  The
URL carries no expiry on purpose: it is part of the node's desired state, whose content
hash must not change with the clock; what makes it short-lived is the live check on
every request (and on every resumed range) against the node's trust record.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.models import IntegrityToken, Node, NodeTrust, utcnow

__all__ = ["download_refusal", "signed_blob_url", "url_signature"]


def url_signature(key: bytes, node_uuid: str, digest: str) -> str:
    return hmac.new(key, f"{node_uuid}/{digest}".encode(), hashlib.sha256).hexdigest()[:40]


def signed_blob_url(public_url: str, digest: str, node_uuid: str | None, key: bytes) -> str:
    """The datastore URL of ``digest`` for ``node_uuid`` (unsigned without a key or node)."""
    base = f"{public_url.rstrip('/')}/datastore/sha256/{digest}"
    if not key or not node_uuid:
        return base
    query = urlencode({"node": node_uuid, "sig": url_signature(key, node_uuid, digest)})
    return f"{base}?{query}"


def download_refusal(
    session: Session, key: bytes, digest: str, node_uuid: str, sig: str
) -> tuple[int, str, str] | None:
    """None when the node may download ``digest`` now; else (status, code, message)."""
    if not key or not hmac.compare_digest(url_signature(key, node_uuid, digest), sig):
        return 403, "bad_signature", "this download URL was not issued for that node and blob"
    node = session.scalar(select(Node).where(Node.uuid == node_uuid))
    if node is None or node.state != "registered":
        return 403, "unknown_node", "the node is not registered"
    trust = session.get(NodeTrust, node.id)
    if trust is not None and trust.revoked_at is not None:
        return 403, "revoked", f"node {node.serial!r} has been revoked"
    live = session.scalar(
        select(IntegrityToken.token_sha256)
        .where(IntegrityToken.node_id == node.id, IntegrityToken.expires_at > utcnow())
        .limit(1)
    )
    if live is None:
        return 403, "not_attested", "the node holds no live attestation: attest first"
    return None
