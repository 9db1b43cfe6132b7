"""``outpost-lab up``: a controller and N nodes, every node onboarded and attested.

Steps, each recorded in ``lab.json`` before it runs and once it is done: check the host
(root, tools, the port, no lab already here) → lab bridge → controller (init, serve) →
podman store → per node: namespace, swtpm → claim every serial → start every agent → wait
(one line per node state change) until every node is attested.  A failure while setting
up tears down what was made (``down``) and says why; a timeout while waiting leaves the
lab running for inspection.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from ipaddress import IPv4Address
from pathlib import Path

from lab import netlab
from lab.controller_proc import init_controller, make_bundle, start_controller, wait_controller
from lab.discover import find_processes
from lab.down import teardown
from lab.errors import LabError
from lab.libvirt_domains import ensure_daemon
from lab.operator import Operator
from lab.podman_store import create_store, release_store
from lab.process_node import prepare_node, start_agent, start_swtpm, wait_swtpm
from lab.qemu_fleet import check_ready, default_image, guest_controller, start_qemu_nodes
from lab.spec import UpRequest, lab_id_for
from lab.state import (
    ControllerRecord,
    LabState,
    NetworkRecord,
    NodeRecord,
    QemuRecord,
    lab_lock,
    load_state,
    now_iso,
    save_state,
)
from lab.swtpm_ek import lab_ek_ca
from lab.watch import NodeView, Progress, wait_for_nodes

__all__ = ["check_port_free", "node_names", "up"]

_REQUIRED_TOOLS = {"process": ("ip", "nft", "nsenter", "swtpm", "podman"), "qemu": ("swtpm",)}
_KEEP = {"lab.lock"}


def node_names(count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"lab-node-{i:0{width}d}" for i in range(1, count + 1)]


def _running(state: LabState) -> list[str]:
    return [p.ref.name for p in find_processes(state)]


def check_port_free(port: int) -> None:
    """Refuse a controller port something listens on (or is bound to).

    SO_REUSEADDR, as the controller's own server socket has: sockets in TIME_WAIT from a
    lab just taken ``down`` do not count (the controller binds past them)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LabError(
                    f"controller port {port} is in use: pick another with --controller-port"
                ) from None
            raise


def _check_host(req: UpRequest) -> None:
    if req.kind == "process" and os.geteuid() != 0:
        raise LabError("process nodes need root (network namespaces, nftables): run as root")
    missing = [t for t in _REQUIRED_TOOLS[req.kind] if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} (run `make setup`)")
    check_port_free(req.controller_port)


def _check_dir(lab_dir: Path) -> LabState | None:
    """The dir must be new, empty, or an old lab that is down (its contents are replaced);
    returns that old lab's state."""
    state = load_state(lab_dir)
    if state is not None and state.phase != "down":
        running = _running(state)
        what = f"running: {', '.join(running[:5])}" if running else "nothing of it runs"
        raise LabError(
            f"a lab is already in {lab_dir} (phase {state.phase}; {what});"
            f" run `outpost-lab down --dir {lab_dir}` first"
        )
    if state is None and lab_dir.exists() and {p.name for p in lab_dir.iterdir()} - _KEEP:
        raise LabError(f"{lab_dir} is not empty and holds no lab: choose another --dir")
    return state


def _clear(lab_dir: Path) -> None:
    for entry in lab_dir.iterdir():
        if entry.name in _KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def up(req: UpRequest, progress: Progress) -> LabState:
    lab_dir = req.dir
    lab_dir.mkdir(parents=True, exist_ok=True)
    with lab_lock(lab_dir):
        old = _check_dir(lab_dir)
        _check_host(req)
        if req.kind == "qemu":
            check_ready(req.image or default_image())
        if old is not None and old.podman is not None:
            release_store(old.podman)  # no overlay mount may stay under what is removed
        _clear(lab_dir)
        lab_dir.chmod(0o755)
        state = _initial_state(req)
        save_state(state)
        try:
            _build(state, req, progress)
        except BaseException as exc:  # also Ctrl-C: leave nothing half-made behind
            reason = str(exc) if isinstance(exc, LabError) else repr(exc)
            state.error = reason[:4000]
            state.phase = "failed"
            save_state(state)
            progress.say("setting up failed; removing what was made")
            teardown(state, progress)
            raise
        state.phase = "up"
        save_state(state)
        try:
            _wait_attested(state, req, progress)
        except LabError as exc:
            state.error = str(exc)[:4000]
            save_state(state)
            raise LabError(
                f"{exc}\nThe lab is left running for inspection (outpost-lab status);"
                f" `outpost-lab down --dir {lab_dir}` removes it."
            ) from None
        return state


def _initial_state(req: UpRequest) -> LabState:
    lab_id = lab_id_for(req.dir)
    network = None
    if req.kind == "process":
        subnet = netlab.choose_subnet(lab_id)
        network = NetworkRecord(
            bridge=netlab.bridge_name(lab_id),
            subnet=subnet,
            host_ip=subnet.network_address + 1,
            open_ports=list(req.open_ports),
        )
    qemu, public_url = None, ""
    if req.kind == "qemu":
        qemu = QemuRecord(
            image=req.image or default_image(),
            memory_mib=req.memory_mib,
            vcpus=req.vcpus,
            accel=req.accel,
        )
        guest_host, guest_port = guest_controller()
        public_url = f"https://{guest_host}:{guest_port}"
    controller = ControllerRecord(
        host=network.host_ip if network else IPv4Address("127.0.0.1"),
        port=req.controller_port,
        public_url=public_url,
        data_dir=req.dir / "controller",
        token_file=req.dir / "admin-token",
    )
    state = LabState(
        lab_id=lab_id,
        dir=req.dir,
        kind=req.kind,
        phase="starting",
        created_at=now_iso(),
        libvirt_uri=req.libvirt_uri,
        controller=controller,
        network=network,
        qemu=qemu,
    )
    for index, name in enumerate(node_names(req.nodes), start=1):
        node = NodeRecord(name=name, serial=name, kind=req.kind, dir=req.dir / "nodes" / name)
        if network is not None:
            node.netns = netlab.netns_name(lab_id, index)
            node.host_veth = netlab.host_veth_name(lab_id, index)
            node.ip = netlab.node_ip(network, index)
        state.nodes.append(node)
    return state


def _build(state: LabState, req: UpRequest, progress: Progress) -> None:
    if state.network is not None:
        netlab.create_bridge(state.network)
        progress.say(f"lab network {state.network.bridge} {state.network.subnet}")
    ctl = state.controller
    tls_hosts = [str(ctl.host)] + ([guest_controller()[0]] if req.kind == "qemu" else [])
    init_controller(ctl, state.dir, tls_hosts)
    log = state.dir / "controller.log"
    state.controller.process = start_controller(state.controller, log)
    save_state(state)
    wait_controller(state.controller, state.controller.process, log)
    progress.say(f"controller up at {state.controller.url} (log {log})")
    progress.say(
        "trust: EK certificates checked against the lab's EK CA, TPM-less nodes refused;"
        " lab only: serials claimed unpinned (first registration wins, audited)"
    )
    api = Operator(state.controller)
    bundle = make_bundle(state.controller, state.dir / "bundle")
    for node in state.nodes:
        api.claim(node.serial)
    if req.kind == "qemu":
        start_qemu_nodes(state, bundle, progress, save_state)
        return
    state.podman = create_store(state.dir / "podman")
    save_state(state)
    ensure_daemon(state.libvirt_uri)
    for node in state.nodes:
        prepare_node(state, node, state.controller.port)
        node.processes["swtpm"] = start_swtpm(node, lab_ek_ca(state.dir))
        save_state(state)
    for node in state.nodes:
        wait_swtpm(node, node.processes["swtpm"])
    for node in state.nodes:
        node.processes["agent"] = start_agent(state, node, bundle)
        save_state(state)
        progress.say(f"{node.name}: agent started (netns {node.netns}, {node.ip})")


def _wait_attested(state: LabState, req: UpRequest, progress: Progress) -> None:
    def describe(view: NodeView) -> str:
        if view.attested:
            return "attested"
        if view.trust not in ("unattested", ""):
            return f"trust {view.trust}: {view.trust_reason}"
        if view.registered:
            return f"onboarded (uuid {view.uuid[:8]})"
        return ""

    def record_uuid(name: str, view: NodeView) -> None:
        node = state.node(name)
        if view.uuid and node.uuid != view.uuid:
            node.uuid = view.uuid
            save_state(state)

    wait_for_nodes(
        state,
        Operator(state.controller),
        progress,
        describe,
        lambda v: v.attested,
        req.timeout_s,
        on_change=record_uuid,
    )
    state.error = ""
    save_state(state)
    progress.say(f"{len(state.nodes)}/{len(state.nodes)} nodes attested")
