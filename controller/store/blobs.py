"""The controller's own image datastore on disk: content-addressed files under ``sha256/``.

Uploads stream to a temp file while hashing, are refused past the size cap or when the
declared sha256 differs, and are renamed into ``sha256/<digest>`` only when complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO

from controller.errors import ApiError

__all__ = ["blob_path", "store_upload"]

_CHUNK = 1024 * 1024


def blob_path(root: Path, digest: str) -> Path:
    """Where the blob with this sha256 lives (it may not exist)."""
    return root / "sha256" / digest


def store_upload(root: Path, stream: IO[bytes], expected_sha256: str, max_bytes: int) -> int:
    """Store a streamed upload under its digest; returns its size."""
    blobs = root / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".upload-")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, "too_large", f"image larger than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise ApiError(422, "bad_request", "empty upload")
        if digest.hexdigest() != expected_sha256:
            raise ApiError(
                422,
                "sha256_mismatch",
                f"upload hashes to {digest.hexdigest()}, not the declared {expected_sha256}",
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, blobs / expected_sha256)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return size
