"""Node-side settings of the network package (not part of the controller's config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["IfName", "NetworkSettings"]

IfName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")]


class NetworkSettings(BaseModel):
    """Where and how the node's networking is realised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path
    """IP allocations, dnsmasq config, leases and pid file."""
    netns: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """The node's network namespace; None: the agent's own (a real node). Tests use one."""
    uplinks: tuple[IfName, ...] = ()
    """Interfaces where port maps and debug SSH answer; () = every interface that is not an
    app network's (loopback is always allowed for the node itself)."""
    table: str = Field(default="outpost", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """The one nftables table (family inet) the agent owns and replaces atomically."""
    ssh_port: int = Field(default=22, ge=1, le=65535)
    ip_bin: str = "ip"
    nft_bin: str = "nft"
    dnsmasq_bin: str = "dnsmasq"
    lease_time: str = Field(default="1h", pattern=r"^[0-9]+[smhd]?$")
