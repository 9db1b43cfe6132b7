"""``qemu`` nodes: the lab's glue to :class:`lab.qemu_node.QemuNode`.

Each node boots the node image (``build/node/outpost-node.qcow2`` from ``make images-node``;
``up`` does not build it: that takes minutes) with its own vTPM, and reaches the
controller only through QEMU's guestfwd at :data:`lab.qemu_node.GUEST_CONTROLLER_URL`,
so the lab's controller listens on 127.0.0.1 and names that URL as its public one.
``QemuNode`` keeps pid files in the node's dir, so ``down`` (another process) stops a node
by building a ``QemuNode`` on the same dir.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.procs import proc_ref
from lab.state import LabState, NodeRecord
from lab.swtpm_ek import lab_ek_ca
from lab.watch import Progress

__all__ = [
    "check_ready",
    "default_image",
    "guest_controller",
    "start_qemu_nodes",
    "stop_qemu_nodes",
]

STOP_TIMEOUT_S = 30.0


def _module() -> Any:
    try:
        from lab import qemu_node
    except ImportError as exc:
        raise LabError(f"qemu nodes are not available here: {exc}") from exc
    return qemu_node


def default_image() -> Path:
    try:
        from images.node_image import DEFAULT_OUT_DIR, IMAGE_FILE
    except ImportError as exc:
        raise LabError(f"the node image recipe is not available: {exc}") from exc
    return Path(DEFAULT_OUT_DIR) / IMAGE_FILE


def check_ready(image: Path) -> None:
    """Refuse early (before anything starts) when qemu nodes cannot boot."""
    _module()
    if not image.is_file():
        raise LabError(
            f"node image not built: {image} is missing; run `make images-node`"
            " (python -m images.node_image, several minutes the first time)"
        )


def guest_controller() -> tuple[str, int]:
    """(host, port) of the controller as the guests see it."""
    mod = _module()
    return mod.GUEST_CONTROLLER_IP, mod.GUEST_CONTROLLER_PORT


def _node(state: LabState, node: NodeRecord, bundle: Path) -> Any:
    mod = _module()
    assert state.qemu is not None
    return mod.QemuNode(
        mod.QemuNodeConfig(
            name=node.name,
            work_dir=node.dir,
            image=state.qemu.image,
            controller_host=str(state.controller.host),
            controller_port=state.controller.port,
            onboarding_bundle=bundle,
            memory_mib=state.qemu.memory_mib,
            vcpus=state.qemu.vcpus,
            serial_number=node.serial,
            accel=state.qemu.accel,
            ek_ca_dir=lab_ek_ca(state.dir).dir,
        )
    )


def start_qemu_nodes(state: LabState, bundle: Path, progress: Progress, save: Any) -> None:
    """Boot every node (QEMU returns at once; onboarding is watched by ``up``)."""
    for node in state.nodes:
        qn = _node(state, node, bundle)
        try:
            qn.start()
        finally:
            node.processes = {
                role: proc_ref(pid, f"{role} {node.name}") for role, pid in qn.pids().items()
            }
            save(state)
        progress.say(f"{node.name}: booting under QEMU (console {qn.console_log})")


def stop_qemu_nodes(state: LabState) -> list[str]:
    """Power every node off (ACPI, then kill after the timeout); the names stopped."""
    bundle = state.dir / "bundle"

    def stop(node: NodeRecord) -> str:
        qn = _node(state, node, bundle)
        was_running = qn.is_running()
        qn.stop(timeout_s=STOP_TIMEOUT_S)
        return f"qemu {node.name}" if was_running else ""

    if state.qemu is None:
        return []
    with ThreadPoolExecutor(max_workers=8) as pool:
        return [name for name in pool.map(stop, state.nodes) if name]
