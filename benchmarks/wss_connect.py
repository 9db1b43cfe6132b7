"""Remote-session WebSocket connects over TLS 1.3: the client Outpost ships
(``protocol.websocket_client``: TLS in one pump thread) beside ``websockets``' own TLS
client (its reader thread and the writer on one ``ssl.SSLSocket``), measured in the same run
against one single-threaded TLS 1.3 echo server.

    .venv/bin/python -m benchmarks.wss_connect [--connects 1000] [--open-timeout 3]

Each connect opens, sends one message, reads the echo and closes.  Prints, per client, the
connects that hung until their open timeout, the ones that failed otherwise, and connects
per second of the ones that worked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import ssl
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from websockets.sync.client import ClientConnection, connect

from benchmarks.simulator.stats import render_table
from protocol.websocket_client import connect_websocket
from tests.fixtures.wss_echo import echo_server


def _websockets_tls(url: str, cert: Path, timeout: float) -> ClientConnection:
    context = ssl.create_default_context(cafile=str(cert))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return connect(url, ssl=context, open_timeout=timeout, compression=None, legacy=True)


def _ours(url: str, cert: Path, timeout: float) -> ClientConnection:
    return connect_websocket(url, str(cert), open_timeout=timeout)


def _run(
    opener: Callable[[str, Path, float], ClientConnection],
    url: str,
    cert: Path,
    n: int,
    timeout: float,
) -> tuple[int, int, float]:
    hung = failed = 0
    worked_s = 0.0
    for i in range(n):
        start = time.perf_counter()
        try:
            ws = opener(url, cert, timeout)
            ws.send(f"m{i}")
            if ws.recv(timeout=timeout) != f"m{i}":
                failed += 1
            ws.close()
            worked_s += time.perf_counter() - start
        except TimeoutError:
            hung += 1
        except Exception:  # any other failure is counted, not fatal to the run
            failed += 1
    ok = n - hung - failed
    return hung, failed, (ok / worked_s if worked_s else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=1000)
    parser.add_argument("--open-timeout", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, echo_server(Path(tmp)) as (url, cert):
        rows = []
        for name, opener in (
            ("websockets' own TLS (peer)", _websockets_tls),
            ("protocol.websocket_client (ours)", _ours),
        ):
            hung, failed, rate = _run(opener, url, cert, args.connects, args.open_timeout)
            rows.append([name, f"{args.connects:,}", str(hung), str(failed), f"{rate:,.0f}"])
    print(
        f"{dt.datetime.now():%Y-%m-%d %H:%M}  {platform.node()}  "
        f"open timeout {args.open_timeout:g} s, TLS 1.3"
    )
    print(render_table(["client", "connects", "hung", "failed", "connects/s"], rows))


if __name__ == "__main__":
    main()
