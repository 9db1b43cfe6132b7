"""The lab's controller: ``outpost-controller init`` then ``serve`` on the lab bridge.

Its public URL (and TLS name) is the bridge address, the one address both the host and
the node namespaces reach; the admin API token and the web UI admin's password are
written 0600 into the lab dir, next to ``cli.json`` for ``outpost --config``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from attestation.files import atomic_write
from lab.errors import LabError
from lab.operator import Operator
from lab.procs import alive, spawn
from lab.state import ControllerRecord, ProcRef
from lab.swtpm_ek import EkCaError, lab_ek_ca

__all__ = [
    "controller_argv",
    "init_controller",
    "make_bundle",
    "start_controller",
    "wait_controller",
]

START_TIMEOUT_S = 60.0


def controller_argv(data_dir: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "controller.cli", "--data-dir", str(data_dir), *map(str, args)]


def _run(argv: list[str]) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise LabError(f"`{' '.join(argv[2:5])} …` failed: {(out.stderr or out.stdout).strip()}")


def init_controller(record: ControllerRecord, lab_dir: Path, tls_hosts: list[str]) -> None:
    """A fresh controller data dir (PKI, SQLite, admin token, UI admin) for ``record``.

    It trusts the lab's local EK CA (every lab node's swtpm is made by it), refuses
    TPM-less nodes (the default) and — the lab's one exception, said here and in
    ``outpost-lab up``'s output — allows unpinned claims: the lab claims its nodes'
    serials before their identities exist (QEMU nodes show them only on their console),
    so the first registration of each serial wins, audited as such."""
    tls = [arg for host in tls_hosts for arg in ("--tls-host", host)]
    try:
        ek_bundle = lab_ek_ca(lab_dir).ensure_ca()
    except EkCaError as exc:
        raise LabError(f"cannot make the lab's EK CA: {exc}") from exc
    _run(
        controller_argv(
            record.data_dir, "init",
            "--public-url", record.public_url or record.url,
            *tls,
            "--token-file", record.token_file,
            "--admin-password-file", lab_dir / "ui-admin-password",
            "--node-config-interval", "5",
            "--ek-ca-bundle", ek_bundle,
            "--allow-unpinned-claims",
        )
    )  # fmt: skip
    cli = {"url": record.url, "token_file": str(record.token_file), "ca": str(record.root_ca)}
    atomic_write(lab_dir / "cli.json", json.dumps(cli, indent=2).encode())


def start_controller(record: ControllerRecord, log_path: Path) -> ProcRef:
    """Start ``serve`` (detached); :func:`wait_controller` waits until it answers."""
    argv = controller_argv(
        record.data_dir, "serve", "--host", str(record.host), "--port", str(record.port)
    )
    return spawn(argv, "controller", log_path)[1]


def wait_controller(record: ControllerRecord, ref: ProcRef, log_path: Path) -> None:
    api = Operator(record)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(ref):
            tail = log_path.read_text(errors="replace")[-1500:]
            raise LabError(f"the controller exited at start; {log_path}:\n{tail}")
        if api.healthy():
            return
        time.sleep(0.2)
    raise LabError(f"the controller did not answer within {START_TIMEOUT_S:.0f} s; see {log_path}")


def make_bundle(record: ControllerRecord, out: Path, batch: str = "lab") -> Path:
    """An onboarding bundle (controller URL, root CA, onboarding cert) for the lab's nodes."""
    _run(controller_argv(record.data_dir, "bundle", "--out", out, "--batch", batch))
    return out
