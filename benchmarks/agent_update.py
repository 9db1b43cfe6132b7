"""Agent self-update time: operator sets the target → the node runs the new version and
it is committed (as the controller sees it in info), split into phases; and the time to
fall back from a release that crashes at start.

One real controller, one real agent under ``outpost-agent-launcher`` (real libvirt and
podman runtimes, no apps, swtpm), releases built from a snapshot of this tree.  Each
good run moves the node one patch version up.  Prints a table.

    .venv/bin/python -m benchmarks.agent_update [--runs 3] [--window 600]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lab.swtpm_ek import LocalEkCa
from protocol.agent_bundle import PACKAGES
from protocol.agent_bundle import build as build_bundle
from tests.fixtures.e2e import E2ENode, e2e_node
from tests.fixtures.podman_engine import make_engine
from tests.fixtures.swtpm import start_swtpm

ROOT = Path(__file__).resolve().parent.parent
SERIAL = "bench-upd-1"


def _wait(what: str, predicate: Callable[[], bool], timeout: float = 900) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _info(node: E2ENode) -> dict[str, Any]:
    return node.node().get("info") or {}


def _state(node: E2ENode) -> dict[str, Any]:
    try:
        return json.loads((node.state_dir / "agent" / "launcher.json").read_text())
    except FileNotFoundError:
        return {}


def _release(node: E2ENode, source: Path, version: str, replace: dict[str, str] | None) -> None:
    tarball = build_bundle(version, node.base / f"{version}.tgz", source, replace)
    data = tarball.read_bytes()
    node.api(
        "POST",
        "/agent-releases",
        params={"version": version, "sha256": hashlib.sha256(data).hexdigest()},
        data=data,
    ).raise_for_status()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--window", type=float, default=600.0)
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="outpost-bench-upd-"))
    (base / "podman").mkdir()
    rows: list[tuple[str, float, float, float]] = []
    engine = tpm = None
    try:
        engine = make_engine(base / "podman")
        ek_ca = LocalEkCa(base / "ek-ca")
        ek_ca.ensure_ca()
        tpm = start_swtpm(base / "tpm", ek_ca)
        with e2e_node(
            base,
            SERIAL,
            SimpleNamespace(images=[]),
            engine,
            "qemu:///system",
            "tcg",
            ek_ca_bundle=ek_ca.bundle_path(),
            tpm=tpm.tcti,
        ) as node:
            source = base / "builtin"
            for package in PACKAGES:
                shutil.copytree(
                    ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
                )
            log = (base / "launcher.log").open("ab")
            cmd = [
                sys.executable,
                "-P",
                "-m",
                "node_agent.launcher",
                "--config",
                str(node.settings),
            ]
            cmd += ["--commit-window", str(args.window), "--log-level", "WARNING"]
            launcher = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**node.env, "PYTHONPATH": str(source)},
            )
            try:
                _wait("the built-in agent attested", lambda: bool(_info(node).get("agent_version")))
                for i in range(args.runs):
                    version = f"0.2.{i}"
                    _release(node, source, version, None)
                    t0 = time.time()
                    node.api(
                        "PUT",
                        f"/nodes/{SERIAL}/agent-release",
                        json={"version": version, "accept_baseline": True},
                    )
                    trial = _wait(
                        "the switch",
                        lambda v=version: (
                            (_state(node).get("trial") or {}).get("version") == v
                            or _state(node).get("current") == v
                        ),
                    )
                    _wait("the commit", lambda v=version: _state(node).get("current") == v)
                    committed = _state(node)["last"]["at"]
                    seen = _wait(
                        "the report",
                        lambda v=version: (
                            _info(node).get("agent_version") == v
                            and (_info(node).get("agent_update") or {}).get("state") == "committed"
                        ),
                    )
                    rows.append((f"update to {version}", trial - t0, committed - trial, seen - t0))
                cli = source / "node_agent" / "cli.py"
                future = "from __future__ import annotations\n"
                broken = cli.read_text().replace(future, f"{future}raise RuntimeError('x')\n")
                _release(node, source, "0.9.0", {"node_agent/cli.py": broken})
                t0 = time.time()
                node.api(
                    "PUT",
                    f"/nodes/{SERIAL}/agent-release",
                    json={"version": "0.9.0", "accept_baseline": True},
                )
                trial = _wait(
                    "the switch",
                    lambda: (
                        (_state(node).get("trial") or {}).get("version") == "0.9.0"
                        or "0.9.0" in _state(node).get("failed", [])
                    ),
                )
                _wait("the fallback", lambda: "0.9.0" in _state(node).get("failed", []))
                failed = _state(node)["last"]["at"]
                seen = _wait(
                    "the failure report",
                    lambda: (_info(node).get("agent_update") or {}).get("state") == "failed",
                )
                rows.append(("crashing 0.9.0", trial - t0, failed - trial, seen - t0))
            finally:
                launcher.send_signal(signal.SIGTERM)
                launcher.wait(60)
    finally:
        if tpm is not None:
            tpm.stop()
        if engine is not None:
            engine.run("rm", "--all", "--force", "--time", "0", check=False)
        shutil.rmtree(base, ignore_errors=True)
    header = ("run", "target→switch (s)", "switch→commit/fallback (s)", "target→reported (s)")
    print(f"{header[0]:<18}{header[1]:>20}{header[2]:>28}{header[3]:>22}")
    for name, a, b, c in rows:
        print(f"{name:<18}{a:>20.1f}{b:>28.1f}{c:>22.1f}")
    good = [r for r in rows if r[0].startswith("update")]
    if good:
        med = [statistics.median(r[i] for r in good) for i in (1, 2, 3)]
        print(f"{'update median':<18}{med[0]:>20.1f}{med[1]:>28.1f}{med[2]:>22.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
