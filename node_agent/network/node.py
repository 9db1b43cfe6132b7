"""``NodeNetwork``: the node's firewall, app networks and port maps, made true in one call.

:meth:`NodeNetwork.apply` takes a desired state (or None before any config) and, in this
order:

1. plans it (:mod:`plan`): a refused config raises :class:`ConfigRefused` and changes
   nothing, so the previous ruleset, bridges and leases stay in force (when no table of
   ours is in force at all, e.g. the first apply after a boot, the all-closed one is
   loaded: a refusal never leaves the node open);
2. replaces the agent's nftables table atomically when its content changed (the table's
   comment carries a digest, so an unchanged pass costs one ``nft list``);
3. turns IPv4 forwarding on when there is an app network (the forward policy is drop);
4. makes bridges, container namespaces/veths and dnsmasq match, then removes what the plan
   no longer names; saves the IP allocations;
5. gives the metadata service (:mod:`node_agent.metadata`) every app's metadata and
   user-data and its bridges (a failure there is logged, never fails the network).

The reconciler calls it at the start of every pass (level-triggered: a deleted bridge or a
flushed table comes back) and asks :meth:`workload_networks` for what to put in each app's
:class:`WorkloadSpec`. :meth:`teardown` removes everything (uninstall).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from attestation.files import atomic_write
from node_agent.metadata.service import MetadataService
from node_agent.network.dnsmasq import Dnsmasq
from node_agent.network.errors import ConfigRefused, NetworkError
from node_agent.network.firewall import build_ruleset
from node_agent.network.host import Host
from node_agent.network.links import NETNS_DIR, Links
from node_agent.network.nftables import Nftables
from node_agent.network.plan import NodePlan, app_netns, make_plan
from node_agent.network.settings import NetworkSettings
from node_agent.runtime.base import NetAttachment
from protocol.desired_state import DesiredState

__all__ = ["NodeNetwork", "WorkloadNetworks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkloadNetworks:
    """What one app's WorkloadSpec gets: its interfaces and (containers) its namespace."""

    attachments: tuple[NetAttachment, ...] = ()
    netns_path: str = ""


@dataclass(frozen=True)
class ApplyRecord:
    """The outcome of the last apply (for the port-state report)."""

    generation: int = -1
    ok: bool = False
    error: str = ""
    error_time: float | None = None
    ruleset_seconds: float | None = None
    """How long the last ``nft -f`` replace took (None: not replaced yet)."""
    applied_at: float | None = None


class NodeNetwork:
    """Firewall + app networks + port maps of one node (see the module docstring)."""

    def __init__(self, settings: NetworkSettings, node_uuid: str) -> None:
        self.settings = settings
        self.node_uuid = node_uuid
        self.host = Host(settings.netns, settings.ip_bin, settings.nft_bin)
        self.nft = Nftables(self.host)
        self.links = Links(self.host)
        self.dnsmasq = Dnsmasq(
            self.host, settings.state_dir, settings.dnsmasq_bin, settings.lease_time
        )
        self.metadata = MetadataService(self.host, Path(settings.state_dir) / "metadata")
        self.plan: NodePlan | None = None
        """The plan in force (None until the first successful apply)."""
        self.record = ApplyRecord()
        self._alloc_file = Path(settings.state_dir) / "allocations.json"

    @property
    def table_ref(self) -> str:
        return f"inet {self.settings.table}"

    def apply(self, desired: DesiredState | None) -> NodePlan:
        """Make the node's networking match ``desired``; returns the plan now in force."""
        generation = desired.generation if desired else -1
        try:
            plan = make_plan(
                desired,
                self.node_uuid,
                self._previous_allocations(),
                self.links.foreign_subnets(),
                self.settings.ssh_port,
            )
        except ConfigRefused as exc:
            self._failed(generation, exc)
            self._fail_closed()
            raise
        try:
            seconds = self._apply_plan(plan)
        except NetworkError as exc:
            self._failed(generation, exc)
            self._fail_closed()
            raise
        self.plan = plan
        try:
            self.metadata.apply(plan, desired, _attachments)
        except (OSError, NetworkError) as exc:
            log.error("metadata service not updated: %s", exc)
        self.record = ApplyRecord(
            generation=plan.generation,
            ok=True,
            ruleset_seconds=seconds if seconds is not None else self.record.ruleset_seconds,
            applied_at=time.time(),
        )
        return plan

    def _apply_plan(self, plan: NodePlan) -> float | None:
        table = build_ruleset(plan, self.settings.table, self.settings.uplinks)
        seconds = None
        if self.nft.comment(self.table_ref) != table.comment:
            seconds = self.nft.replace(table)
            log.info(
                "firewall: table %s replaced for generation %d in %.1f ms",
                self.table_ref,
                plan.generation,
                seconds * 1000,
            )
        if plan.networks:
            self.host.sysctl("net/ipv4/ip_forward", "1")
        self.links.ensure_bridges(plan.networks)
        self.links.ensure_container_endpoints(plan)
        self.dnsmasq.apply(plan)
        self.links.remove_stale(plan)
        if plan.allocations() != (self.plan.allocations() if self.plan else None):
            self._save_allocations(plan)
        return seconds

    def _fail_closed(self) -> None:
        """With no table of ours in force (a fresh boot), load the all-closed one."""
        try:
            if self.nft.comment(self.table_ref) is not None:
                return
            closed = NodePlan(node_uuid=self.node_uuid, ssh_port=self.settings.ssh_port)
            self.nft.replace(build_ruleset(closed, self.settings.table, self.settings.uplinks))
            log.warning("firewall: no ruleset was in force; the all-closed one is loaded")
        except NetworkError as exc:
            log.error("firewall: cannot load the all-closed ruleset either: %s", exc)

    def _failed(self, generation: int, exc: Exception) -> None:
        log.error("network config generation %d not applied: %s", generation, exc)
        self.record = ApplyRecord(
            generation=self.record.generation,
            ok=False,
            error=str(exc)[:2000],
            error_time=time.time(),
            ruleset_seconds=self.record.ruleset_seconds,
            applied_at=self.record.applied_at,
        )

    def workload_networks(self, app_uuid: str) -> WorkloadNetworks:
        """The interfaces planned for ``app_uuid`` (empty: the app has no network)."""
        if self.plan is None:
            return WorkloadNetworks()
        endpoints = self.plan.endpoints_of(app_uuid)
        containers = [ep for ep in endpoints if ep.kind == "container"]
        netns = str(NETNS_DIR / app_netns(self.node_uuid, app_uuid)) if containers else ""
        return WorkloadNetworks(_attachments(self.plan, app_uuid), netns)

    def teardown(self) -> None:
        """Remove the table, dnsmasq, bridges, veths and app namespaces (uninstall)."""
        self.nft.delete(self.table_ref)
        self.dnsmasq.stop()
        self.metadata.stop()
        self.links.remove_stale(NodePlan(node_uuid=self.node_uuid))
        self._alloc_file.unlink(missing_ok=True)
        self.plan = None
        self.record = ApplyRecord()
        log.info("network torn down (table %s removed)", self.table_ref)

    # -- allocations on disk ----------------------------------------------------------------

    def _previous_allocations(self) -> dict[str, str]:
        if self.plan is not None:
            return self.plan.allocations()
        try:
            data = json.loads(self._alloc_file.read_text())
        except (OSError, ValueError):
            return {}
        allocations = data.get("allocations") if isinstance(data, dict) else None
        if not isinstance(allocations, dict) or data.get("node_uuid") != self.node_uuid:
            return {}
        return {str(k): str(v) for k, v in allocations.items()}

    def _save_allocations(self, plan: NodePlan) -> None:
        doc = {"node_uuid": self.node_uuid, "allocations": plan.allocations()}
        atomic_write(self._alloc_file, json.dumps(doc, sort_keys=True, indent=1).encode(), 0o644)


def _attachments(plan: NodePlan, app_uuid: str) -> tuple[NetAttachment, ...]:
    """The interfaces ``plan`` gives ``app_uuid``."""
    return tuple(
        NetAttachment(
            network=ep.network,
            bridge=plan.network(ep.network).bridge,
            mac=ep.mac,
            ip=str(ep.ip),
            prefix=plan.network(ep.network).subnet.prefixlen,
            gateway=str(plan.network(ep.network).gateway),
            host_ifname=ep.host_ifname,
        )
        for ep in plan.endpoints_of(app_uuid)
    )
