"""A ``process`` node: a network namespace, a swtpm and an agent process.

Both processes run in the node's namespace (``nsenter --net``; mounts stay the host's, so
the podman store and the libvirt socket are the same for every node).  The swtpm listens
on the namespace's own loopback (server 2321, ctrl 2322: the TSS wants ctrl = server+1),
so every node has its own TPM at the same address and no node can reach another's.  The
agent runs ``python -m node_agent.cli --config <node dir>/agent.json run`` with its own
state dir and its port lockdown on (firewall, app networks: all inside the node's
namespace, so the port state is reported as on a real node; USB and the consoles are the
host's and stay unmanaged); its output goes to ``<node dir>/agent.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from attestation.files import atomic_write
from lab import netlab
from lab.errors import LabError
from lab.procs import alive, spawn
from lab.state import LabState, NodeRecord, ProcRef
from lab.swtpm_ek import EkCaError, LocalEkCa

__all__ = ["SWTPM_PORT", "agent_settings", "prepare_node", "start_agent", "start_swtpm"]

SWTPM_PORT = 2321
SWTPM_START_S = 15.0
RECONCILE_INTERVAL_S = 5.0


def prepare_node(lab: LabState, node: NodeRecord, controller_port: int) -> None:
    """The node's directories and its network namespace."""
    assert lab.network is not None and node.ip is not None and node.host_veth
    node.dir.mkdir(parents=True, exist_ok=True)
    node.dir.chmod(0o755)  # VM apps: QEMU (libvirt-qemu) must traverse to the state dir
    node.state_dir.mkdir(exist_ok=True)
    node.state_dir.chmod(0o755)
    netlab.create_node_netns(lab.network, node.netns, node.host_veth, node.ip, controller_port)


def listening(pid: int, port: int) -> bool:
    """``pid``'s network namespace has a TCP socket listening on 127.0.0.1:``port``."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1] == want and f[3] == "0A" for f in (line.split() for line in lines))


def swtpm_ready(pid: int, port: int) -> bool:
    """swtpm (``pid``) listens on its TPM port and its control port (``port`` + 1): it may
    answer on the control port before the TPM port listens."""
    return listening(pid, port) and listening(pid, port + 1)


def start_swtpm(node: NodeRecord, ek_ca: LocalEkCa | None = None) -> ProcRef:
    """Start the node's swtpm in its namespace (returns at once; :func:`wait_swtpm` waits
    for its ports). With ``ek_ca`` a new TPM state is first given EK certificates from
    that CA, as a real TPM has from its maker."""
    if shutil.which("swtpm") is None:
        raise LabError("swtpm is not installed: run `make setup` (Debian swtpm, swtpm-tools)")
    state = node.dir / "swtpm"
    state.mkdir(exist_ok=True)
    if ek_ca is not None:
        try:
            ek_ca.manufacture(state)
        except EkCaError as exc:
            raise LabError(f"{node.name}: {exc}") from exc
    argv = netlab.in_netns(
        node.netns,
        [
            "swtpm", "socket", "--tpm2",
            "--server", f"type=tcp,port={SWTPM_PORT},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={SWTPM_PORT + 1},bindaddr=127.0.0.1",
            "--tpmstate", f"dir={state}",
            "--flags", "not-need-init,startup-clear",
        ],
    )  # fmt: skip
    _, ref = spawn(argv, f"swtpm {node.name}", node.dir / "swtpm.log")
    return ref


def wait_swtpm(node: NodeRecord, ref: ProcRef) -> None:
    deadline = time.monotonic() + SWTPM_START_S
    while time.monotonic() < deadline:
        if not alive(ref):
            log = (node.dir / "swtpm.log").read_text(errors="replace")[-800:]
            raise LabError(f"{node.name}: swtpm exited at start: {log}")
        if swtpm_ready(ref.pid, SWTPM_PORT):
            return
        time.sleep(0.05)
    raise LabError(f"{node.name}: swtpm did not listen within {SWTPM_START_S:.0f} s")


def agent_settings(lab: LabState, node: NodeRecord, bundle: Path) -> dict[str, object]:
    """The agent's settings file (validated by the agent itself at start)."""
    assert lab.podman is not None
    return {
        "state_dir": str(node.state_dir),
        "bundle_dir": str(bundle),
        "serial": node.serial,
        "libvirt_uri": lab.libvirt_uri,
        "hypervisor": "tcg",  # no KVM probe per node (a tiny VM boot each)
        "tpm": f"swtpm:host=127.0.0.1,port={SWTPM_PORT}",
        "podman_global_args": lab.podman.global_args,
        "reconcile_interval_s": RECONCILE_INTERVAL_S,
        # the agent's port lockdown, in the node's own namespace (its table, app bridges
        # and app namespaces); USB and the consoles are the host's: left alone
        "ports": {
            "network": {"state_dir": str(node.state_dir / "network")},
            "usb_sysfs_root": None,
            "console_root": None,
        },
    }


def start_agent(lab: LabState, node: NodeRecord, bundle: Path) -> ProcRef:
    assert lab.podman is not None
    settings = node.dir / "agent.json"
    atomic_write(settings, json.dumps(agent_settings(lab, node, bundle), indent=2).encode())
    argv = netlab.in_netns(
        node.netns, [sys.executable, "-m", "node_agent.cli", "--config", settings, "run"]
    )
    env = {**os.environ, **lab.podman.env}
    return spawn(argv, f"agent {node.name}", node.agent_log, env=env)[1]
