"""Image verify throughput: the image store's sha256 against ``sha256sum`` on one file.

Rows (MB/s = 10^6 bytes per second, median of --runs, page cache warm):

* ``sha256sum`` (coreutils), the reference;
* ``ImageStore`` re-verify (``hash_file``: one reused 1 MiB buffer, ``readinto``), the
  cost of checking a stored blob the first time an agent process uses it;
* ``sha256_file`` (``attestation.files``: 1 MiB ``read`` chunks), what the store used before;
* ``ImageStore.ensure`` over loopback HTTP: download with the digest computed while the
  bytes arrive, format check (raw), rename — so a fresh download needs no second pass.

    .venv/bin/python -m benchmarks.image_verify [--mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from attestation.files import sha256_file
from node_agent.client import ControllerClient
from node_agent.image_store import ImageStore, hash_file
from protocol.desired_state import ImageRef


def _make_file(path: Path, mib: int) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    with path.open("wb") as out:
        for i in range(mib):
            out.write(block[i % 256 :] + block[: i % 256])


def _time(fn: Callable[[], str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    digest = fn()
    return time.perf_counter() - t0, digest


def _sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(directory), **kw)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="outpost-imgverify-"))
    try:
        blob = base / "blob.raw"
        _make_file(blob, args.mib)
        size = blob.stat().st_size
        expected = _sha256sum(blob)  # also warms the page cache
        httpd, url = _serve(base)
        client = ControllerClient("https://controller.invalid", base / "none.pem", 600.0)

        def ensure() -> str:
            root = base / "store"
            shutil.rmtree(root, ignore_errors=True)
            store = ImageStore(root, client, max_bytes=1 << 40)
            ref = ImageRef(
                name="b", sha256=expected, size=size, format="raw", url=url + "/blob.raw"
            )
            return store.ensure(ref).name

        cases: list[tuple[str, Callable[[], str]]] = [
            ("sha256sum (coreutils)", lambda: _sha256sum(blob)),
            ("ImageStore re-verify (hash_file)", lambda: hash_file(blob).hexdigest()),
            ("sha256_file (1 MiB read chunks)", lambda: sha256_file(blob)),
            ("ImageStore.ensure, loopback HTTP", ensure),
        ]
        print(f"file: {args.mib} MiB ({size} bytes), {args.runs} runs, median")
        print(f"{'method':<36}{'s':>8}{'MB/s':>10}{'vs sha256sum':>14}")
        reference = None
        for name, fn in cases:
            times = []
            for _ in range(args.runs):
                seconds, digest = _time(fn)
                assert digest == expected, (name, digest)
                times.append(seconds)
            median = statistics.median(times)
            reference = reference or median
            rate = size / median / 1e6
            print(f"{name:<36}{median:>8.2f}{rate:>10.0f}{reference / median:>13.2f}x")
        httpd.shutdown()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
