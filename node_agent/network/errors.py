"""The network package's exceptions.

::

    NetworkError                 base: something about the node's networking failed
    ├── ConfigRefused            the desired state cannot be realised here; nothing was changed
    └── ApplyError               a command (nft, ip, dnsmasq) failed; the message has its stderr

A refused config never touches the node: the ruleset, bridges and dnsmasq in force stay as
they were. An ApplyError from ``nft -f`` also leaves the previous ruleset (the replace is one
kernel transaction); one from ``ip``/dnsmasq may leave links half-made, which the next
apply repairs.
"""

from __future__ import annotations

__all__ = ["ApplyError", "ConfigRefused", "NetworkError"]


class NetworkError(Exception):
    """Base of the node networking failures."""


class ConfigRefused(NetworkError):
    """The desired state is invalid for this node (the message says which field and why)."""


class ApplyError(NetworkError):
    """A host command failed while applying a valid plan."""
