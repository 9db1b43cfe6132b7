"""Build stamps: the inputs each image was last built from, to skip work when nothing changed.

``stamp.json`` in the output directory maps an image name to ``{"inputs": {...}, "sha256",
"size"}``. Inputs include a hash of the recipe's source files, so editing a recipe rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attestation.files import sha256_file
from images.common import atomic_write_text

STAMP_NAME = "stamp.json"
STAMP_VERSION = 1
_PACKAGE_DIR = Path(__file__).resolve().parent


def source_hash(modules: Iterable[str]) -> str:
    """sha256 over the named module files of this package (names and contents)."""
    digest = hashlib.sha256(f"stamp-v{STAMP_VERSION}\n".encode())
    for name in sorted(set(modules)):
        digest.update(name.encode() + b"\0" + (_PACKAGE_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()


def load(out_dir: Path) -> dict[str, Any]:
    try:
        records = json.loads((out_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def save(out_dir: Path, records: dict[str, Any]) -> None:
    atomic_write_text(out_dir / STAMP_NAME, json.dumps(records, indent=1, sort_keys=True) + "\n")


def is_fresh(record: dict[str, Any] | None, inputs: dict[str, Any], path: Path) -> bool:
    """True when ``path`` was built from ``inputs`` and is unchanged since (size and sha256)."""
    if not record or record.get("inputs") != inputs or not path.is_file():
        return False
    if path.stat().st_size != record.get("size"):
        return False
    return sha256_file(path) == record.get("sha256")
