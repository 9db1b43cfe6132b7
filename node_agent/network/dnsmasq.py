"""DHCP and DNS for the app networks: one dnsmasq per node, configured from a plan.

dnsmasq listens only on the app bridges (``bind-dynamic``, never loopback or an uplink) and
hands out only static leases (``dhcp-range=…,static``): a VM gets the address planned for
its MAC, an unknown MAC gets nothing. Every endpoint is resolvable as ``<app>.<network>``.
DNS is forwarded upstream only when some network has NAT (the others have no way out).

The daemon runs in the node namespace, is found again through its pid file (checked against
``/proc/<pid>/cmdline``, so a recycled pid is never signalled) and is restarted only when
its configuration text changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from attestation.files import atomic_write
from node_agent.network.errors import ApplyError
from node_agent.network.host import Host
from node_agent.network.plan import NodePlan

__all__ = ["Dnsmasq", "render_config"]

log = logging.getLogger(__name__)


def render_config(plan: NodePlan, state_dir: Path, lease_time: str = "1h") -> str:
    """dnsmasq.conf for ``plan`` (empty string when there is no app network)."""
    if not plan.networks:
        return ""
    lines = [
        "# written by the Outpost agent (node_agent.network.dnsmasq); do not edit",
        "port=53",
        "bind-dynamic",
        "except-interface=lo",
        "no-hosts",
        "domain-needed",
        "bogus-priv",
        "dhcp-authoritative",
        f"dhcp-leasefile={state_dir / 'dnsmasq.leases'}",
        f"pid-file={state_dir / 'dnsmasq.pid'}",
        f"log-facility={state_dir / 'dnsmasq.log'}",
    ]
    if not any(n.nat for n in plan.networks):
        lines.append("no-resolv")
    for net in plan.networks:
        tag = net.bridge
        lines += [
            f"interface={net.bridge}",
            f"dhcp-range=set:{tag},{net.subnet.network_address},static,{net.subnet.netmask},"
            f"{lease_time}",
            f"dhcp-option=tag:{tag},option:router,{net.gateway}",
            f"dhcp-option=tag:{tag},option:dns-server,{net.gateway}",
        ]
    for ep in plan.endpoints:
        if ep.kind == "vm":
            lines.append(f"dhcp-host={ep.mac},{ep.ip},{ep.app_name}")
        lines.append(f"host-record={ep.app_name}.{ep.network},{ep.ip}")
    return "\n".join(lines) + "\n"


class Dnsmasq:
    """The node's dnsmasq process, configured from ``<state_dir>/dnsmasq.conf``."""

    def __init__(
        self, host: Host, state_dir: Path, binary: str = "dnsmasq", lease_time: str = "1h"
    ) -> None:
        self.host = host
        self.state_dir = Path(state_dir)
        self.binary = binary
        self.lease_time = lease_time
        self.conf = self.state_dir / "dnsmasq.conf"
        self.pid_file = self.state_dir / "dnsmasq.pid"

    def apply(self, plan: NodePlan) -> None:
        """Start, restart (config changed) or stop dnsmasq to match ``plan``."""
        text = render_config(plan, self.state_dir, self.lease_time)
        if not text:
            self.stop()
            return
        current = self.conf.read_text() if self.conf.exists() else None
        if current == text and self.pid() is not None:
            return
        self.stop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.conf, text.encode(), 0o644)
        self.host.run(self.host.in_ns([self.binary, f"--conf-file={self.conf}"]))
        if self.pid() is None:
            raise ApplyError(f"dnsmasq did not start (see {self.state_dir / 'dnsmasq.log'})")
        log.info("dnsmasq (re)started for %d network(s)", len(plan.networks))

    def pid(self) -> int | None:
        """The pid of our running dnsmasq, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        if state == "Z" or f"--conf-file={self.conf}".encode() not in cmdline:
            return None
        return pid

    def stop(self, timeout_s: float = 5.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        log.info("dnsmasq stopped")
