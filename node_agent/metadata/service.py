"""The agent's side of the metadata service: its content and its process.

:meth:`MetadataService.apply` is called by :class:`~node_agent.network.node.NodeNetwork`
after the bridges exist: it writes every app's ``meta-data.json`` and ``user-data``
(0600) and ``config.json`` (bridge → {planned ip: app uuid}) into ``<state>/metadata``,
then makes the server process (:mod:`node_agent.metadata.server`, in the node's namespace)
listen on exactly the current bridges; it is restarted only when the set of bridges (and
their interface indexes) changes: content is re-read by the running server.
:meth:`reports` returns the latest :class:`~protocol.app_config.AppReport` of each app.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from attestation.files import atomic_write
from node_agent.metadata.content import instance_metadata, meta_data_json, user_data_bytes
from node_agent.network.host import Host
from node_agent.network.plan import NodePlan
from node_agent.runtime.base import NetAttachment
from protocol.app_config import METADATA_PORT, AppReport
from protocol.desired_state import DesiredState

__all__ = ["MetadataService"]

log = logging.getLogger(__name__)

Attachments = Callable[[NodePlan, str], tuple[NetAttachment, ...]]
_READY_S = 10.0


class MetadataService:
    """Content and process of one node's metadata service (see the module docstring)."""

    def __init__(
        self, host: Host, directory: Path, port: int = METADATA_PORT, python: str = ""
    ) -> None:
        self.host = host
        self.dir = Path(directory)
        self.port = port
        self.python = python or sys.executable
        self.pid_file = self.dir / "server.pid"
        self.log_file = self.dir / "server.log"

    def apply(self, plan: NodePlan, desired: DesiredState | None, attachments: Attachments) -> None:
        """Content for every app on an app network, then the server on the plan's bridges."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        apps_dir = self.dir / "apps"
        apps_dir.mkdir(mode=0o700, exist_ok=True)
        bridges: dict[str, dict[str, object]] = {
            n.bridge: {"network": n.name, "clients": {}} for n in plan.networks
        }
        wanted: set[str] = set()
        for app in desired.apps if desired else []:
            nets = attachments(plan, app.uuid)
            if not nets:
                continue
            wanted.add(app.uuid)
            meta = meta_data_json(instance_metadata(app, plan.node_uuid, nets))
            user_data = user_data_bytes(app.user_data) if app.user_data is not None else None
            self._write_app(app.uuid, meta, user_data)
            for att in nets:
                clients = bridges[att.bridge]["clients"]
                assert isinstance(clients, dict)
                clients[att.ip] = app.uuid
        for stale in apps_dir.iterdir():
            if stale.name not in wanted:
                shutil.rmtree(stale, ignore_errors=True)
        for report in (self.dir / "reports").glob("*.json"):
            if report.stem not in wanted:
                report.unlink(missing_ok=True)
        config = json.dumps({"bridges": bridges}, indent=1, sort_keys=True).encode()
        if _read(self.dir / "config.json") != config:
            atomic_write(self.dir / "config.json", config, 0o600)
        self._ensure_process(self._bridge_args(plan))

    def _write_app(self, app_uuid: str, meta: str, user_data: bytes | None) -> None:
        app_dir = self.dir / "apps" / app_uuid
        app_dir.mkdir(mode=0o700, exist_ok=True)
        if _read(app_dir / "meta-data.json") != meta.encode():
            atomic_write(app_dir / "meta-data.json", meta.encode(), 0o600)
        if user_data is None:
            (app_dir / "user-data").unlink(missing_ok=True)
        elif _read(app_dir / "user-data") != user_data:
            atomic_write(app_dir / "user-data", user_data, 0o600)

    def reports(self) -> dict[str, AppReport]:
        """The latest report of each app (unreadable or invalid files are skipped)."""
        out = {}
        for path in sorted((self.dir / "reports").glob("*.json")):
            try:
                out[path.stem] = AppReport.model_validate_json(path.read_bytes())
            except (OSError, ValidationError) as exc:
                log.debug("metadata report %s unusable: %s", path.name, exc)
        return out

    # -- the process ------------------------------------------------------------------

    def _bridge_args(self, plan: NodePlan) -> list[str]:
        if not plan.networks:
            return []
        index = {str(link.get("ifname")): link.get("ifindex") for link in self.host.ip_json("link")}
        return sorted(f"{n.bridge}@{index.get(n.bridge, 0)}" for n in plan.networks)

    def _argv(self, bridges: list[str]) -> list[str]:
        argv = [self.python, "-m", "node_agent.metadata.server", "--dir", str(self.dir)]
        argv += ["--port", str(self.port)]
        for bridge in bridges:
            argv += ["--bridge", bridge]
        return argv

    def _ensure_process(self, bridges: list[str]) -> None:
        argv = self._argv(bridges)
        pid = self.pid()
        if pid is not None and self._cmdline(pid) == argv:
            return
        self.stop()
        if not bridges:
            return
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                self.host.in_ns(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )
        deadline = time.monotonic() + _READY_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.error("metadata service exited (%s): see %s", proc.returncode, self.log_file)
                return
            if self._listening(bridges):
                break
            time.sleep(0.05)
        # ``ip netns exec`` execs the server in place: the pid is the server's
        atomic_write(self.pid_file, f"{proc.pid}\n".encode(), 0o600)
        log.info("metadata service on %d bridge(s) (pid %d)", len(bridges), proc.pid)

    def _listening(self, bridges: list[str]) -> bool:
        out = self.host.run(self.host.in_ns(["ss", "-Hltn", f"sport = :{self.port}"]), check=False)
        return out.stdout.count("169.254.169.254") >= len(bridges)

    def _cmdline(self, pid: int) -> list[str]:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode() for part in raw.split(b"\0") if part]

    def pid(self) -> int | None:
        """The running server's pid (checked against its command line), or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        cmdline = self._cmdline(pid)
        ours = "node_agent.metadata.server" in cmdline and str(self.dir) in cmdline
        if state == "Z" or not ours:
            return None
        return pid

    def stop(self, timeout_s: float = 5.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        log.info("metadata service stopped")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
