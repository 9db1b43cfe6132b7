"""Where an idle config poll's time goes in the controller today: N registered nodes,
K 'unchanged' polls through the Flask test client (no HTTP server, no TLS) on PostgreSQL
(a private server) or SQLite, under cProfile; prints milliseconds per poll by stage.

    .venv/bin/python -m benchmarks.poll_profile [--nodes 200] [--polls 2000] [--db postgresql]

The stages are the functions an idle poll runs (cumulative time, so nested stages are
also inside their parents): the rest of the request is Flask/Werkzeug and SQLAlchemy's
session and commit. Compare with the crypto floor (``benchmarks.crypto_floor``): one
ECDSA verify is ~0.1 ms here.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.device_api import _hash_of
from benchmarks.simulator.stats import render_table
from controller.app import create_app
from controller.cli import _settings
from controller.cli import main as controller_main
from tests.device_sim import SimDevice
from tests.fixtures.postgres import fresh_database, private_postgres

STAGES: list[tuple[str, str, str]] = [
    ("whole request (Flask dispatch)", "device_api.py", "config"),
    ("  envelope: open (verify + signer lookup)", "envelope.py", "open_envelope"),
    ("    ECDSA verify", "~", "<method 'verify' of"),
    ("    signer: device cert PEM parsed", "pki.py", "load_cert"),
    ("  replay: delete expired + insert id", "replay.py", "remember_request"),
    ("  integrity token check", "attestation_store.py", "check_token"),
    ("  desired state rebuilt", "desired.py", "current_desired_state"),
    ("    content hash", "desired_state.py", "content_hash"),
    ("  SQL executed (all statements)", "base.py", "_execute_context"),
    ("  commit", "session.py", "commit"),
    ("  JSON answer", "json/provider.py", "response"),
]


def _ms_per_poll(stats: pstats.Stats, polls: int) -> list[tuple[str, str]]:
    raw = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, file_part, func in STAGES:
        total = sum(
            ct
            for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in raw.items()
            if file_part in file and (name == func or (file_part == "~" and func in name))
        )
        rows.append((label, f"{1000 * total / polls:.3f}"))
    return rows


@contextlib.contextmanager
def _db_url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        yield ""
        return
    with private_postgres() as server, fresh_database(server) as url:
        yield url


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--polls", type=int, default=2000)
    p.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, _db_url(args.db) as db_url:
        data, tok = Path(tmp) / "c", Path(tmp) / "tok"
        init = ["--data-dir", str(data), "init", "--token-file", str(tok)]
        controller_main(init + (["--db-url", db_url] if db_url else []))
        controller_main(["--data-dir", str(data), "bundle", "--out", f"{tmp}/b"])
        client = create_app(_settings(data)).test_client()
        auth = {"Authorization": f"Bearer {tok.read_text().strip()}"}
        nodes = []
        for i in range(args.nodes):
            dev = SimDevice.from_bundle(Path(tmp) / "b", f"prof-{i}")
            client.post("/api/v1/nodes/claim", json={"serial": dev.serial}, headers=auth)
            assert (
                client.post("/api/v1/device/register", json=dev.register_body()).status_code == 201
            )
            token = dev.attest_with(client)
            first = client.post(
                "/api/v1/device/config", json=dev.signed({"config_hash": ""}), headers=token
            ).json
            nodes.append((dev, token, _hash_of(first["config"])))
        bodies = [
            (
                nodes[i % len(nodes)][0].signed({"config_hash": nodes[i % len(nodes)][2]}),
                nodes[i % len(nodes)][1],
            )
            for i in range(args.polls)
        ]
        profiler = cProfile.Profile()
        profiler.enable()
        for body, token in bodies:
            r = client.post("/api/v1/device/config", json=body, headers=token)
            assert r.json["unchanged"] is True
        profiler.disable()
    rows = _ms_per_poll(pstats.Stats(profiler), args.polls)
    print(
        f"idle config poll on {args.db}, {args.nodes} nodes, {args.polls} polls (cProfile"
        " adds overhead: compare stages, not totals)"
    )
    print(render_table(("stage", "ms per poll"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
