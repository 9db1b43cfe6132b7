"""VM lifecycle timings on the local libvirt daemon (``qemu:///system``; TCG here).

1. define → RUNNING: for a kernel-bundle (testvm.tar) and a qcow2 disk image
   (testvm-disk.qcow2, through its root overlay), the time ``LibvirtRuntime.start`` takes
   (unpack or overlay, define, start: libvirt reports RUNNING), and the time until the guest
   prints its "up" marker on the console (kernel + init under TCG).
2. per-VM agent overhead: wall and CPU time of one steady-state reconcile pass (nothing to
   change) with 0 and N running 128 MiB VMs (the cloud kernel needs > 64 MiB), i.e. what
   each VM costs the agent per pass.

    .venv/bin/python -m benchmarks.vm_lifecycle [--runs 3] [--vms 3]

Needs the images (``python -m images.build``) and a running libvirtd (as the tests start it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from images.build import build_all
from images.manifest import ImageArtifact
from node_agent.image_store import ImageStore
from node_agent.reconciler import Reconciler
from node_agent.runtime.hypervisor_probe import probe_accel
from node_agent.runtime.vm import LibvirtRuntime
from protocol.desired_state import AppSpec, DesiredState, ImageRef
from tests.fixtures.libvirt_daemon import cleanup_node_domains

URI = "qemu:///system"
UP_MARKER = "OUTPOST-TESTVM-UP"


def _store(root: Path, images: list[ImageArtifact]) -> ImageStore:
    store = ImageStore(root / "images", client=None, max_bytes=1 << 30)  # type: ignore[arg-type]
    for image in images:
        shutil.copyfile(image.path, store.path(image.sha256))
        store.path(image.sha256).chmod(0o644)
    return store


def _app(image: ImageArtifact, name: str, memory_mib: int) -> AppSpec:
    return AppSpec(
        uuid=str(uuid.uuid4()),
        name=name,
        kind="vm",
        image=ImageRef(
            name=image.name,
            sha256=image.sha256,
            size=image.size,
            url="https://bench.invalid/x",
            format=image.format,  # type: ignore[arg-type]
        ),
        resources={"memory_mib": memory_mib},  # type: ignore[arg-type]
    )


def _wait_up(console: Path, timeout_s: float = 180.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if console.exists() and UP_MARKER in console.read_text(errors="replace"):
            return time.monotonic()
        time.sleep(0.1)
    raise SystemExit(f"guest never came up: {console}")


def boot_times(
    root: Path, accel: str, image: ImageArtifact, runs: int
) -> list[tuple[float, float]]:
    """(start → RUNNING, start → guest up) per run, each on a fresh node and work dir."""
    out = []
    for _ in range(runs):
        node = str(uuid.uuid4())
        runtime = LibvirtRuntime(URI, node, accel, remove_timeout_s=2.0)
        store = _store(root / node, [image])
        rec = Reconciler(node, store, {"vm": runtime}, root / node / "apps")
        app = _app(image, "bench", 128)
        try:
            t0 = time.monotonic()
            rec.reconcile(DesiredState(node_uuid=node, generation=1, apps=[app]))
            running = time.monotonic()
            up = _wait_up(root / node / "apps" / app.uuid / "console.log")
            out.append((running - t0, up - t0))
        finally:
            cleanup_node_domains(URI, node)
            runtime.close()
    return out


def pass_cost(
    root: Path, accel: str, image: ImageArtifact, vms: int, passes: int = 10
) -> tuple[float, float]:
    """Median (wall ms, CPU ms) of a steady reconcile pass with ``vms`` VMs running."""
    node = str(uuid.uuid4())
    runtime = LibvirtRuntime(URI, node, accel, remove_timeout_s=2.0)
    rec = Reconciler(node, _store(root / node, [image]), {"vm": runtime}, root / node / "apps")
    doc = DesiredState(
        node_uuid=node, generation=1, apps=[_app(image, f"vm{i}", 128) for i in range(vms)]
    )
    try:
        rec.reconcile(doc)
        walls, cpus = [], []
        for _ in range(passes):
            w0, c0 = time.perf_counter(), time.process_time()
            rec.reconcile(doc)
            walls.append((time.perf_counter() - w0) * 1000)
            cpus.append((time.process_time() - c0) * 1000)
        return statistics.median(walls), statistics.median(cpus)
    finally:
        cleanup_node_domains(URI, node)
        runtime.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vms", type=int, default=3)
    args = parser.parse_args()
    manifest = build_all()
    root = Path(tempfile.mkdtemp(prefix="outpost-bench-vm-", dir="/tmp"))
    root.chmod(0o755)
    accel = probe_accel(root / "probe", "auto")
    try:
        print(f"accelerator: {accel}")
        print(f"{'image':<20}{'start→RUNNING (s)':>20}{'start→guest up (s)':>22}")
        for name in ("testvm", "testvm-disk"):
            times = boot_times(root, accel, manifest.get(name), args.runs)
            running = statistics.median(t for t, _ in times)
            up = statistics.median(u for _, u in times)
            fmt = manifest.get(name).format
            print(
                f"{name + ' (' + fmt + ')':<20}{running:>20.2f}{up:>22.1f}"
                f"   (median of {len(times)})"
            )
        print()
        print(f"{'VMs running':<14}{'reconcile pass wall (ms)':>26}{'CPU (ms)':>12}")
        rows = [(n, *pass_cost(root, accel, manifest.get("testvm"), n)) for n in (0, args.vms)]
        for n, wall, cpu in rows:
            print(f"{n:<14}{wall:>26.1f}{cpu:>12.1f}")
        (_, w0, c0), (n, wn, cn) = rows
        if n:
            print(f"per VM: {(wn - w0) / n:.1f} ms wall, {(cn - c0) / n:.1f} ms CPU per pass")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
