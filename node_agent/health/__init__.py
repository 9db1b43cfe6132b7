"""App health probes on the node (protocol.health): run them, track the verdict, keep it.

tracker  the verdict of one app from its probe results (thresholds, start period): pure
probes   one probe run: HTTP or TCP to the app's network address, exec in the container
monitor  the probes of every running app on a thread of its own, the verdicts kept in
         ``app-health.json`` across agent restarts, liveness restarts asked of the reconciler
"""

from node_agent.health.monitor import HealthMonitor, ProbeTarget
from node_agent.health.probes import ProbeResult, run_probe
from node_agent.health.tracker import ProbeTracker

__all__ = ["HealthMonitor", "ProbeResult", "ProbeTarget", "ProbeTracker", "run_probe"]
