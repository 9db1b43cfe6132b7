"""The agent's footprint at rest with 10 apps: one lab process node (its own network
namespace, swtpm, podman, the VM runtime on the system libvirtd) running 5 VMs (the testvm
kernel bundle, 96 MiB each) and 5 busybox containers, all RUNNING; then the agent's memory
(RSS, and PSS/USS from smaps_rollup) and its CPU over ``--seconds`` while nothing changes
(config long-polls, attestation, metrics and info reports, reconcile passes go on).

Floor, measured in the same run: a Python process that only imports what the agent cannot
do without (libvirt, ssl and http.client, yaml, cryptography, pydantic) and sleeps.

    .venv/bin/python -m benchmarks.agent_footprint [--seconds 120] [--images-dir build/images]
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.deploy import IMAGES_DIR, deploy
from lab.discover import find_processes
from lab.state import load_state
from lab.watch import Progress

FLOOR_IMPORTS = "import libvirt, ssl, http.client, yaml, cryptography.x509, pydantic"
TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, and Pss/Private (USS) from smaps_rollup, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
            out[line.split(":")[0].lower()] = int(line.split()[1])
    private = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "Pss":
            out["pss"] = int(rest.split()[0])
        elif key in ("Private_Clean", "Private_Dirty"):
            private += int(rest.split()[0])
    out["uss"] = private
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def floor_kib() -> dict[str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", f"{FLOOR_IMPORTS}; import sys, time; print(1, flush=True);"
         " time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"1"
        return memory_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _lab(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        raise SystemExit(f"outpost-lab {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def measure(
    lab_dir: Path, images_dir: Path, seconds: float, smaps_out: Path | None = None
) -> dict[str, float]:
    _lab("up", "--nodes", "1", "--dir", str(lab_dir))
    progress = Progress(io.StringIO())
    for i in range(5):
        body = {
            "name": f"vm{i}",
            "kind": "vm",
            "image": "testvm",
            "resources": {"vcpus": 1, "memory_mib": 96},
        }
        deploy(lab_dir, body, progress, images_dir=images_dir)
        body = {
            "name": f"ct{i}",
            "kind": "container",
            "image": "busybox",
            "command": ["sh", "-c", "while true; do sleep 30; done"],
            "resources": {"vcpus": 1, "memory_mib": 64},
        }
        deploy(lab_dir, body, progress, images_dir=images_dir)
    state = load_state(lab_dir)
    assert state is not None
    (agent,) = [p for p in find_processes(state) if p.role == "agent"]
    pid = agent.ref.pid
    time.sleep(20)  # settle: the last app's first reports and reconcile passes
    c0, t0 = cpu_s(pid), time.monotonic()
    peak = 0
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        peak = max(peak, memory_kib(pid)["vmrss"])
    cpu = (cpu_s(pid) - c0) / (time.monotonic() - t0)
    mem = memory_kib(pid)
    if smaps_out is not None:
        smaps_out.write_text(Path(f"/proc/{pid}/smaps").read_text())
    return {
        "rss": mem["vmrss"] / 1024,
        "anon": mem["rssanon"] / 1024,
        "file": mem["rssfile"] / 1024,
        "peak": peak / 1024,
        "pss": mem["pss"] / 1024,
        "uss": mem["uss"] / 1024,
        "cpu": 100 * cpu,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--images-dir", type=Path, default=IMAGES_DIR)
    p.add_argument("--smaps-out", type=Path, help="write the agent's /proc/PID/smaps here")
    args = p.parse_args()
    floor = floor_kib()
    lab_dir = Path(tempfile.mkdtemp(prefix="outpost-footprint-", dir="/tmp"))
    try:
        r = measure(lab_dir, args.images_dir.resolve(), args.seconds, args.smaps_out)
    finally:
        subprocess.run([sys.executable, "-m", "lab.cli", "down", "--dir", str(lab_dir)],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(lab_dir, ignore_errors=True)
    print(
        f"\n10 apps (5 VMs, 5 containers) RUNNING, agent at rest for {args.seconds:.0f} s\n"
        "| | RSS MiB | anonymous | files | peak RSS MiB | PSS MiB | USS MiB | CPU % of a core |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| agent | {r['rss']:.1f} | {r['anon']:.1f} | {r['file']:.1f} | {r['peak']:.1f} |"
        f" {r['pss']:.1f} | {r['uss']:.1f} | {r['cpu']:.2f} |\n"
        f"| floor: python + {FLOOR_IMPORTS[7:]} | {floor['vmrss'] / 1024:.1f} |"
        f" {floor['rssanon'] / 1024:.1f} | {floor['rssfile'] / 1024:.1f} | | "
        f"{floor['pss'] / 1024:.1f} | {floor['uss'] / 1024:.1f} | |\n"
        f"| agent / floor (RSS) | {r['rss'] / (floor['vmrss'] / 1024):.2f}x | | | | | | |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
