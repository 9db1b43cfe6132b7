"""Runs the host commands of the network package, in the node's network namespace.

A node is normally the host's own namespace (``netns=None``); tests (and a lab running
several nodes on one machine) give each node a named namespace, and then every ``ip``,
``nft``, ``sysctl`` and ``dnsmasq`` call is made inside it (``ip -n NS`` /
``ip netns exec NS``). Every call is an argument list with a timeout; a failure raises
:class:`ApplyError` with the command and its trimmed stderr.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from node_agent.network.errors import ApplyError

__all__ = ["Host"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Host:
    """Command runner bound to one network namespace (``None``: the agent's own)."""

    netns: str | None = None
    ip_bin: str = "ip"
    nft_bin: str = "nft"
    timeout_s: float = 30.0

    def run(
        self, argv: Sequence[str], *, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as is (already namespaced by the caller)."""
        log.debug("run %s", argv)
        try:
            proc = subprocess.run(
                list(argv),
                input=input_text,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                stdin=None if input_text is not None else subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ApplyError(f"{' '.join(argv)}: {exc}") from exc
        if check and proc.returncode != 0:
            err = " ".join(proc.stderr.split())[:800]
            raise ApplyError(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
        return proc

    def in_ns(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the node namespace."""
        return [self.ip_bin, "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def ip(self, *args: str, netns: str | None = None, check: bool = True) -> str:
        """``ip [-n NS] ARGS``: in the node namespace, or in ``netns`` when given."""
        ns = netns or self.netns
        prefix = [self.ip_bin, "-n", ns] if ns else [self.ip_bin]
        return self.run([*prefix, *args], check=check).stdout

    def ip_json(self, *args: str, netns: str | None = None) -> list[dict[str, Any]]:
        out = self.ip("-j", *args, netns=netns).strip()
        try:
            data = json.loads(out) if out else []
        except json.JSONDecodeError as exc:
            raise ApplyError(f"ip -j {' '.join(args)}: bad JSON: {exc}") from exc
        return [d for d in data if isinstance(d, dict)]

    def nft(self, *args: str, script: str | None = None, check: bool = True) -> str:
        """``nft ARGS`` in the node namespace (``script`` on stdin for ``-f -``)."""
        return self.run(self.in_ns([self.nft_bin, *args]), input_text=script, check=check).stdout

    def sysctl(self, key: str, value: str) -> None:
        """Write ``/proc/sys/<key>`` inside the node namespace (e.g. net/ipv4/ip_forward)."""
        self.run(self.in_ns(["sysctl", "-q", "-w", f"{key.replace('/', '.')}={value}"]))

    def netns_names(self) -> set[str]:
        """Named namespaces (``ip netns list``; they are global, not per node namespace)."""
        out = self.run([self.ip_bin, "netns", "list"]).stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}
