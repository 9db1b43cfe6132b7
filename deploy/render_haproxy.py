"""Render ``deploy/haproxy.cfg.template`` for N controller replicas.

    python -m deploy.render_haproxy --bind :443 --cert /etc/haproxy/outpost.pem \\
        --server 10.0.0.11:8080 --server 10.0.0.12:8080 [--backend-scheme http|https \\
        --ca-file /etc/outpost/root-ca.pem] > /etc/haproxy/haproxy.cfg

``--backend-scheme https`` makes HAProxy speak TLS to the replicas too (today's
``outpost-controller serve`` serves HTTPS only) and verify their certificate against the
controller's root; ``http`` sends plain HTTP on a private network (or loopback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Literal

__all__ = ["TEMPLATE", "HaproxyConfig", "render"]

TEMPLATE = Path(__file__).with_name("haproxy.cfg.template")
BackendScheme = Literal["http", "https"]


@dataclass(frozen=True)
class HaproxyConfig:
    bind: str
    """Frontend address, e.g. ``:443`` or ``127.0.0.1:8443``."""
    cert: Path
    """PEM with the certificate (issued by the controller's root) and its key."""
    servers: Sequence[str]
    """Replica addresses ``host:port``."""
    stats_socket: Path = Path("/run/haproxy/admin.sock")
    backend_scheme: BackendScheme = "https"
    ca_file: Path | None = None
    """The controller's root CA: verifies the replicas' certs (https backends)."""
    backend_name: str = "localhost"
    """The name the replicas' certificates carry (SNI and verified host, https backends)."""
    maxconn: int = 200_000
    server_maxconn: int = 0
    """Requests a replica gets at once (0: no limit; parked long-polls count)."""
    log_target: str = "/dev/log"
    log_level: str = "notice"
    global_extra: list[str] = field(default_factory=list)
    """Extra ``global`` lines, e.g. ``user haproxy``, ``group haproxy``."""

    def server_options(self) -> str:
        opts: list[str] = []
        if self.server_maxconn:
            opts.append(f"maxconn {self.server_maxconn}")
        if self.backend_scheme == "https":
            if self.ca_file is None:
                raise ValueError("https backends need the controller's root CA (ca_file)")
            opts += [
                "ssl check-ssl verify required",
                f"ca-file {self.ca_file}",
                f"sni str({self.backend_name}) verifyhost {self.backend_name}",
            ]
        return " ".join(opts)


def render(cfg: HaproxyConfig) -> str:
    if not cfg.servers:
        raise ValueError("at least one controller replica is needed")
    servers = "\n".join(
        f"    server controller{i + 1} {addr}" for i, addr in enumerate(cfg.servers)
    )
    extra = "".join(f"    {line}\n" for line in cfg.global_extra)
    return Template(TEMPLATE.read_text()).substitute(
        bind=cfg.bind,
        cert=cfg.cert,
        servers=servers,
        stats_socket=cfg.stats_socket,
        maxconn=cfg.maxconn,
        server_options=cfg.server_options(),
        log_target=cfg.log_target,
        log_level=cfg.log_level,
        global_extra=extra,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bind", default=":443")
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--server", action="append", required=True, help="replica host:port")
    p.add_argument("--backend-scheme", choices=("http", "https"), default="https")
    p.add_argument("--ca-file", type=Path, help="the controller's root-ca.pem (https)")
    p.add_argument("--backend-name", default="localhost")
    p.add_argument("--stats-socket", type=Path, default=Path("/run/haproxy/admin.sock"))
    p.add_argument("--server-maxconn", type=int, default=0)
    args = p.parse_args(argv)
    cfg = HaproxyConfig(
        bind=args.bind,
        cert=args.cert,
        servers=args.server,
        stats_socket=args.stats_socket,
        backend_scheme=args.backend_scheme,
        ca_file=args.ca_file,
        backend_name=args.backend_name,
        server_maxconn=args.server_maxconn,
        global_extra=["user haproxy", "group haproxy", "chroot /var/lib/haproxy"],
    )
    sys.stdout.write(render(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
