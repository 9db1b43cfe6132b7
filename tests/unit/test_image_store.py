"""The image store's references, GC, re-fetch of corrupt blobs and progress throttling
(a small in-memory download client; real HTTP is in tests/integration)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node_agent.client import Unreachable
from node_agent.errors import TemporaryError, is_permanent
from node_agent.image_store import ImageError, ImageStore, hash_file
from protocol.desired_state import ImageRef


@dataclass
class FakeResponse:
    data: bytes
    status_code: int = 200

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def iter_content(self, size: int):  # type: ignore[no-untyped-def]
        for i in range(0, len(self.data), 4096):  # small chunks: many progress events
            yield self.data[i : i + 4096]


@dataclass
class FakeClient:
    blobs: dict[str, bytes]
    calls: list[tuple[str, int]] = field(default_factory=list)

    def download(self, url: str, dest: Path, offset: int) -> FakeResponse:
        self.calls.append((url, offset))
        data = self.blobs[url]
        return FakeResponse(data[offset:], 206) if offset else FakeResponse(data)


def _blob(text: bytes) -> tuple[bytes, str]:
    return text, hashlib.sha256(text).hexdigest()


A, SHA_A = _blob(b"a" * 300_000)
B, SHA_B = _blob(b"b" * 1000)


def _ref(data: bytes, sha: str, name: str = "img") -> ImageRef:
    return ImageRef(name=name, sha256=sha, size=len(data), format="raw", url=f"http://x/{sha}")


@pytest.fixture
def client() -> FakeClient:
    return FakeClient({f"http://x/{SHA_A}": A, f"http://x/{SHA_B}": B})


@pytest.fixture
def store(tmp_path, client) -> ImageStore:  # type: ignore[no-untyped-def]
    return ImageStore(tmp_path / "images", client, max_bytes=1 << 20)  # type: ignore[arg-type]


def test_hash_file_gives_the_files_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(A)
    assert hash_file(path).hexdigest() == SHA_A


def test_gc_removes_only_blobs_no_app_references(store):
    store.ensure(_ref(A, SHA_A), app="app-1")
    store.ensure(_ref(B, SHA_B), app="app-2")
    store.drop_ref("app-2")
    assert store.gc() == [SHA_B]
    assert store.has(SHA_A) and not store.has(SHA_B)


def test_references_survive_a_restart_of_the_agent(store, client, tmp_path):
    store.ensure(_ref(A, SHA_A), app="app-1")
    store.ensure(_ref(B, SHA_B))
    again = ImageStore(tmp_path / "images", client, max_bytes=1 << 20)  # type: ignore[arg-type]
    assert again.references() == {"app-1": SHA_A}
    assert again.gc() == [SHA_B]
    assert again.has(SHA_A)


def test_set_refs_replaces_every_reference(store):
    store.ensure(_ref(A, SHA_A), app="app-1")
    store.ensure(_ref(B, SHA_B), app="app-2")
    store.set_refs({"app-2": SHA_B})
    assert json.loads((store.root / "refs.json").read_text())["refs"] == {"app-2": SHA_B}
    assert store.gc() == [SHA_A]


def test_gc_keeps_digests_passed_to_it(store):
    store.ensure(_ref(A, SHA_A))
    assert store.gc(keep=[SHA_A]) == [] and store.has(SHA_A)


def test_an_unreadable_refs_file_keeps_every_blob(store):
    store.ensure(_ref(A, SHA_A), app="app-1")
    (store.root / "refs.json").write_text("{not json")
    assert store.gc() == [] and store.has(SHA_A)


def test_gc_leaves_a_partial_download_another_fetch_is_writing(store):
    partial = store.root / "partial" / SHA_B
    partial.write_bytes(B[:10])
    fd = os.open(store.root / "locks" / SHA_B, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another agent process would hold it
        assert store.gc() == [] and partial.exists()
    finally:
        os.close(fd)
    assert store.gc() == [SHA_B] and not partial.exists()


def test_a_stored_blob_is_not_downloaded_again(store, client):
    store.ensure(_ref(A, SHA_A))
    store.ensure(_ref(A, SHA_A))
    assert len(client.calls) == 1


def test_a_corrupted_blob_is_not_used_but_fetched_again(store, client, tmp_path):
    store.ensure(_ref(A, SHA_A))
    store.path(SHA_A).write_bytes(b"x" * len(A))  # bit rot, same size
    fresh = ImageStore(tmp_path / "images", client, max_bytes=1 << 20)  # type: ignore[arg-type]
    assert fresh.ensure(_ref(A, SHA_A)).read_bytes() == A
    assert len(client.calls) == 2


def test_a_partial_download_is_never_used_and_is_completed(store, client):
    (store.root / "partial" / SHA_A).write_bytes(A[:1000])
    assert not store.has(SHA_A)
    assert store.ensure(_ref(A, SHA_A)).read_bytes() == A
    assert client.calls == [(f"http://x/{SHA_A}", 1000)]


def test_a_wrong_digest_error_carries_both_digests(store):
    wrong = "f" * 64
    ref = ImageRef(name="img", sha256=wrong, size=len(A), format="raw", url=f"http://x/{SHA_A}")
    with pytest.raises(ImageError) as raised:
        store.ensure(ref)
    assert wrong in str(raised.value) and SHA_A in str(raised.value)
    assert not store.has(wrong) and list((store.root / "partial").iterdir()) == []


def test_a_wrong_digest_is_a_permanent_error(store):
    ref = ImageRef(name="img", sha256="f" * 64, size=len(A), format="raw", url=f"http://x/{SHA_A}")
    with pytest.raises(ImageError) as raised:
        store.ensure(ref)
    assert is_permanent(raised.value)


def test_an_unreachable_controller_is_a_temporary_error(store, client):
    def unreachable(url: str, dest: Path, offset: int) -> FakeResponse:
        raise Unreachable("connection refused")

    client.download = unreachable
    with pytest.raises(ImageError) as raised:
        store.ensure(_ref(A, SHA_A))
    assert isinstance(raised.value, TemporaryError) and not is_permanent(raised.value)


def test_progress_is_throttled_but_reports_the_first_and_last_bytes(store):
    events: list[tuple[str, int, int]] = []
    store.ensure(_ref(A, SHA_A), lambda *e: events.append(e))
    downloading = [e for e in events if e[0] == "DOWNLOADING"]
    assert len(downloading) < 5  # 74 chunks arrived
    assert downloading[0][1] == 4096 and downloading[-1][1] == len(A)
    assert events[-1] == ("VERIFYING", len(A), len(A))
