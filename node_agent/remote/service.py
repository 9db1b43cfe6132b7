"""The agent's remote-access service: long-poll the controller for sessions, run each.

    RemoteAccess(RemoteContext.from_agent(agent)).run(stop)   in its own thread

``POST /api/v1/remote/device/poll`` (signed) is held by the controller until a session is
offered (or ``long_poll_s`` passes).  Each offer runs in a thread of its own: it dials the
controller, then checks the grant (:mod:`grant_check`) and opens the endpoint only if it
holds; a refusal is sent to the operator through the relay.  At most ``max_sessions`` run
at once; sessions the controller says are over are closed even if their stream lingers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from pydantic import ValidationError

from attestation import envelope
from attestation.pki import Identity
from node_agent.client import ControllerError
from node_agent.https import HttpsClient, TransportError
from node_agent.remote.endpoints import (
    Endpoint,
    LibvirtConsole,
    OpenFailed,
    PipeCommand,
    PtyCommand,
    TcpForward,
)
from node_agent.remote.grant_check import GrantRefused, check_grant
from node_agent.remote.session import SessionLink, run_session
from protocol.desired_state import AppSpec, DesiredState
from protocol.remote import RemotePoll, RemotePollAnswer, SessionEnded, SessionOffer

__all__ = ["RemoteAccess", "RemoteContext"]

log = logging.getLogger(__name__)
DEFAULT_EXEC = ("/bin/sh",)


@dataclass
class RemoteContext:
    """What remote access needs from the agent (read at each use: the desired state and
    the trusted signers change while the agent runs)."""

    controller_url: str
    node_uuid: str
    device: Callable[[], Identity]
    root_ca: Callable[[], Path]
    desired: Callable[[], DesiredState | None]
    signers: Callable[[], list[x509.Certificate]]
    libvirt_uri: str = "qemu:///system"
    podman_argv: Callable[[Sequence[str]], list[str]] = lambda args: ["podman", *args]
    podman_env: dict[str, str] = field(default_factory=dict)
    app_address: Callable[[str], str | None] = lambda _uuid: None
    """An app's address on its first app network (None: on no network)."""
    max_sessions: int = 16
    http_timeout_s: float = 30.0

    @classmethod
    def from_agent(cls, agent: Any) -> RemoteContext:
        """Bound to a started :class:`node_agent.agent.Agent`."""
        settings = agent.settings
        runtimes = agent.reconciler.runtimes if agent.reconciler is not None else {}
        cli = getattr(runtimes.get("container"), "cli", None)  # the podman runtime's CLI
        ports = agent.ports

        def address(app_uuid: str) -> str | None:
            if ports is None:
                return None
            with contextlib.suppress(Exception):
                attachments = ports.workload_networks(app_uuid).attachments
                return attachments[0].ip if attachments else None
            return None

        return cls(
            controller_url=agent.client.url,
            node_uuid=agent.identity.node_uuid,
            device=lambda: agent.identity.device,
            root_ca=lambda: agent.identity.root_ca,
            desired=lambda: agent.desired,
            signers=lambda: agent._verifier.signers if agent._verifier is not None else [],
            libvirt_uri=settings.libvirt_uri,
            podman_argv=cli.argv if cli is not None else (lambda a: ["podman", *a]),
            podman_env=dict(cli.env) if cli is not None else {},
            app_address=address,
            max_sessions=settings.remote_max_sessions,
            http_timeout_s=settings.http_timeout_s,
        )


MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Largest poll answer read (64 offers with their signed grants are far below)."""
CLOSING_POLL_S = 1.0
"""The pause before the next poll while ended sessions are still open here."""


class RemoteAccess:
    def __init__(self, ctx: RemoteContext, long_poll_s: float = 55.0) -> None:
        self.ctx = ctx
        self.long_poll_s = long_poll_s
        self._http = HttpsClient()
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._cancel: dict[str, threading.Event] = {}
        """Set to end a running session (the controller named it in ``close``)."""
        self.polls = 0
        """Polls sent (for tests and the heartbeat)."""

    # -- the controller's device endpoints -----------------------------------------------
    def _post(self, path: str, body: dict[str, Any], wait_s: float = 0.0) -> dict[str, Any]:
        resp = self._http.request(
            "POST",
            f"{self.ctx.controller_url.rstrip('/')}/api/v1/remote/device/{path}",
            json_body=envelope.seal(body, self.ctx.device()),
            ca_file=str(self.ctx.root_ca()),
            timeout_s=self.ctx.http_timeout_s + wait_s,
            max_bytes=MAX_ANSWER_BYTES,
        )
        if resp.status_code >= 400 or resp.truncated:
            raise ControllerError(resp.status_code, "refused", resp.text[:200])
        data = resp.json()
        if not isinstance(data, dict):
            raise ValueError("the controller's answer is not a JSON object")
        return data

    def poll(self, wait_s: float) -> RemotePollAnswer:
        with self._lock:
            open_ids = [sid for sid, t in self._running.items() if t.is_alive()]
        body = RemotePoll(wait_s=wait_s, open_sessions=open_ids[:256])
        self.polls += 1
        return RemotePollAnswer.model_validate(
            self._post("poll", body.model_dump(mode="json"), wait_s)
        )

    def report_end(self, msg: SessionEnded) -> None:
        self._post("ended", msg.model_dump(mode="json"))

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        delay = 2.0
        while not stop.is_set():
            try:
                answer = self.poll(self.long_poll_s)
            except (TransportError, ControllerError, ValueError, ValidationError) as exc:
                status = exc.status if isinstance(exc, ControllerError) else None
                wait = 600.0 if status == 404 else delay
                log.warning("remote access: poll failed (next in %.0f s): %s", wait, exc)
                delay = min(delay * 2, 60.0)
                stop.wait(wait)
                continue
            delay = 2.0
            for session_id in answer.close:
                self.end(session_id)
            for offer in answer.offers:
                self.start(offer)
            if answer.close and not answer.offers:
                # sessions the controller ended are still winding down here (their own
                # connection tells them): asked again at once, it would answer at once
                stop.wait(CLOSING_POLL_S)

    def start(self, offer: SessionOffer) -> bool:
        """Run an offered session in its own thread (False when full or already running)."""
        with self._lock:
            self._running = {k: t for k, t in self._running.items() if t.is_alive()}
            self._cancel = {k: e for k, e in self._cancel.items() if k in self._running}
            if offer.session_id in self._running:
                return False
            if len(self._running) >= self.ctx.max_sessions:
                log.warning("remote access: %d sessions open; offer refused", len(self._running))
                return False
            thread = threading.Thread(
                target=self._session,
                args=(offer,),
                name=f"remote-{offer.session_id[:8]}",
                daemon=True,
            )
            self._running[offer.session_id] = thread
            self._cancel[offer.session_id] = threading.Event()
        thread.start()
        return True

    def end(self, session_id: str) -> bool:
        """End a session running here (False when none runs under that id)."""
        with self._lock:
            thread, cancel = self._running.get(session_id), self._cancel.get(session_id)
        if thread is None or cancel is None or not thread.is_alive():
            return False
        cancel.set()
        return True

    def running(self) -> int:
        with self._lock:
            return sum(1 for t in self._running.values() if t.is_alive())

    def _session(self, offer: SessionOffer) -> None:
        expires = [0.0]

        def open_endpoint() -> Endpoint:
            endpoint, expires[0] = self.open_endpoint(offer)
            return endpoint

        link = SessionLink(
            self.ctx.controller_url, self.ctx.root_ca(), self.ctx.device(), self.report_end
        )
        with self._lock:
            cancel = self._cancel.get(offer.session_id)
        try:
            run_session(link, offer.session_id, open_endpoint, lambda: expires[0], cancel)
        except Exception:
            log.exception("remote session %s crashed", offer.session_id)

    # -- opening what the grant allows -------------------------------------------------------
    def open_endpoint(self, offer: SessionOffer) -> tuple[Endpoint, float]:
        """Check the grant, then open the endpoint: (endpoint, the grant's expiry)."""
        try:
            claims, app = check_grant(
                offer, self.ctx.signers(), self.ctx.node_uuid, self.ctx.desired()
            )
        except GrantRefused as exc:
            raise OpenFailed(f"refused by the node: {exc}") from exc
        log.info(
            "remote session %s: %s %s for %s until %.0f",
            offer.session_id,
            claims.kind,
            claims.app_name or "(node)",
            claims.grantee,
            claims.expires_at,
        )
        return self._endpoint(offer, app), claims.expires_at

    def _endpoint(self, offer: SessionOffer, app: AppSpec | None) -> Endpoint:
        from node_agent.runtime.podman_args import container_name
        from node_agent.runtime.vm_policy import domain_name

        if offer.kind == "shell":
            shell = shutil.which("bash") or "/bin/sh"
            home = "/root" if os.path.isdir("/root") else "/"
            return PtyCommand([shell, "-l"], offer.cols, offer.rows, {"HOME": home}, cwd=home)
        assert app is not None
        if offer.kind == "console":
            return LibvirtConsole(self.ctx.libvirt_uri, domain_name(self.ctx.node_uuid, app.uuid))
        if offer.kind == "exec":
            command = list(offer.command) or list(DEFAULT_EXEC)
            tty = ["-t"] if offer.tty else []
            argv = self.ctx.podman_argv(
                ["exec", "-i", *tty, container_name(self.ctx.node_uuid, app.uuid), *command]
            )
            if offer.tty:
                return PtyCommand(argv, offer.cols, offer.rows, self.ctx.podman_env)
            return PipeCommand(argv, self.ctx.podman_env)
        address = self.ctx.app_address(app.uuid)
        if address is None or offer.port is None:
            raise OpenFailed(f"{app.name} is on no app network: nothing to forward to")
        return TcpForward(address, offer.port)
