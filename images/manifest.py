"""The image manifest (``manifest.json``): which images were built, their format, size and sha256.

Format::

    {"images": [{"name": "testvm", "file": "testvm.tar", "format": "kernel-bundle",
                 "sha256": "<hex>", "size": <bytes>, "kind": "vm"}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestation.files import sha256_file
from images.common import ImageBuildError, atomic_write_text

MANIFEST_NAME = "manifest.json"
_FIELDS = ("name", "file", "format", "sha256", "size", "kind")


@dataclass(frozen=True)
class ImageArtifact:
    """One built image file; ``directory`` is where it (and the manifest) lives."""

    name: str
    file: str
    format: str
    sha256: str
    size: int
    kind: str
    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / self.file

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` form of the file's hash."""
        return f"sha256:{self.sha256}"

    def to_json(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in _FIELDS}

    def verify(self) -> None:
        """Raise ImageBuildError unless the file exists with the recorded size and sha256."""
        if not self.path.is_file() or self.path.stat().st_size != self.size:
            raise ImageBuildError(f"{self.path} is missing or has the wrong size")
        if sha256_file(self.path) != self.sha256:
            raise ImageBuildError(f"{self.path} does not match its sha256 in the manifest")


@dataclass(frozen=True)
class Manifest:
    """All built images of one output directory."""

    directory: Path
    images: tuple[ImageArtifact, ...]

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_NAME

    def get(self, name: str) -> ImageArtifact:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(f"no image {name!r} in {self.path} (have {[i.name for i in self.images]})")

    def to_json(self) -> dict[str, Any]:
        return {"images": [image.to_json() for image in self.images]}


def dumps(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), indent=2) + "\n"


def write_manifest(manifest: Manifest) -> None:
    """Atomically (re)write ``manifest.json`` when its content changed."""
    text = dumps(manifest)
    if not manifest.path.is_file() or manifest.path.read_text() != text:
        atomic_write_text(manifest.path, text)


def load_manifest(out_dir: Path) -> Manifest:
    """Read ``out_dir/manifest.json`` (raises ImageBuildError if absent or malformed)."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
        images = tuple(
            ImageArtifact(**{field: item[field] for field in _FIELDS}, directory=out_dir)
            for item in raw["images"]
        )
    except FileNotFoundError as exc:
        raise ImageBuildError(f"{path} not found: run `python -m images.build`") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageBuildError(f"{path} is malformed: {exc}") from exc
    return Manifest(out_dir, images)
