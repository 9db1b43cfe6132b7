"""``outpost``: the operator CLI over the controller's operator API.

Connection settings come from flags, then ``OUTPOST_URL`` / ``OUTPOST_TOKEN`` /
``OUTPOST_CA`` / ``OUTPOST_TOKEN_FILE``, then a JSON file given by ``--config``
or ``OUTPOST_CONFIG`` with keys url, token_file, ca.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from outpost_cli.agent_release import add_agent_release_commands
from outpost_cli.onboarding import add_onboarding_commands
from outpost_cli.remote import add_remote_commands
from outpost_cli.resources import UsageError, add_resource_commands, emit
from outpost_cli.rollout import add_rollout_commands
from outpost_cli.site_policy import add_site_policy_commands
from outpost_cli.transport import HttpClient, Response, Unreachable

__all__ = ["main"]


class CliError(Exception):
    """The controller refused (exit 1) or could not be reached (exit 3)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Client:
    def __init__(self, url: str, token: str, ca: str | None) -> None:
        self.url = url.rstrip("/")
        self.verify: str | bool = ca if ca else True  # the remote sessions' WebSocket TLS
        self.http = HttpClient(self.url, token, ca)

    def raw(self, method: str, path: str, **kwargs: Any) -> Response:
        """The answer to ``/api/v1<path>`` as it came (status, bytes)."""
        try:
            return self.http.request(method, f"/api/v1{path}", **kwargs)
        except Unreachable as exc:
            raise CliError(f"cannot reach the controller at {self.url}: {exc}", 3) from exc

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.raw(method, path, **kwargs)
        try:
            data = resp.json()
        except ValueError:
            data = {"error": {"message": resp.text[:300]}}
        if resp.status >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            lines = [f"{resp.status} {err.get('code', '')}: {err.get('message', '')}"]
            for d in err.get("details") or []:
                lines.append(f"  {d.get('field')}: {d.get('error')}")
            raise CliError("\n".join(lines))
        return data


def _connect(args: argparse.Namespace) -> Client:
    conf: dict[str, Any] = {}
    conf_path = args.config or os.environ.get("OUTPOST_CONFIG")
    if conf_path:
        try:
            conf = json.loads(Path(conf_path).read_text())
        except OSError as exc:
            raise UsageError(f"cannot read the config file {conf_path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise UsageError(f"the config file {conf_path} is not JSON: {exc}") from exc
        if not isinstance(conf, dict):
            raise UsageError(f"the config file {conf_path} must hold a JSON object")
    url = args.url or os.environ.get("OUTPOST_URL") or conf.get("url")
    ca = args.ca or os.environ.get("OUTPOST_CA") or conf.get("ca")
    token = args.token or os.environ.get("OUTPOST_TOKEN")
    token_file = os.environ.get("OUTPOST_TOKEN_FILE") or conf.get("token_file")
    if not token and token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {token_file}: {exc.strerror}") from exc
    if not url or not token:
        raise UsageError("set the controller URL and token (--url/--token, OUTPOST_* or --config)")
    return Client(url, token, ca)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [header, *rows])


def _structured(args: argparse.Namespace, data: Any) -> bool:
    """With ``-o json|yaml`` (or a command's ``--json``) print ``data`` so and say True."""
    output = "json" if getattr(args, "json", False) else args.output
    if output == "table":
        return False
    emit(data, output)
    return True


def _app_states(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in (node.get("info") or {}).get("apps", [])}


def cmd_nodes(c: Client, args: argparse.Namespace) -> None:
    nodes = c.call("GET", "/nodes")["nodes"]
    if _structured(args, nodes):
        return
    rows = []
    for n in nodes:
        states = _app_states(n)
        apps = ", ".join(
            f"{a}={states.get(a, {}).get('state', 'PENDING')}" for a in n["assigned_apps"]
        )
        rows.append([n["serial"], n["state"], n["uuid"] or "-", n["last_seen"] or "-", apps])
    print(_table(rows, ["SERIAL", "STATE", "UUID", "LAST SEEN", "APPS"]))


def cmd_node(c: Client, args: argparse.Namespace) -> None:
    n = c.call("GET", f"/nodes/{args.node}")
    if _structured(args, n):
        return
    info = n.get("info") or {}
    print(f"serial:      {n['serial']}\nuuid:        {n['uuid']}\nstate:       {n['state']}")
    print(f"last seen:   {n['last_seen']}")
    node_gen = info.get("config_generation", "-")
    print(f"generation:  {n['config_generation']} (controller) / {node_gen} (node)")
    print(f"hypervisor:  {info.get('hypervisor', '-')}")
    labels = ", ".join(f"{k}={v}" for k, v in (n.get("labels") or {}).items()) or "-"
    own = ", ".join(f"{k}={v}" for k, v in (n.get("device_labels") or {}).items()) or "-"
    print(f"labels:      {labels}\nreported:    {own}  (selectors: device/<key>)")
    states = _app_states(n)
    rows = []
    for a in n["assigned_apps"]:
        st = states.get(a, {})
        health = (st.get("health") or {}).get("status", "-")
        why = st.get("error") or (st.get("health") or {}).get("last_failure") or st.get("waiting")
        rows.append([a, st.get("state", "PENDING"), health, st.get("restarts", 0), why or ""])
    print(_table(rows, ["APP", "STATE", "HEALTH", "RESTARTS", "ERROR / WAITING"]))


def cmd_image_add(c: Client, args: argparse.Namespace) -> None:
    path = Path(args.file)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    with path.open("rb") as fh:
        img = c.call(
            "POST",
            "/images",
            params={"name": args.name, "format": args.format, "sha256": digest.hexdigest()},
            data=fh,
            headers={"Content-Type": "application/octet-stream"},
        )
    if _structured(args, img):
        return
    print(f"image {img['name']} {img['format']} sha256:{img['sha256']} {img['size']} bytes")


def cmd_images(c: Client, args: argparse.Namespace) -> None:
    imgs = c.call("GET", "/images")["images"]
    if _structured(args, imgs):
        return
    print(
        _table(
            [[i["name"], i["format"], i["size"], i["sha256"]] for i in imgs],
            ["NAME", "FORMAT", "SIZE", "SHA256"],
        )
    )


def cmd_app_create(c: Client, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {
        "name": args.name,
        "kind": args.kind,
        "image": args.image,
        "resources": {"vcpus": args.vcpus, "memory_mib": args.memory},
    }
    if args.command:
        body["command"] = args.command
    if args.env:
        body["env"] = dict(e.split("=", 1) for e in args.env)
    if args.secret_env:
        body["secret_env"] = dict(e.split("=", 1) for e in args.secret_env)
    if args.user_data_file is not None:
        try:
            body["user_data"] = Path(args.user_data_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--user-data-file {args.user_data_file}: {exc}", 2) from exc
        body["user_data_secret"] = args.user_data_secret
    app = c.call("POST", "/apps", json=body)
    if _structured(args, app):
        return
    print(f"app {app['name']} ({app['kind']}) created: {app['uuid']}")


def cmd_apps(c: Client, args: argparse.Namespace) -> None:
    apps = c.call("GET", "/apps")["apps"]
    if _structured(args, apps):
        return
    print(
        _table(
            [[a["name"], a["kind"], a["image"], a["desired"], a["uuid"]] for a in apps],
            ["NAME", "KIND", "IMAGE", "DESIRED", "UUID"],
        )
    )


def cmd_app_delete(c: Client, args: argparse.Namespace) -> None:
    if _structured(args, c.call("DELETE", f"/apps/{args.name}")):
        return
    print(f"app {args.name} deleted")


def cmd_assign(c: Client, args: argparse.Namespace) -> None:
    if _structured(args, c.call("POST", f"/nodes/{args.node}/apps", json={"app": args.app})):
        return
    print(f"{args.app} assigned to {args.node}")


def cmd_unassign(c: Client, args: argparse.Namespace) -> None:
    if _structured(args, c.call("DELETE", f"/nodes/{args.node}/apps/{args.app}")):
        return
    print(f"{args.app} removed from {args.node}")


def cmd_audit(c: Client, args: argparse.Namespace) -> None:
    events = c.call("GET", "/audit", params={"limit": args.limit})["events"]
    if _structured(args, events):
        return
    print(
        _table(
            [
                [e["at"], e["actor"], e["action"], e["target"], json.dumps(e["detail"])]
                for e in events
            ],
            ["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"],
        )
    )


def cmd_events(c: Client, args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"limit": args.limit}
    for key in ("node", "app", "kind"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.since:
        params["since_s"] = _seconds(args.since)
    rows = c.call("GET", "/events", params=params)["events"]
    if _structured(args, rows):
        return
    print(
        _table(
            [[e["at"], e["node"] or "-", e["app"] or "-", e["kind"], e["message"]] for e in rows],
            ["AT", "NODE", "APP", "KIND", "MESSAGE"],
        )
    )


def _seconds(text: str) -> float:
    """``90``, ``15m``, ``2h``, ``1d`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: a number of seconds, or like 15m, 2h, 1d") from exc


# -- trust: attestation states, baseline, revocation, policy, signing rotation ------------
def cmd_trust(c: Client, args: argparse.Namespace) -> None:
    if args.node:
        t = c.call("GET", f"/trust/nodes/{args.node}")
        if _structured(args, t):
            return
        for key in ("serial", "uuid", "state", "result", "reason", "tpm", "device_key_in_tpm"):
            print(f"{key + ':':<19}{t[key]}")
        print(f"{'attested at:':<19}{t['attested_at'] or '-'}")
        print(f"{'baseline agent:':<19}{', '.join(t['baseline'].get('agent', [])) or '-'}")
        return
    nodes = c.call("GET", "/trust/nodes")["nodes"]
    if _structured(args, nodes):
        return
    rows = [
        [
            n["serial"],
            n["state"],
            n["result"] or "-",
            n["tpm"] or "-",
            "yes" if n["device_key_in_tpm"] else "no",
            n["attested_at"] or "-",
            n["reason"],
        ]
        for n in nodes
    ]
    print(_table(rows, ["SERIAL", "TRUST", "RESULT", "TPM", "KEY IN TPM", "ATTESTED", "REASON"]))


def cmd_accept_baseline(c: Client, args: argparse.Namespace) -> None:
    t = c.call("POST", f"/trust/nodes/{args.node}/accept-baseline")
    if _structured(args, t):
        return
    print(f"new baseline for {t['serial']}: agent {', '.join(t['baseline'].get('agent', []))}")


def cmd_revoke(c: Client, args: argparse.Namespace) -> None:
    t = c.call("POST", f"/trust/nodes/{args.node}/revoke", json={"reason": args.reason})
    if _structured(args, t):
        return
    print(f"{t['serial']} revoked: every request it makes is now refused")


def cmd_trust_policy(c: Client, args: argparse.Namespace) -> None:
    patch: dict[str, Any] = {}
    if args.tpm_less:
        patch["tpm_less"] = args.tpm_less
    if args.allow_agent is not None:
        patch["agent_allowlist"] = args.allow_agent
    if args.token_ttl is not None:
        patch["token_ttl_s"] = args.token_ttl
    policy = (
        c.call("PATCH", "/trust/policy", json=patch) if patch else c.call("GET", "/trust/policy")
    )
    emit(policy, "json" if args.output == "table" else args.output)


def cmd_rotate_signing(c: Client, args: argparse.Namespace) -> None:
    r = c.call("POST", "/trust/rotate-signing")
    if _structured(args, r):
        return
    print(
        f"config-signing cert rotated: {r['previous_sha256'][:16]}… → {r['signing_sha256'][:16]}…"
    )


def add_trust_commands(sub: Any) -> None:
    s = sub.add_parser("trust", help="attestation state of the nodes (or of one node)")
    s.add_argument("node", nargs="?", help="serial or uuid")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_trust)
    s = sub.add_parser("accept-baseline", help="accept a node's measurements as its baseline")
    s.add_argument("node", help="serial or uuid")
    s.set_defaults(fn=cmd_accept_baseline)
    s = sub.add_parser("revoke", help="revoke a node: all its requests are refused")
    s.add_argument("node", help="serial or uuid")
    s.add_argument("--reason", required=True)
    s.set_defaults(fn=cmd_revoke)
    s = sub.add_parser("trust-policy", help="show or change the fleet trust policy")
    s.add_argument("--tpm-less", choices=("allow", "refuse"))
    s.add_argument("--allow-agent", nargs="*", metavar="SHA256", help="agent code allowlist")
    s.add_argument("--token-ttl", type=float, metavar="SECONDS")
    s.set_defaults(fn=cmd_trust_policy)
    sub.add_parser(
        "rotate-signing", help="issue a new config-signing cert (nodes follow via certs)"
    ).set_defaults(fn=cmd_rotate_signing)


def _ports_lines(ports: dict[str, Any]) -> list[str]:
    """The node's reported port state (``info.ports``) as text for ``outpost ports``."""
    if ports.get("lockdown") == "off":
        return ["port lockdown is OFF on this node: nothing is enforced (agent setting `ports`)"]
    fw = ports.get("firewall") or {}
    ms = fw.get("apply_ms")
    applied = f", last apply {ms} ms" if ms is not None else ""
    state = "enforced" if fw.get("enforced") else "NOT enforced"
    lines = [
        f"firewall:  {state} (table {fw.get('table', '-')}, generation"
        f" {fw.get('generation', '-')}{applied})"
    ]
    if fw.get("error"):
        lines.append(f"refused:   {fw['error']}")
    debug = ports.get("debug") or {}
    onoff = {True: "on", False: "off"}
    lines.append(
        f"debug:     ssh {onoff[bool(debug.get('ssh'))]} ({debug.get('ssh_keys', 0)} keys),"
        f" console login {onoff[bool(debug.get('console'))]}"
        f" ({debug.get('console_method', '-')})"
    )
    usb = ports.get("usb") or {}
    new_devices = "off" if usb.get("authorized_default_off") else "NOT off"
    lines.append(
        f"usb:       policy {usb.get('policy', '-')}, new devices {new_devices}"
        f" ({usb.get('buses', 0)} buses)"
    )
    errors = [e for e in (debug.get("error"), usb.get("error")) if e]
    if errors:
        lines.append(f"errors:    {'; '.join(errors)}")
    open_rows = [
        [f"{p['port']}/{p['proto']}", p.get("purpose", ""), p.get("target", "")]
        for p in ports.get("open_ports") or []
    ]
    lines += [
        "",
        _table(open_rows, ["OPEN PORT", "PURPOSE", "TARGET"]) if open_rows else "open ports: none",
    ]
    nets = [
        [
            n["name"],
            n["subnet"],
            n["gateway"],
            "yes" if n.get("nat") else "no",
            ", ".join(n.get("apps", [])),
        ]
        for n in ports.get("networks") or []
    ]
    if nets:
        lines += ["", _table(nets, ["NETWORK", "SUBNET", "GATEWAY", "NAT", "APPS"])]
    devices = [
        [
            d["bus_id"],
            d["vendor_product"],
            "yes" if d.get("authorized") else "no",
            d.get("assigned_to", "") or ("hub" if d.get("hub") else ""),
            d.get("product", ""),
        ]
        for d in usb.get("devices") or []
    ]
    if devices:
        lines += ["", _table(devices, ["USB", "ID", "AUTHORIZED", "FOR", "PRODUCT"])]
    return lines


def cmd_ports(c: Client, args: argparse.Namespace) -> None:
    n = c.call("GET", f"/nodes/{args.node}")
    ports = (n.get("info") or {}).get("ports")
    if _structured(args, ports):
        return
    if not ports:
        print(f"{args.node}: no port state reported yet")
    else:
        print("\n".join(_ports_lines(ports)))


def add_ports_command(sub: Any) -> None:
    s = sub.add_parser("ports", help="a node's effective port policy (firewall, USB, debug)")
    s.add_argument("node", help="serial or uuid")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_ports)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="outpost", description="Outpost operator CLI")
    p.add_argument("--config", help="JSON file with url, token_file, ca")
    p.add_argument("--url")
    p.add_argument("--token")
    p.add_argument("--ca", help="CA bundle to verify the controller (its root CA)")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_resource_commands(sub)

    sub.add_parser("nodes", help="list nodes and their apps' states").set_defaults(fn=cmd_nodes)
    s = sub.add_parser("node", help="show one node")
    s.add_argument("node", help="serial or uuid")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_node)
    add_onboarding_commands(sub)

    s = sub.add_parser("image-add", help="upload an image to the controller's datastore")
    s.add_argument("file")
    s.add_argument("--name", required=True)
    s.add_argument("--format", required=True, choices=("kernel-bundle", "oci-archive"))
    s.set_defaults(fn=cmd_image_add)
    sub.add_parser("images", help="list images").set_defaults(fn=cmd_images)

    s = sub.add_parser("app-create", help="define an app")
    s.add_argument("--name", required=True)
    s.add_argument("--kind", required=True, choices=("vm", "container"))
    s.add_argument("--image", required=True)
    s.add_argument("--vcpus", type=int, default=1)
    s.add_argument("--memory", type=int, default=128, help="MiB")
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment hidden from viewers and from the audit log",
    )
    s.add_argument("--user-data-file", metavar="FILE", help="the app's user-data (≤ 64 KiB)")
    s.add_argument("--user-data-secret", action="store_true", help="never show the user-data again")
    s.add_argument("command", nargs="*")
    s.set_defaults(fn=cmd_app_create)
    sub.add_parser("apps", help="list apps").set_defaults(fn=cmd_apps)
    s = sub.add_parser("app-delete", help="delete an app (removes it from every node)")
    s.add_argument("name")
    s.set_defaults(fn=cmd_app_delete)

    for name, fn, helptext in (
        ("assign", cmd_assign, "run an app on a node"),
        ("unassign", cmd_unassign, "stop running an app on a node"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("node", help="serial or uuid")
        s.add_argument("app")
        s.set_defaults(fn=fn)
    s = sub.add_parser("events", help="what happened on nodes and their apps (newest first)")
    s.add_argument("--node", help="serial or uuid")
    s.add_argument("--app", help="app name")
    s.add_argument("--kind", help="a kind or its prefix: app, app.crashloop, node.offline, …")
    s.add_argument("--since", help="only the last … (seconds, or 15m, 2h, 1d)")
    s.add_argument("--limit", type=int, default=100)
    s.set_defaults(fn=cmd_events)
    s = sub.add_parser("audit", help="recent operator actions")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(fn=cmd_audit)
    add_trust_commands(sub)
    add_ports_command(sub)
    add_agent_release_commands(sub)
    add_rollout_commands(sub)
    add_site_policy_commands(sub)
    add_remote_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(None if getattr(args, "offline", False) else _connect(args), args)
    except CliError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except UsageError as exc:
        return _fail(args, str(exc), 2)
    return 0


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """An error on stderr: one line of text, or ``{"error", "exit_code"}`` with -o json."""
    if args.output == "json":
        print(json.dumps({"error": message, "exit_code": code}), file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
