"""``outpost-controller``: init (PKI, database, first admin token and UI admin), serve, bundle,
token, adduser."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import TypeAdapter

from attestation.ek_cert import EkCertError
from attestation.files import atomic_write
from controller.domain.batches import issue_bundle
from controller.domain.tokens import create_token
from controller.domain.users import UserError, create_user
from controller.settings import ControllerSettings
from controller.store.database import Database
from controller.store.key_files import DOWNLOAD_KEY_FILE, ensure_key_file
from controller.store.pki import create_pki, load_pki
from controller.trust.state import fleet_policy
from controller.ui.security import ensure_secret_key
from protocol.downloads import DeviceLabelKey, DeviceLabelValue

__all__ = ["main"]

log = logging.getLogger("outpost.controller")
_SETTINGS_FILE = "controller.json"
_LABEL_KEY: TypeAdapter[str] = TypeAdapter(DeviceLabelKey)
_LABEL_VALUE: TypeAdapter[str] = TypeAdapter(DeviceLabelValue)


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
    ek_bundle = str(args.ek_ca_bundle.resolve()) if args.ek_ca_bundle else ""
    settings = ControllerSettings(
        data_dir=data_dir,
        public_url=args.public_url,
        tls_hosts=hosts,
        node_config_interval_s=args.node_config_interval,
        db_url=args.db_url or "",
        ek_ca_bundle=ek_bundle,
        allow_unpinned_claims=args.allow_unpinned_claims,
        signing_grace_s=args.signing_grace,
    )
    if ek_bundle:
        try:
            settings.load_ek_bundle()
        except EkCertError as exc:
            print(f"error: --ek-ca-bundle: {exc}", file=sys.stderr)
            return 1
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
                "ek_ca_bundle": settings.ek_ca_bundle,
                "allow_unpinned_claims": settings.allow_unpinned_claims,
                "signing_grace_s": settings.signing_grace_s,
            },
            indent=2,
        ).encode(),
        mode=0o600,
    )
    db = Database(settings.database_url)
    db.create_schema()
    ensure_key_file(data_dir / DOWNLOAD_KEY_FILE)
    with db.transaction() as session:
        token = create_token(session, "admin", "admin")
        if args.tpm_less:  # the initial policy, like the first token: part of init
            fleet_policy(session).tpm_less = args.tpm_less
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


def cmd_serve(args: argparse.Namespace) -> int:
    from controller.server import ServeOptions, serve  # gunicorn + gevent: only to serve

    settings = _settings(args.data_dir)
    if args.max_parked_polls is not None:
        settings = dataclasses.replace(settings, max_parked_polls=args.max_parked_polls)
    serve(
        settings,
        ServeOptions(
            host=args.host,
            port=args.port,
            workers=args.workers,
            plain_http=args.plain_http,
            trusted_proxies=args.trusted_proxies,
            max_connections=args.max_connections,
            background=not args.no_background,
            log_level=args.log_level.lower(),
        ),
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Only the periodic jobs (no HTTP), under the same leadership as the replicas."""
    import signal
    import threading

    from controller.app import build_services
    from controller.background import run_jobs

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("outpost-controller worker: running the background jobs", flush=True)
    run_jobs(build_services(_settings(args.data_dir)), stop)
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    labels = _bundle_labels(args.label)
    db = Database(settings.database_url)
    db.create_schema()
    with db.transaction() as session:
        row = issue_bundle(
            session,
            "cli:outpost-controller",
            load_pki(settings.pki_dir),
            args.out,
            settings.public_url,
            args.batch,
            labels,
        )
    print(f"onboarding bundle for batch {args.batch!r} written to {args.out}")
    print(f"onboarding certificate sha256: {row.cert_sha256} (revocable per batch)")
    return 0


def _bundle_labels(items: list[str]) -> dict[str, str]:
    """``--label k=v`` → labels the bundle's nodes report (checked as the agent will)."""
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError("not k=v")
            labels[_LABEL_KEY.validate_python(key)] = _LABEL_VALUE.validate_python(value)
        except ValueError as exc:
            raise SystemExit(f"--label {item!r}: not a label ({exc})") from None
    return labels


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    db = Database(settings.database_url)
    with db.transaction() as session:
        token = create_token(session, args.name, args.role)
    print(token)
    return 0


def cmd_check_db(args: argparse.Namespace) -> int:
    """Print every stored value the API would refuse; exit 1 when there is one."""
    from controller.consistency import check_database

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
    p.add_argument(
        "--ek-ca-bundle",
        type=Path,
        help="PEM file or directory of the TPM makers' CAs that issue EK certificates;"
        " without it no TPM can enrol",
    )
    p.add_argument(
        "--allow-unpinned-claims",
        action="store_true",
        help="let a claim name only a serial: the first node to register with it wins"
        " (audited; for labs and demos, not production)",
    )
    p.add_argument(
        "--tpm-less",
        choices=("allow", "refuse"),
        help="the initial trust policy for nodes without a TPM (default: refuse)",
    )
    p.add_argument(
        "--signing-grace",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="after rotate-signing, keep the old signing key this long before deleting it",
    )
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser(
        "serve", help="serve the device and operator APIs and the web UI (gunicorn, gevent)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes (default: one per core on PostgreSQL; always 1 on SQLite)",
    )
    p.add_argument(
        "--plain-http",
        action="store_true",
        help="serve HTTP: a load balancer in front terminates TLS (docs/deploy.md)",
    )
    p.add_argument(
        "--trusted-proxies",
        type=int,
        default=0,
        metavar="N",
        help="trust X-Forwarded-For/-Proto from the N proxies in front (default: none)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=20000,
        help="connections one process serves at once, parked long-polls included",
    )
    p.add_argument(
        "--max-parked-polls",
        type=int,
        metavar="N",
        help="long-polls one process holds at once (default 25000); more get 503",
    )
    p.add_argument(
        "--no-background",
        action="store_true",
        help="do not run the periodic jobs here (git sync, rollouts)",
    )
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser(
        "worker", help="run only the periodic jobs (git sync, rollouts, pruning), no HTTP"
    )
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("bundle", help="issue an onboarding bundle for a batch of nodes")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch", default="default")
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label the bundle's nodes report about themselves (e.g. site=shop-12)",
    )
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
