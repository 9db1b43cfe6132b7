"""The image store against a real HTTP server that can drop connections and counts hits."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from node_agent.client import ControllerClient
from node_agent.image_store import ImageError, ImageStore
from protocol.desired_state import ImageRef

pytestmark = pytest.mark.integration
DATA = os.urandom(2 * 1024 * 1024 + 5)
SHA = hashlib.sha256(DATA).hexdigest()
_PIECE = 64 * 1024


@dataclass
class BlobServer:
    """Serves DATA at /blob with Range support; ``drop_after`` cuts the next response."""

    url: str = ""
    hits: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    drop_after: int | None = None
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: BlobServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range", "")
            with state.lock:
                state.hits.append(rng)
                drop, state.drop_after = state.drop_after, None
            start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
            body = DATA[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            limit = len(body) if drop is None else drop
            for offset in range(0, limit, _PIECE):
                piece = body[offset : min(offset + _PIECE, limit)]
                self.wfile.write(piece)
                with state.lock:
                    state.bytes_sent += len(piece)
                time.sleep(state.delay_s)
            if drop is not None:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler


@pytest.fixture
def server() -> Iterator[BlobServer]:
    state = BlobServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/blob"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _client() -> ControllerClient:
    return ControllerClient("https://controller.invalid", Path("/nonexistent-ca.pem"), 10.0)


def _store(root: Path) -> ImageStore:
    return ImageStore(root, _client(), max_bytes=64 * 1024 * 1024)


def _ref(server: BlobServer, sha: str = SHA) -> ImageRef:
    return ImageRef(name="blob", sha256=sha, size=len(DATA), format="raw", url=server.url)


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    store = _store(tmp_path / "images")
    dropped_at = server.drop_after = 1024 * 1024 + 3
    with pytest.raises(ImageError, match="will resume"):
        store.ensure(_ref(server))
    assert not store.has(SHA)
    kept = (store.root / "partial" / SHA).stat().st_size
    assert 0 < kept < len(DATA)
    assert store.ensure(_ref(server)).read_bytes() == DATA
    assert server.hits == ["", f"bytes={kept}-"]
    assert server.bytes_sent - len(DATA) == dropped_at - kept  # only the lost tail twice


def test_a_wrong_digest_names_both_digests_and_stores_nothing(server, tmp_path):
    store = _store(tmp_path / "images")
    wrong = "ab" * 32
    with pytest.raises(ImageError) as raised:
        store.ensure(_ref(server, sha=wrong))
    assert wrong in str(raised.value) and SHA in str(raised.value)
    assert list((store.root / "sha256").iterdir()) == []
    assert list((store.root / "partial").iterdir()) == []


def test_concurrent_fetches_of_one_blob_download_it_once(server, tmp_path):
    server.delay_s = 0.01
    root = tmp_path / "images"
    stores = [_store(root) for _ in range(4)]  # as if four agents shared the store
    barrier = threading.Barrier(len(stores))
    paths: list[Path] = []

    def fetch(store: ImageStore) -> None:
        barrier.wait()
        paths.append(store.ensure(_ref(server)))

    threads = [threading.Thread(target=fetch, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 4 and all(p.read_bytes() == DATA for p in paths)
    assert server.hits == [""]


_FETCH_IN_A_PROCESS = """
import sys
from pathlib import Path
from node_agent.client import ControllerClient
from node_agent.image_store import ImageStore
from protocol.desired_state import ImageRef
client = ControllerClient("https://controller.invalid", Path("/nonexistent"), 10.0)
store = ImageStore(Path(sys.argv[1]), client, max_bytes=1 << 30)
ref = ImageRef(name="blob", sha256=sys.argv[2], size=int(sys.argv[3]), format="raw",
               url=sys.argv[4])
print(store.ensure(ref))
"""


def test_two_agent_processes_sharing_a_store_download_a_blob_once(server, tmp_path):
    server.delay_s = 0.02
    root = tmp_path / "images"
    args = [str(root), SHA, str(len(DATA)), server.url]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FETCH_IN_A_PROCESS, *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(root / "sha256" / SHA)] * 2
    assert server.hits == [""]
