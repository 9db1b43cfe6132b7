"""Content-addressed image store: download with resume and a size cap, verify, then use.

Layout under ``<state_dir>/images``::

    partial/<sha256>   bytes received so far (resumed with an HTTP Range request)
    sha256/<sha256>    complete blobs whose digest was verified before the rename

A blob is only ever read from ``sha256/``, so a partial or corrupt download is
never used; a blob that fails re-verification at start is deleted and fetched again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from attestation.files import sha256_file
from node_agent.client import ControllerClient
from protocol.desired_state import ImageRef

__all__ = ["ImageError", "ImageStore", "Progress"]

log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
Progress = Callable[[str, int, int], None]  # (phase, done bytes, total bytes)


class ImageError(Exception):
    """The image could not be fetched or did not verify; it was not stored."""


class ImageStore:
    def __init__(self, root: Path, client: ControllerClient, max_bytes: int) -> None:
        self.root = root
        self.client = client
        self.max_bytes = max_bytes
        for sub in ("partial", "sha256"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(root / "sha256", 0o755)

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def verify_all(self) -> list[str]:
        """Re-hash every stored blob; delete and return those that no longer match."""
        bad = []
        for blob in (self.root / "sha256").iterdir():
            if blob.is_file() and sha256_file(blob) != blob.name:
                log.error("image blob %s is corrupt; deleting it", blob.name)
                blob.unlink()
                bad.append(blob.name)
        return bad

    def ensure(self, ref: ImageRef, progress: Progress | None = None) -> Path:
        """The verified blob for ``ref``, downloading (and resuming) it when needed."""
        final = self.path(ref.sha256)
        if final.is_file():
            return final
        if ref.size > self.max_bytes:
            raise ImageError(
                f"image {ref.name} is {ref.size} bytes, above this node's cap {self.max_bytes}"
            )
        partial = self.root / "partial" / ref.sha256
        self._download(ref, partial, progress)
        if progress:
            progress("VERIFYING", ref.size, ref.size)
        actual = sha256_file(partial)
        if actual != ref.sha256:
            partial.unlink()
            raise ImageError(f"image {ref.name}: sha256 {actual} does not match {ref.sha256}")
        os.chmod(partial, 0o644)
        os.replace(partial, final)
        log.info("image %s verified (sha256 %s, %d bytes)", ref.name, ref.sha256[:12], ref.size)
        return final

    def _download(self, ref: ImageRef, partial: Path, progress: Progress | None) -> None:
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > ref.size:
            partial.unlink()
            offset = 0
        if offset == ref.size:
            return
        resp = self.client.download(ref.url, partial, offset)
        with resp:
            if offset and resp.status_code != 206:  # server ignored the range: start over
                offset = 0
            mode = "ab" if offset else "wb"
            done = offset
            with partial.open(mode) as out:
                for chunk in resp.iter_content(_CHUNK):
                    done += len(chunk)
                    if done > ref.size:
                        raise ImageError(
                            f"image {ref.name}: server sent more than the declared {ref.size} bytes"
                        )
                    out.write(chunk)
                    if progress:
                        progress("DOWNLOADING", done, ref.size)
                out.flush()
                os.fsync(out.fileno())
        if done != ref.size:
            raise ImageError(f"image {ref.name}: got {done} of {ref.size} bytes (will resume)")

    def gc(self, keep: Iterable[str]) -> list[str]:
        """Delete blobs and partial downloads not in ``keep``; returns what was removed."""
        wanted = set(keep)
        removed = []
        for sub in ("sha256", "partial"):
            for blob in (self.root / sub).iterdir():
                if blob.name not in wanted and not blob.name.startswith("."):
                    blob.unlink()
                    removed.append(blob.name)
        return removed
