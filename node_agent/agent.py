"""The agent: onboard once, then loop fetch → verify → checkpoint → reconcile → report.

Start-up order (as EVE's): identity first, then the checkpoint is loaded and
enforced before the controller is asked anything, so a node with an unreachable
controller keeps running what it was told last.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping

from attestation import pki
from node_agent.checkpoint import Checkpoint
from node_agent.client import ControllerClient, ControllerError, Unreachable, load_bundle
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from node_agent.identity import NodeIdentity, OnboardingRefused, load_identity, onboard
from node_agent.image_store import ImageStore
from node_agent.inventory import collect_inventory
from node_agent.reconciler import Reconciler
from node_agent.runtime.base import Runtime
from node_agent.settings import AgentSettings
from protocol.desired_state import DesiredState
from protocol.messages import AppStatus, InfoMessage

__all__ = ["AGENT_VERSION", "Agent"]

AGENT_VERSION = "0.1.0"
log = logging.getLogger(__name__)
RuntimeFactory = Callable[[AgentSettings, str], tuple[Mapping[str, Runtime], str]]


class Agent:
    def __init__(self, settings: AgentSettings, runtime_factory: RuntimeFactory) -> None:
        self.settings = settings
        self._runtime_factory = runtime_factory
        bundle = load_bundle(settings.bundle_dir)
        self.client = ControllerClient(
            bundle["url"], settings.bundle_dir / "root-ca.pem", settings.http_timeout_s
        )
        self.checkpoint = Checkpoint(settings.state_dir)
        self.identity: NodeIdentity | None = None
        self.desired: DesiredState | None = None
        self.reconciler: Reconciler | None = None
        self.hypervisor = ""
        self._verifier: ConfigVerifier | None = None
        self._last_info: list[AppStatus] | None = None
        self._last_info_at = 0.0

    # -- start-up --------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> None:
        """Onboard (retrying until claimed), load the checkpoint, build runtimes."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings.state_dir.chmod(0o755)
        self.identity = load_identity(self.settings.state_dir)
        delay = 2.0
        while self.identity is None:
            try:
                self.identity = onboard(
                    self.client,
                    self.settings.state_dir,
                    self.settings.bundle_dir,
                    self.settings.serial,
                    collect_inventory(),
                )
            except (OnboardingRefused, Unreachable) as exc:
                log.warning("onboarding not possible yet (retrying in %.0f s): %s", delay, exc)
                if stop is None:
                    raise
                if stop.wait(delay):
                    return
                delay = min(delay * 2, 60.0)
        self.client.root_ca = self.identity.root_ca
        root = pki.load_cert(self.identity.root_ca.read_bytes())
        self._verifier = ConfigVerifier(root, self.checkpoint.load_signers())
        self.desired = self.checkpoint.load(self._verifier, self.identity.node_uuid)
        if self.desired:
            log.info("enforcing checkpointed config generation %d", self.desired.generation)
        runtimes, self.hypervisor = self._runtime_factory(self.settings, self.identity.node_uuid)
        self.reconciler = Reconciler(
            self.identity.node_uuid,
            ImageStore(
                self.settings.state_dir / "images", self.client, self.settings.max_image_bytes
            ),
            runtimes,
            self.settings.state_dir / "apps",
        )

    # -- one step of each worker ---------------------------------------------------
    def fetch_config(self) -> bool:
        """Ask for the config; verify and checkpoint a new one. True when it changed."""
        assert self.identity and self._verifier
        have = self.desired.content_hash() if self.desired else ""
        answer = self.client.signed(self.identity.device, "config", {"config_hash": have})
        if answer.get("unchanged"):
            return False
        wire = answer.get("config")
        signer = wire.get("sender_cert_sha256", "") if isinstance(wire, dict) else ""
        if not self._verifier.knows(signer):
            certs = self.client.certs()
            self._verifier.add_signers(pki.load_cert(p) for p in certs.get("signing", []))
            self.checkpoint.save_signers(self._verifier)
        doc = self._verifier.verify(wire, self.identity.node_uuid, self.desired)
        self.checkpoint.save(wire)
        log.info("new config generation %d (%d apps)", doc.generation, len(doc.apps))
        self.desired = doc
        return True

    def reconcile(self) -> list[AppStatus]:
        assert self.reconciler
        return self.reconciler.reconcile(self.desired)

    def report(self, statuses: list[AppStatus], force: bool = False) -> None:
        assert self.identity
        info_interval = self.desired.settings.info_interval_s if self.desired else 600.0
        due = time.monotonic() - self._last_info_at >= info_interval
        if not force and not due and statuses == self._last_info:
            return
        msg = InfoMessage(
            agent_version=AGENT_VERSION,
            config_generation=self.desired.generation if self.desired else -1,
            config_hash=self.desired.content_hash() if self.desired else "",
            hypervisor=self.hypervisor,
            apps=statuses,
        )
        self.client.signed(self.identity.device, "info", msg.model_dump(mode="json"))
        self._last_info, self._last_info_at = statuses, time.monotonic()

    def once(self) -> list[AppStatus]:
        """One full pass (fetch, reconcile, report): `outpost-agent once`."""
        try:
            self.fetch_config()
        except (Unreachable, ControllerError, ConfigRejected) as exc:
            log.error("config fetch failed; enforcing the checkpoint: %s", exc)
        statuses = self.reconcile()
        try:
            self.report(statuses, force=True)
        except (Unreachable, ControllerError) as exc:
            log.error("info report failed: %s", exc)
        return statuses

    # -- the loop ----------------------------------------------------------------
    def _config_interval(self) -> float:
        base = self.settings.config_interval_s or (
            self.desired.settings.config_interval_s if self.desired else 60.0
        )
        if self.settings.config_interval_s:
            return base
        return base * random.uniform(0.3, 1.0)  # EVE's jitter

    def run(self, stop: threading.Event) -> None:
        self.start(stop)
        if stop.is_set():
            return
        next_config = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_config:
                try:
                    self.fetch_config()
                except (Unreachable, ControllerError, ConfigRejected) as exc:
                    log.error("config fetch failed; enforcing the checkpoint: %s", exc)
                next_config = time.monotonic() + self._config_interval()
            statuses = self.reconcile()
            try:
                self.report(statuses)
            except (Unreachable, ControllerError) as exc:
                log.warning("info report failed (will retry): %s", exc)
                self._last_info = None
            wait = min(self.settings.reconcile_interval_s, max(0.0, next_config - time.monotonic()))
            stop.wait(wait)
