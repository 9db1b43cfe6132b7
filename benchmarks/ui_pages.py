"""Server time of the web UI's pages with a large fleet in the database.

In process (Flask test client logged in as an admin, SQLite in a temp dir): each page
is rendered ``--n`` times after one warm-up and the median and p95 wall time of the
whole request (auth, queries, template) is printed.  Nothing is asserted.

    .venv/bin/python -m benchmarks.ui_pages [--nodes 1000] [--n 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.ui_fleet import seed_fleet
from controller.app import create_app
from controller.cli import _settings
from controller.cli import main as controller_main
from controller.domain.users import create_user
from tests.fixtures.browser import UiClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ctl"
        controller_main(
            [
                "--data-dir",
                str(data),
                "init",
                "--token-file",
                str(Path(tmp) / "t"),
                "--admin-password-file",
                str(Path(tmp) / "p"),
            ]
        )
        app = create_app(_settings(data))
        db = app.extensions["outpost"].db
        t0 = time.perf_counter()
        fleet = seed_fleet(db, args.nodes)
        seeded = time.perf_counter() - t0
        with db.transaction() as s:
            create_user(s, "bench", "admin", "bench-password-1")
        client = UiClient(app)
        client.login("bench", "bench-password-1")
        mid = fleet.serials[len(fleet.serials) // 2]
        pages = [
            "/ui/",
            "/ui/nodes",
            "/ui/nodes?page=12",
            "/ui/nodes?sort=last_seen&dir=desc&per=100&page=5",
            f"/ui/nodes?q={mid[:-1]}",
            "/ui/nodes?q=site%3Dlab",
            "/ui/nodes?status=offline",
            "/ui/nodes?status=attention",
            f"/ui/nodes/{fleet.detailed}",
            f"/ui/nodes/{fleet.detailed}?window=24h",
            f"/ui/nodes/{mid}",
            "/ui/onboarding",
            "/ui/apps",
            "/ui/apps?sort=instances&dir=desc",
            "/ui/apps/node-web",
            "/ui/apps/node-cache?page=5",
            "/ui/images",
            "/ui/audit",
            "/ui/audit?action=node.restart&page=3",
        ]
        print(f"{args.nodes} nodes seeded in {seeded:.1f} s; {args.n} renders per page\n")
        print("| page | median ms | p95 ms | KiB |\n|---|---:|---:|---:|")
        for path in pages:
            resp = client.get(path)
            assert resp.status_code == 200, (path, resp.status_code)
            times = []
            for _ in range(args.n):
                t = time.perf_counter()
                client.get(path)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            size = len(resp.data) / 1024
            print(f"| `{path}` | {statistics.median(times):.1f} | {p95:.1f} | {size:.0f} |")


if __name__ == "__main__":
    main()
