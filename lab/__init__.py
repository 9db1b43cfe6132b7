"""The testers' lab: a controller and a fleet of nodes on one machine (``outpost-lab``).

``outpost-lab up --nodes N`` starts a controller (SQLite, its own data dir) and N nodes,
claims their serials and waits until every node has onboarded and attested over its own
software TPM; ``status`` shows the fleet, ``deploy`` runs an app on every node and ``down``
removes everything the lab made.  Two node kinds:

- ``process``: one agent process per node, in its own network namespace (a veth on the lab
  bridge; nftables inside lets it reach the controller and nothing else), with its own state
  dir and its own ``swtpm``, all containers in the lab's private podman store;
- ``qemu``: a whole node image booted under QEMU (:mod:`lab.qemu_node`).

The controller and the agents are separate processes started through their command lines;
everything the lab started is recorded in ``<lab dir>/lab.json`` (written atomically before
and after each step) so ``status`` and ``down`` work from another process, also after a
crashed ``up``.
"""

from lab.errors import LabError, UsageError
from lab.state import LabState, NodeRecord, load_state

__all__ = ["LabError", "LabState", "NodeRecord", "UsageError", "load_state"]
