"""Typed nftables objects, their ``nft -f`` script, and the atomic replace of one table.

One frozen dataclass per concept (:class:`Match`, :class:`Verdict`, :class:`Rule`,
:class:`Chain`, :class:`Table`); matches and verdicts are made only by constructors that
validate their inputs (interface names, addresses, ports, comments), so no text from a
config reaches the script unchecked. This module holds no policy: which rules a node gets is
:mod:`node_agent.network.firewall`'s business.

:meth:`Table.script` renders the whole table as one transaction::

    table inet outpost            # create if missing (so the delete cannot fail)
    delete table inet outpost     # drop the old one ...
    table inet outpost { ... }    # ... and load the new one, all in one commit

``nft -f`` commits that atomically: a packet meets the old ruleset or the new one, never a
missing table or a half-built one, and a failing script leaves the old ruleset in force.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from node_agent.network.errors import ApplyError
from node_agent.network.host import Host

__all__ = ["Chain", "Match", "Nftables", "Rule", "Table", "Verdict"]

_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}\*?$")
_COMMENT = re.compile(r"^[A-Za-z0-9 _.:/>,()@+=#-]{0,120}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ICMP_TYPES = {"echo-request", "echo-reply", "destination-unreachable", "time-exceeded"}
_ND_TYPES = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"


def _ifname(name: str) -> str:
    if not _IFNAME.match(name):
        raise ValueError(f"invalid interface name or pattern {name!r}")
    return f'"{name}"'


def _port(port: int) -> int:
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r}")
    return int(port)


def comment_text(text: str) -> str:
    if not _COMMENT.match(text):
        raise ValueError(f"invalid nft comment {text!r}")
    return text


@dataclass(frozen=True)
class Match:
    """One match expression; build it with the class methods, not from raw text."""

    text: str

    @classmethod
    def iif(cls, name: str, negate: bool = False) -> Match:
        return cls(f"iifname {'!= ' if negate else ''}{_ifname(name)}")

    @classmethod
    def oif(cls, name: str, negate: bool = False) -> Match:
        return cls(f"oifname {'!= ' if negate else ''}{_ifname(name)}")

    @classmethod
    def iif_in(cls, names: tuple[str, ...]) -> Match:
        if not names:
            raise ValueError("empty interface set")
        return cls("iifname { " + ", ".join(_ifname(n) for n in names) + " }")

    @classmethod
    def loopback(cls) -> Match:
        return cls('iif "lo"')

    @classmethod
    def ct_state(cls, *states: Literal["established", "related", "invalid", "new"]) -> Match:
        return cls("ct state " + ",".join(states))

    @classmethod
    def ct_dnat(cls) -> Match:
        """The connection was destination-NATed (by one of this table's port maps)."""
        return cls("ct status dnat")

    @classmethod
    def dport(cls, proto: Literal["tcp", "udp"], port: int) -> Match:
        if proto not in ("tcp", "udp"):
            raise ValueError(f"invalid protocol {proto!r}")
        return cls(f"{proto} dport {_port(port)}")

    @classmethod
    def daddr(cls, addr: IPv4Address) -> Match:
        return cls(f"ip daddr {IPv4Address(addr)}")

    @classmethod
    def saddr(cls, net: IPv4Network) -> Match:
        return cls(f"ip saddr {IPv4Network(net)}")

    @classmethod
    def local_daddr(cls) -> Match:
        """Addressed to the node itself (not routed through it)."""
        return cls("fib daddr type local")

    @classmethod
    def icmp(cls, *types: str) -> Match:
        bad = set(types) - _ICMP_TYPES
        if bad or not types:
            raise ValueError(f"invalid icmp types {sorted(bad)}")
        return cls("icmp type { " + ", ".join(types) + " }")

    @classmethod
    def ipv6_nd(cls) -> Match:
        """IPv6 neighbour discovery from the link (hop limit 255), which IPv6 needs."""
        return cls(f"icmpv6 type {{ {_ND_TYPES} }} ip6 hoplimit 255")


@dataclass(frozen=True)
class Verdict:
    """What a rule does with a matching packet."""

    text: str

    @classmethod
    def accept(cls) -> Verdict:
        return cls("accept")

    @classmethod
    def drop(cls) -> Verdict:
        return cls("drop")

    @classmethod
    def dnat(cls, addr: IPv4Address, port: int) -> Verdict:
        return cls(f"dnat ip to {IPv4Address(addr)}:{_port(port)}")

    @classmethod
    def masquerade(cls) -> Verdict:
        return cls("masquerade")


@dataclass(frozen=True)
class Rule:
    matches: tuple[Match, ...]
    verdict: Verdict
    comment: str = ""

    def render(self) -> str:
        parts = [m.text for m in self.matches] + [self.verdict.text]
        if self.comment:
            parts.append(f'comment "{comment_text(self.comment)}"')
        return " ".join(parts)


@dataclass(frozen=True)
class Chain:
    """A base chain: attached to a netfilter hook, with a default policy."""

    name: str
    type: Literal["filter", "nat"]
    hook: Literal["prerouting", "input", "forward", "output", "postrouting"]
    priority: Literal["filter", "dstnat", "srcnat"]
    policy: Literal["accept", "drop"]
    rules: tuple[Rule, ...] = ()

    def render(self) -> str:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid chain name {self.name!r}")
        head = f"type {self.type} hook {self.hook} priority {self.priority}; policy {self.policy};"
        body = "".join(f"\t\t{rule.render()}\n" for rule in self.rules)
        return f"\tchain {self.name} {{\n\t\t{head}\n{body}\t}}\n"


@dataclass(frozen=True)
class Table:
    name: str
    chains: tuple[Chain, ...]
    comment: str = ""
    family: Literal["inet"] = "inet"

    @property
    def ref(self) -> str:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid table name {self.name!r}")
        return f"{self.family} {self.name}"

    def render(self) -> str:
        """The table definition alone (``table inet NAME { ... }``)."""
        comment = f'\tcomment "{comment_text(self.comment)}"\n' if self.comment else ""
        return f"table {self.ref} {{\n{comment}{''.join(c.render() for c in self.chains)}}}\n"

    def script(self) -> str:
        """One ``nft -f`` transaction replacing the table (see the module docstring)."""
        return f"table {self.ref}\ndelete table {self.ref}\n{self.render()}"


class Nftables:
    """Applies and reads back the agent's table in the node's namespace."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def replace(self, table: Table) -> float:
        """Atomically replace ``table``; returns the seconds ``nft -f`` took."""
        script = table.script()
        started = time.perf_counter()
        self.host.nft("-f", "-", script=script)
        return time.perf_counter() - started

    def listing(self, ref: str) -> str | None:
        """``nft list table REF`` (None when the table does not exist)."""
        proc = self.host.run(
            self.host.in_ns([self.host.nft_bin, "list", "table", *ref.split()]), check=False
        )
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr or "does not exist" in proc.stderr:
                return None
            raise ApplyError(f"nft list table {ref} failed: {' '.join(proc.stderr.split())}")
        return proc.stdout

    def comment(self, ref: str) -> str | None:
        """The comment of the table in force (None when there is no such table)."""
        text = self.listing(ref)
        if text is None:
            return None
        found = re.search(r'^\s*comment "([^"]*)"', text, re.MULTILINE)
        return found.group(1) if found else ""

    def delete(self, ref: str) -> None:
        """Remove the table (no error when it is already gone)."""
        self.host.nft("-f", "-", script=f"table {ref}\ndelete table {ref}\n")
