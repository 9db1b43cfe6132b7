"""Shared helpers for the image builders: the error type, hashing, gzip and atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
from pathlib import Path

from attestation.files import atomic_write


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says what failed and how to fix it."""


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def gzip_deterministic(data: bytes, level: int = 9) -> bytes:
    """Gzip ``data`` with no file name and mtime 0, so equal input gives equal output."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=buffer, mtime=0) as gz:
        gz.write(data)
    return buffer.getvalue()


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (never half-written)."""
    atomic_write(path, data, mode)


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def configure_cli_logging(verbose: bool = False) -> None:
    """Logging for the image builders' command lines: timestamped, ``-v`` for debug."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s images: %(message)s",
        datefmt="%H:%M:%S",
    )
