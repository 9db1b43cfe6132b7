"""Random secret keys kept as files in the data dir (0600), made on first use; replicas
sharing the data dir share them."""

from __future__ import annotations

import secrets
from pathlib import Path

from attestation.files import atomic_write

__all__ = ["DOWNLOAD_KEY_FILE", "ensure_key_file"]

DOWNLOAD_KEY_FILE = "download-url.key"
"""The HMAC key of the datastore URLs the controller gives nodes."""


def ensure_key_file(path: Path) -> bytes:
    """The key in ``path`` (hex text), made now if the file does not exist."""
    if not path.exists():
        atomic_write(path, secrets.token_hex(32).encode(), mode=0o600)
    return path.read_bytes().strip()
