"""The node's networking: firewall (one nftables table), app networks and port maps.

Public API (see docs/architecture.md, "Ports off")::

    net = NodeNetwork(settings, node_uuid)
    net.apply(desired) -> NodePlan                # firewall (atomic), bridges, dnsmasq
    net.workload_networks(app_uuid) -> WorkloadNetworks   # for the app's WorkloadSpec
    net.teardown()                                # uninstall

Modules: ``plan`` (desired → typed plan, pure), ``nftables`` (typed ruleset objects, atomic
replace), ``firewall`` (plan → ruleset, pure), ``links`` (bridges, container namespaces and
veths), ``dnsmasq`` (DHCP/DNS), ``host`` (commands in the node's namespace), ``node``.
"""

from node_agent.network.errors import ApplyError, ConfigRefused, NetworkError
from node_agent.network.node import ApplyRecord, NodeNetwork, WorkloadNetworks
from node_agent.network.plan import NodePlan, make_plan
from node_agent.network.settings import NetworkSettings

__all__ = [
    "ApplyError",
    "ApplyRecord",
    "ConfigRefused",
    "NetworkError",
    "NetworkSettings",
    "NodeNetwork",
    "NodePlan",
    "WorkloadNetworks",
    "make_plan",
]
