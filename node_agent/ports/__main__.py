"""``python -m node_agent.ports``: look at or remove the node's port lockdown by hand.

render DESIRED.(json|yaml) [--uplink IF]...   print the nftables script a config gives
                                              (changes nothing; node-local checks skipped)
teardown --state-dir D --node-uuid U [--netns NS]
                                              remove the agent's table, bridges, dnsmasq
                                              and app namespaces (uninstall)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from node_agent.network import ConfigRefused, NetworkError, NetworkSettings, NodeNetwork, make_plan
from node_agent.network.firewall import build_ruleset
from protocol.desired_state import DesiredState


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node_agent.ports", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="print the ruleset for a desired-state file")
    r.add_argument("desired", type=Path)
    r.add_argument("--uplink", action="append", default=[])
    r.add_argument("--table", default="outpost")
    t = sub.add_parser("teardown", help="remove the agent's firewall table and networks")
    t.add_argument("--state-dir", type=Path, required=True, help="the agent's network state dir")
    t.add_argument("--node-uuid", required=True)
    t.add_argument("--netns")
    t.add_argument("--table", default="outpost")
    args = p.parse_args(argv)
    try:
        if args.cmd == "render":
            doc = DesiredState.model_validate(yaml.safe_load(args.desired.read_text()))
            plan = make_plan(doc, doc.node_uuid)
            print(build_ruleset(plan, args.table, tuple(args.uplink)).script(), end="")
        else:
            settings = NetworkSettings(state_dir=args.state_dir, netns=args.netns, table=args.table)
            NodeNetwork(settings, args.node_uuid).teardown()
    except (OSError, yaml.YAMLError, ValidationError, ConfigRefused, NetworkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
