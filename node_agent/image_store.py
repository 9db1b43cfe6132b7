"""Content-addressed image store: download with resume and a size cap, verify, then use.

Layout under ``<state_dir>/images``::

    partial/<sha256>   bytes received so far (resumed with an HTTP Range request)
    sha256/<sha256>    complete blobs whose digest and format were verified before the rename
    locks/<sha256>     per-digest lock files (flock): one download per blob across agents
    refs.json          which app uses which blob (atomically rewritten), read by GC

A blob is only ever read from ``sha256/``, so a partial or corrupt download is never used.
The digest is computed while the bytes arrive (a resumed download first re-hashes what is
already on disk), and a blob is moved into ``sha256/`` only when digest and format check
out.  A stored blob is re-hashed the first time this process uses it (and whenever its
size, inode or mtime changed); one that no longer matches is deleted and fetched again.

With a :class:`~node_agent.download_gate.DownloadGate` every download waits for the
node's download window (``DownloadDeferred`` before it starts; a running one stops when the
window closes and resumes later) and holds the node's rate share (a token bucket, read in
pieces of about an eighth of a second of the rate).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from attestation.files import atomic_write
from node_agent.client import ControllerClient, ControllerError, Unreachable
from node_agent.download_gate import DownloadGate
from node_agent.errors import PermanentError, TemporaryError
from node_agent.https import TransportError
from node_agent.image_formats import FormatError, check_format
from protocol.desired_state import ImageRef

__all__ = ["ImageError", "ImageRejected", "ImageStore", "ImageUnavailable", "Progress", "hash_file"]

log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
Progress = Callable[[str, int, int], None]  # (phase, done bytes, total bytes)
_REFS = "refs.json"
_MAX_REFS = 4096

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class ImageError(Exception):
    """The image could not be fetched or did not verify; it was not stored."""


class ImageUnavailable(ImageError, TemporaryError):
    """The download failed or stopped short: it is resumed on a later try."""


class ImageRejected(ImageError, PermanentError):
    """The bytes are not the image the spec names (digest, size, format) or exceed this
    node's cap: fetching the same spec again will not help."""


def hash_file(path: Path, digest: hashlib._Hash | None = None) -> hashlib._Hash:
    """Feed the file into ``digest`` (a new sha256 by default) through one reused buffer."""
    digest = digest if digest is not None else hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with Path(path).open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest


def _thread_lock(key: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive across threads (a lock per path) and processes (flock on ``path``)."""
    with _thread_lock(str(path)):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class _Throttle:
    """Progress at most every ``interval_s`` per phase, plus the first and the last call."""

    def __init__(self, progress: Progress | None, interval_s: float) -> None:
        self.progress = progress
        self.interval_s = interval_s
        self.last: tuple[str, float] | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if (
            self.last is not None
            and self.last[0] == phase
            and done < total
            and now - self.last[1] < self.interval_s
        ):
            return
        self.last = (phase, now)
        self.progress(phase, done, total)


class ImageStore:
    def __init__(
        self,
        root: Path,
        client: ControllerClient,
        max_bytes: int,
        progress_interval_s: float = 0.5,
        gate: DownloadGate | None = None,
    ) -> None:
        self.root = root
        self.client = client
        self.max_bytes = max_bytes
        self.progress_interval_s = progress_interval_s
        self.gate = gate or DownloadGate()
        for sub in ("partial", "sha256", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(root / "sha256", 0o755)
        self._verified: dict[str, tuple[int, int, int]] = {}

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def busy(self, sha256: str) -> bool:
        """True while a thread of this process downloads ``sha256``."""
        lock = _thread_lock(str(self.root / "locks" / sha256))
        if lock.acquire(blocking=False):
            lock.release()
            return False
        return True

    def partial_bytes(self, sha256: str) -> int:
        """Bytes of ``sha256`` downloaded so far (0: none)."""
        try:
            return (self.root / "partial" / sha256).stat().st_size
        except OSError:
            return 0

    # -- references -------------------------------------------------------------------

    def references(self) -> dict[str, str]:
        """``{app: sha256}`` as persisted in ``refs.json`` (empty when there is none)."""
        try:
            data = json.loads((self.root / _REFS).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("image refs %s unreadable (%s): treating every blob as in use", _REFS, exc)
            return {f"?{blob.name}": blob.name for blob in (self.root / "sha256").iterdir()}
        refs = data.get("refs", {}) if isinstance(data, dict) else {}
        return {str(k): str(v) for k, v in refs.items()} if isinstance(refs, dict) else {}

    def add_ref(self, app: str, sha256: str) -> None:
        """Record that ``app`` uses blob ``sha256`` (replacing what it used before)."""
        self._update_refs(lambda refs: refs.__setitem__(app, sha256))

    def drop_ref(self, app: str) -> None:
        self._update_refs(lambda refs: refs.pop(app, None))

    def set_refs(self, refs: Mapping[str, str]) -> None:
        """Replace all references: exactly these apps use exactly these blobs."""

        def replace(current: dict[str, str]) -> None:
            current.clear()
            current.update(refs)

        self._update_refs(replace)

    def _update_refs(self, change: Callable[[dict[str, str]], object]) -> None:
        with _locked(self.root / "locks" / ".refs"):
            refs = self.references()
            before = dict(refs)
            change(refs)
            if refs == before:
                return
            if len(refs) > _MAX_REFS:
                raise ImageError(f"image store: more than {_MAX_REFS} app references")
            body = json.dumps({"version": 1, "refs": dict(sorted(refs.items()))}, indent=1)
            atomic_write(self.root / _REFS, body.encode(), mode=0o644)

    # -- fetch and verify -------------------------------------------------------------

    def verify_all(self) -> list[str]:
        """Re-hash every stored blob; delete and return those that no longer match."""
        bad = []
        for blob in (self.root / "sha256").iterdir():
            if blob.is_file() and not self._intact(blob.name):
                bad.append(blob.name)
        return bad

    def _stat_key(self, path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return (st.st_size, st.st_ino, st.st_mtime_ns)

    def _intact(self, sha256: str) -> bool:
        """True if the stored blob still hashes to its name; a corrupt one is deleted."""
        final = self.path(sha256)
        key = self._stat_key(final)
        if self._verified.get(sha256) == key:
            return True
        if hash_file(final).hexdigest() == sha256:
            self._verified[sha256] = key
            return True
        log.error("image blob %s is corrupt; deleting it", sha256)
        self._verified.pop(sha256, None)
        final.unlink(missing_ok=True)
        return False

    def ensure(self, ref: ImageRef, progress: Progress | None = None, app: str = "") -> Path:
        """The verified blob for ``ref``, downloading (and resuming) it when needed.

        Concurrent callers for one digest (threads or agents sharing the store) download it
        once: the others wait for the lock and find it stored.  With ``app`` the blob is
        recorded as used by that app, so GC keeps it (also after a restart).
        """
        if app:
            self.add_ref(app, ref.sha256)
        final = self.path(ref.sha256)
        if final.is_file() and self._intact(ref.sha256):
            return final
        if ref.size > self.max_bytes:
            raise ImageRejected(
                f"image {ref.name} is {ref.size} bytes, above this node's cap {self.max_bytes}"
            )
        with _locked(self.root / "locks" / ref.sha256):
            if final.is_file() and self._intact(ref.sha256):
                return final
            self.gate.check(f"image {ref.name}")
            self._fetch(ref, _Throttle(progress, self.progress_interval_s))
        return final

    def _fetch(self, ref: ImageRef, progress: _Throttle) -> None:
        partial = self.root / "partial" / ref.sha256
        digest = self._download(ref, partial, progress)
        progress("VERIFYING", ref.size, ref.size)
        actual = digest.hexdigest()
        if actual != ref.sha256:
            partial.unlink(missing_ok=True)
            raise ImageRejected(
                f"image {ref.name}: downloaded sha256 {actual} does not match the expected "
                f"sha256 {ref.sha256}; the blob was discarded"
            )
        try:
            check_format(partial, ref.format)
        except FormatError as exc:
            partial.unlink(missing_ok=True)
            raise ImageRejected(f"image {ref.name} ({ref.format}): {exc}; not used") from exc
        os.chmod(partial, 0o644)
        final = self.path(ref.sha256)
        os.replace(partial, final)
        self._verified[ref.sha256] = self._stat_key(final)
        log.info("image %s verified (sha256 %s, %d bytes)", ref.name, ref.sha256[:12], ref.size)

    def _download(self, ref: ImageRef, partial: Path, progress: _Throttle) -> hashlib._Hash:
        """Bring ``partial`` to ``ref.size`` bytes; returns the sha256 of all of them."""
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > ref.size:
            partial.unlink()
            offset = 0
        digest = hash_file(partial) if offset else hashlib.sha256()
        if offset == ref.size:
            return digest
        try:
            resp = self.client.download(ref.url, partial, offset)
        except (Unreachable, ControllerError) as exc:
            raise ImageUnavailable(f"image {ref.name}: download failed: {exc}") from exc
        with resp:
            if offset and resp.status_code != 206:  # server ignored the range: start over
                offset = 0
                digest = hashlib.sha256()
            done = offset
            what = f"image {ref.name}"
            try:
                with partial.open("ab" if offset else "wb") as out:
                    for chunk in resp.iter_content(self._chunk_size()):
                        done += len(chunk)
                        if done > ref.size:
                            out.close()
                            partial.unlink(missing_ok=True)
                            raise ImageRejected(
                                f"image {ref.name}: server sent more than the declared "
                                f"{ref.size} bytes"
                            )
                        out.write(chunk)
                        digest.update(chunk)
                        progress("DOWNLOADING", done, ref.size)
                        self.gate.take(len(chunk), what)
                    out.flush()
                    os.fsync(out.fileno())
            except TransportError as exc:
                raise ImageUnavailable(
                    f"image {ref.name}: download interrupted at {done} of {ref.size} bytes "
                    f"(will resume): {exc}"
                ) from exc
        if done != ref.size:
            raise ImageUnavailable(
                f"image {ref.name}: got {done} of {ref.size} bytes (will resume)"
            )
        return digest

    def _chunk_size(self) -> int:
        rate = self.gate.rate_bps
        return _CHUNK if rate is None else int(min(max(rate / 8, 16 * 1024), _CHUNK))

    # -- garbage collection -----------------------------------------------------------

    def gc(self, keep: Iterable[str] = ()) -> list[str]:
        """Delete blobs and partial downloads no app references (nor in ``keep``).

        References come from ``refs.json``, so blobs of apps recorded before a restart
        survive it.  A partial download whose lock another fetch holds is left alone.
        """
        wanted = set(keep) | set(self.references().values())
        removed = []
        for blob in (self.root / "sha256").iterdir():
            if blob.name not in wanted and not blob.name.startswith("."):
                blob.unlink(missing_ok=True)
                self._verified.pop(blob.name, None)
                removed.append(blob.name)
        for blob in (self.root / "partial").iterdir():
            if blob.name in wanted or blob.name.startswith("."):
                continue
            if self._try_remove_partial(blob):
                removed.append(blob.name)
        return removed

    def _try_remove_partial(self, blob: Path) -> bool:
        lock = _thread_lock(str(self.root / "locks" / blob.name))
        if not lock.acquire(blocking=False):
            return False
        try:
            fd = os.open(self.root / "locks" / blob.name, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                blob.unlink(missing_ok=True)
                return True
            finally:
                os.close(fd)
        finally:
            lock.release()
