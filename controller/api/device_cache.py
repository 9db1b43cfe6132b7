"""What one controller process remembers about the nodes polling it, so that an idle
config poll costs no database query and no write.

    entry = cache.node(session, cert_sha256)   the node behind a signing cert (or None)
    cache.fresh(entry)                         still true to the database?

An entry is read from the database and tagged with the notifier's version for its node
(:mod:`controller.store.notify`). Every change that matters for a node's answer commits a
wake-up for it — its desired state, its revocation, its integrity tokens (issued or
dropped) — so an entry whose tag is the current version is as good as a fresh read, on
every replica (PostgreSQL ``LISTEN``), and a stale one is read again.

Replays of config polls are caught in memory (:class:`RecentIds`): a config poll changes
nothing, and a replay gets only what the same on-path position could read from the
original answer; every other device request keeps its single-use id in the database
(docs/security.md, "Replay").
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from attestation import pki
from controller.store.models import IntegrityToken, Node, NodeTrust
from controller.store.notify import ConfigNotifier

__all__ = ["CachedNode", "DeviceCache", "RecentIds"]


@dataclass
class CachedNode:
    node_id: int
    serial: str
    cert: x509.Certificate
    version: int
    """The notifier's version for this node when it was read."""
    revoked: bool
    content_hash: str | None = None
    """The content hash of the desired state last computed (None: not yet)."""
    tokens: dict[str, float] = field(default_factory=dict)
    """Integrity token sha256 → expiry (epoch seconds) seen valid in the database."""


class DeviceCache:
    def __init__(self, notifier: ConfigNotifier, max_nodes: int = 200_000) -> None:
        self.notifier = notifier
        self.max_nodes = max_nodes
        self._by_cert: dict[str, CachedNode] = {}
        self._lock = threading.Lock()

    def fresh(self, entry: CachedNode) -> bool:
        return entry.version == self.notifier.version(entry.node_id)

    def node(self, session: Session, cert_sha256: str) -> CachedNode | None:
        """The registered node signing with this cert, from memory when still fresh."""
        with self._lock:
            entry = self._by_cert.get(cert_sha256)
        if entry is not None and self.fresh(entry):
            return entry
        node = session.scalar(
            select(Node).where(Node.device_cert_sha256 == cert_sha256, Node.state == "registered")
        )
        if node is None or not node.device_cert_pem:
            return None
        return self.reload(session, node, cert_sha256)

    def reload(self, session: Session, node: Node, cert_sha256: str) -> CachedNode:
        """Read the node's entry again (version taken before the reads)."""
        version = self.notifier.version(node.id)
        trust = session.get(NodeTrust, node.id)
        old = self._by_cert.get(cert_sha256)
        entry = CachedNode(
            node_id=node.id,
            serial=node.serial,
            cert=old.cert if old else pki.load_cert(node.device_cert_pem or ""),
            version=version,
            revoked=trust is not None and trust.revoked_at is not None,
        )
        with self._lock:
            if len(self._by_cert) >= self.max_nodes and cert_sha256 not in self._by_cert:
                self._by_cert.pop(next(iter(self._by_cert)))  # the oldest entry
            self._by_cert[cert_sha256] = entry
        return entry

    def token_ok(self, session: Session, entry: CachedNode, token_sha256: str) -> str | None:
        """None when the token is the node's live one; else the error code (as check_token)."""
        now = time.time()
        expires = entry.tokens.get(token_sha256)
        if expires is not None and expires > now:
            return None
        row = session.get(IntegrityToken, token_sha256)
        if row is None or row.node_id != entry.node_id:
            return "integrity_token_invalid"
        expiry = row.expires_at.timestamp() if row.expires_at.tzinfo else _utc(row.expires_at)
        if expiry <= now:
            return "integrity_token_expired"
        entry.tokens[token_sha256] = expiry
        return None


def _utc(naive: object) -> float:
    import datetime as dt

    assert isinstance(naive, dt.datetime)
    return naive.replace(tzinfo=dt.UTC).timestamp()


class RecentIds:
    """Request ids of idle polls seen while their timestamps are fresh (this process).

    Ids are kept as 8-byte hashes in one set per minute of their envelope timestamp; a
    minute older than the freshness window is dropped whole (its requests are refused as
    stale anyway).  About 50 bytes per poll in the window: at 1,667 polls/s and ±300 s,
    ~1 M ids, ~50 MB, shared by the processes behind the balancer.
    """

    BUCKET_S = 60

    def __init__(self, skew_s: float) -> None:
        self.skew_s = skew_s
        self._buckets: dict[int, set[int]] = {}
        self._lock = threading.Lock()

    def first_use(self, request_id: str, timestamp: float) -> bool:
        key = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest())
        bucket = int(timestamp // self.BUCKET_S)
        oldest = int((time.time() - self.skew_s) // self.BUCKET_S) - 1
        with self._lock:
            for stale in [b for b in self._buckets if b < oldest]:
                del self._buckets[stale]
            seen = self._buckets.setdefault(bucket, set())
            if key in seen:
                return False
            seen.add(key)
            return True
