"""Physical and network ports of the node, off unless the config turns them on.

``NodePorts`` (lockdown.py) is the one object the agent holds: it drives
``node_agent.network`` (firewall, app networks, port maps), ``usb.py`` (sysfs
authorisation) and ``debug_access.py`` (console gettys, SSH keys), and reports a
``PortState`` (state.py) for ``info``. ``python -m node_agent.ports`` shows or tears down.
"""

from node_agent.ports.lockdown import NodePorts, PortsSettings
from node_agent.ports.state import PortState

__all__ = ["NodePorts", "PortState", "PortsSettings"]
