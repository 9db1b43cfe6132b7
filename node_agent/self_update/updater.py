"""The agent's side of self-update.

Called from the agent's main loop.  When the desired state names another release than
the running one, a worker thread installs it (``installer``) and then asks the launcher
to switch (``pending.json``).  An agent started on trial (``OUTPOST_AGENT_TRIAL``)
commits (``commit.json``) once it has attested successfully and the controller has
accepted an info report from it; the launcher falls back by itself otherwise.  Each
step is reported in info as ``agent_update``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from cryptography import x509

from attestation import pki
from node_agent.client import ControllerClient, ControllerError, Unreachable
from node_agent.config_verifier import ConfigVerifier
from node_agent.image_store import ImageError, ImageStore
from node_agent.self_update.installer import install
from node_agent.self_update.manifest import ManifestRefused
from node_agent.self_update.state import ENV_TRIAL, Outcome, Paths, StateError, write_marker
from node_agent.self_update.version import AGENT_VERSION
from protocol.agent_bundle import BundleError
from protocol.desired_state import MAX_AGENT_BUNDLE_BYTES, AgentTarget, DesiredState
from protocol.messages import AgentUpdateStatus, UpdateState

__all__ = ["RETRY_S", "SelfUpdater"]

log = logging.getLogger(__name__)
RETRY_S = 30.0
"""Wait before trying again after a download failure (the controller may be away)."""
TRANSIENT = (ImageError, Unreachable, ControllerError, OSError)


class SelfUpdater:
    def __init__(
        self,
        paths: Paths,
        client: ControllerClient,
        verifier: ConfigVerifier,
        running: str = AGENT_VERSION,
        trial: bool | None = None,
    ) -> None:
        self.paths = paths
        self.client = client
        self.verifier = verifier
        self.running = running
        self.trial = os.environ.get(ENV_TRIAL) == running if trial is None else trial
        self.store = ImageStore(paths.root / "downloads", client, MAX_AGENT_BUNDLE_BYTES)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._done: AgentTarget | None = None
        self._retry_at = 0.0
        self._committed = False
        self._status: AgentUpdateStatus | None = None
        if self.trial:
            self._set(running, "testing", "running on trial until it attests and reports")
        else:
            last = self._state_last()
            if last is not None:
                self._set(last.version, last.result, last.reason, last.at)

    @classmethod
    def from_env(cls, client: ControllerClient, verifier: ConfigVerifier) -> SelfUpdater | None:
        """An updater when the agent runs under the launcher, else None."""
        paths = Paths.from_env()
        return cls(paths, client, verifier) if paths is not None else None

    def _state_last(self) -> Outcome | None:
        try:
            return self.paths.load().last
        except StateError as exc:
            log.error("self-update: %s", exc)
            return None

    def _set(
        self, version: str, state: UpdateState, reason: str = "", at: float | None = None
    ) -> None:
        with self._lock:
            self._status = AgentUpdateStatus(
                version=version,
                state=state,
                reason=reason[:1024],
                at=time.time() if at is None else at,
            )

    def status(self) -> AgentUpdateStatus | None:
        with self._lock:
            return self._status

    # -- install ----------------------------------------------------------------
    def consider(self, desired: DesiredState | None) -> None:
        """Start installing the desired release if it is new (one worker at a time)."""
        target = desired.settings.agent if desired is not None else None
        if target is None or target.version == self.running:
            return
        if self.trial and not self._committed:  # the launcher decides first
            return
        if self._worker is not None and self._worker.is_alive():
            return
        if target == self._done or time.monotonic() < self._retry_at:
            return
        try:
            state = self.paths.load()
        except StateError as exc:
            self._set(target.version, "failed", f"launcher state unreadable: {exc}")
            return
        if target.version in state.failed:
            reason = "failed its trial earlier; publish a new version"
            if state.last is not None and state.last.version == target.version:
                reason = state.last.reason
            self._set(target.version, "failed", reason)
            self._done = target
            return
        self._worker = threading.Thread(
            target=self._install, args=(target,), name="agent-update", daemon=True
        )
        self._worker.start()

    def _signers(self) -> list[x509.Certificate]:
        return self.verifier.signers

    def _install(self, target: AgentTarget) -> None:
        self._set(target.version, "downloading")
        try:
            try:
                install(target, self.store, self._signers(), self.paths)
            except ManifestRefused:
                # a signer this agent has not seen yet (rotation): ask for the current ones
                certs = self.client.certs().get("signing", [])
                self.verifier.add_listed(pki.load_cert(p) for p in certs)
                install(target, self.store, self._signers(), self.paths)
            write_marker(self.paths.pending, target.version)
        except (ManifestRefused, BundleError) as exc:
            log.error("agent %s refused: %s", target.version, exc)
            self._set(target.version, "failed", str(exc))
            self._done = target
            return
        except TRANSIENT as exc:
            log.warning("agent %s not installed yet (retrying): %s", target.version, exc)
            self._set(target.version, "failed", f"{exc}; retrying in {RETRY_S:.0f} s")
            self._retry_at = time.monotonic() + RETRY_S
            return
        except Exception as exc:  # a bug must not stop the agent; report it
            log.exception("agent %s install crashed", target.version)
            self._set(target.version, "failed", f"install crashed: {exc}")
            self._done = target
            return
        self._done = target
        self._set(target.version, "installed", "waiting for the launcher to switch")
        log.info("agent %s installed; the launcher switches to it", target.version)

    # -- trial ------------------------------------------------------------------
    def maybe_commit(self, attested: bool, report: Callable[[], bool]) -> bool:
        """On trial: once attested, send a report; when it is accepted, commit."""
        if not self.trial or self._committed or not attested:
            return False
        if not report():
            return False
        write_marker(self.paths.commit, self.running)
        self._committed = True
        self._set(self.running, "committed", "re-attested and reported within the window")
        log.info("agent %s committed", self.running)
        return True
