"""``outpost-controller``: init (PKI, database, first admin token and UI admin), serve, bundle,
token, adduser."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import ssl
import sys
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from attestation.files import atomic_write
from controller.app import create_app
from controller.consistency import check_database
from controller.domain.tokens import create_token
from controller.domain.users import UserError, create_user
from controller.settings import ControllerSettings
from controller.store.database import Database
from controller.store.pki import create_pki, load_pki, write_onboarding_bundle
from controller.ui.security import ensure_secret_key

__all__ = ["main"]

log = logging.getLogger("outpost.controller")
_SETTINGS_FILE = "controller.json"


def _settings(data_dir: Path) -> ControllerSettings:
    path = data_dir / _SETTINGS_FILE
    if not path.exists():
        raise SystemExit(f"{data_dir} is not initialised: run `outpost-controller init` first")
    raw = json.loads(path.read_text())
    raw["tls_hosts"] = tuple(raw.get("tls_hosts", ()))
    if os.environ.get("OUTPOST_DB_URL"):
        raw["db_url"] = os.environ["OUTPOST_DB_URL"]
    return ControllerSettings(data_dir=data_dir, **raw)


def cmd_init(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    hosts = tuple(dict.fromkeys(["localhost", "127.0.0.1", *args.tls_host]))
    settings = ControllerSettings(
        data_dir=data_dir,
        public_url=args.public_url,
        tls_hosts=hosts,
        node_config_interval_s=args.node_config_interval,
        db_url=args.db_url or "",
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    try:
        create_pki(settings.pki_dir, hosts)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    atomic_write(
        data_dir / _SETTINGS_FILE,
        json.dumps(
            {
                "public_url": settings.public_url,
                "tls_hosts": list(hosts),
                "node_config_interval_s": settings.node_config_interval_s,
                "db_url": settings.db_url,
            },
            indent=2,
        ).encode(),
        mode=0o600,
    )
    db = Database(settings.database_url)
    db.create_schema()
    with db.transaction() as session:
        token = create_token(session, "admin", "admin")
    if args.token_file:
        atomic_write(args.token_file, (token + "\n").encode(), mode=0o600)
        print(f"admin API token written to {args.token_file} (mode 0600)")
    else:
        print(f"admin API token (shown once): {token}")
    ensure_secret_key(data_dir)  # web UI session key, 0600 in the data dir
    with db.transaction() as session:
        password = create_user(session, "admin", "admin")
    _hand_out_password("admin", password, args.admin_password_file)
    print(f"controller initialised in {data_dir}; root CA: {settings.pki_dir / 'root-ca.pem'}")
    return 0


def _hand_out_password(username: str, password: str, path: Path | None) -> None:
    if path:
        atomic_write(path, (password + "\n").encode(), mode=0o600)
        print(f"web UI login {username!r}: password written to {path} (mode 0600)")
    else:
        print(f"web UI login {username!r}, password (shown once): {password}")


def cmd_adduser(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    db = Database(settings.database_url)
    db.create_schema()
    try:
        with db.transaction() as session:
            password = create_user(session, args.username, args.role)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _hand_out_password(args.username, password, args.password_file)
    return 0


class _NoDelayHandler(WSGIRequestHandler):
    """Werkzeug's handler with Nagle off: it writes the headers and the body separately,
    and with Nagle on each small answer waited ~40 ms for the client's delayed ACK.
    HTTP/1.1: a client's connection (and its TLS session) is kept for its next request."""

    protocol_version = "HTTP/1.1"
    timeout = 180  # an idle kept connection is closed (longer than the longest long-poll)

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    app = create_app(settings, background=True)  # git sync, rollout engine
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.pki_dir / "tls.pem", settings.pki_dir / "tls.key")
    server = make_server(
        args.host, args.port, app, threaded=True, ssl_context=ctx, request_handler=_NoDelayHandler
    )
    log.info("serving on https://%s:%d", args.host, server.port)
    print(f"outpost-controller listening on https://{args.host}:{server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    out = write_onboarding_bundle(
        load_pki(settings.pki_dir), args.out, settings.public_url, args.batch
    )
    print(f"onboarding bundle for batch {args.batch!r} written to {out}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    db = Database(settings.database_url)
    with db.transaction() as session:
        token = create_token(session, args.name, args.role)
    print(token)
    return 0


def cmd_check_db(args: argparse.Namespace) -> int:
    """Print every stored value the API would refuse; exit 1 when there is one."""
    settings = _settings(args.data_dir)
    with Database(settings.database_url).transaction() as session:
        problems = check_database(session)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outpost-controller", description=__doc__)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("OUTPOST_DATA_DIR", "/var/lib/outpost-controller")),
    )
    parser.add_argument("--log-level", default=os.environ.get("OUTPOST_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create the PKI, the database and the first admin token")
    p.add_argument("--public-url", default="https://127.0.0.1:8443")
    p.add_argument("--tls-host", action="append", default=[], help="extra TLS name/address")
    p.add_argument("--node-config-interval", type=float, default=60.0)
    p.add_argument("--token-file", type=Path, help="write the admin token here (0600)")
    p.add_argument(
        "--admin-password-file", type=Path, help="write the web UI admin's password here (0600)"
    )
    p.add_argument(
        "--db-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in"
        " the data dir); OUTPOST_DB_URL overrides it at serve time",
    )
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("serve", help="serve the device and operator APIs over HTTPS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("bundle", help="issue an onboarding bundle for a batch of nodes")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch", default="default")
    p.set_defaults(fn=cmd_bundle)

    p = sub.add_parser("token", help="create an operator API token")
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=("viewer", "operator", "admin"), default="operator")
    p.set_defaults(fn=cmd_token)

    p = sub.add_parser("adduser", help="add a web UI user (the password is generated)")
    p.add_argument("--username", required=True)
    p.add_argument("--role", choices=("viewer", "operator", "admin"), default="operator")
    p.add_argument("--password-file", type=Path, help="write the password here (0600)")
    p.set_defaults(fn=cmd_adduser)

    p = sub.add_parser(
        "check-db", help="check that every stored value is one the API accepts (read-only)"
    )
    p.set_defaults(fn=cmd_check_db)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
