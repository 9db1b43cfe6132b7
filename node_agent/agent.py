"""The agent: onboard once, then loop attest → fetch → verify → checkpoint → reconcile
→ report.

Two threads: the fetcher long-polls the controller for config (attesting when due) and
wakes the main loop on a change; the main loop enforces the port policy, reconciles,
acts on the reboot counter and reports (info, logs, metrics).

Start-up order (as EVE's): the TPM and the measurement of the agent's own code
first, then identity, then the checkpoint is measured, loaded and enforced before the
controller is asked anything, so a node with an unreachable controller (or one that
fails attestation) keeps running what it was told last.  ``config`` needs the token
of a successful attestation; new configs and their images are measured before use.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

import attestation
import node_agent
import protocol
from attestation import pki
from attestation.measurement import code_digest
from attestation.tpm import Tpm, TpmError, parse_tpm_setting
from node_agent.attest import AttestationRefused, Attestor
from node_agent.checkpoint import Checkpoint
from node_agent.client import ControllerClient, ControllerError, Unreachable, load_bundle
from node_agent.clock import SYSTEM_CLOCK, Clock
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from node_agent.device_labels import device_labels
from node_agent.download_gate import DownloadGate
from node_agent.health import HealthMonitor
from node_agent.heartbeat import write_heartbeat
from node_agent.identity import (
    NodeIdentity,
    OnboardingRefused,
    load_identity,
    onboard,
    renew_if_due,
)
from node_agent.image_store import ImageStore
from node_agent.inventory import collect_inventory, node_inventory
from node_agent.log_shipper import AgentLogBuffer
from node_agent.measure import Measurements, checkpoint_digest
from node_agent.network import NetworkError
from node_agent.ports import NodePorts
from node_agent.prefetch import Prefetcher
from node_agent.reboot import RebootCounter
from node_agent.reconciler import Reconciler
from node_agent.reporter import Reporter
from node_agent.revocation import Revocation
from node_agent.runtime.base import Runtime
from node_agent.self_update.updater import SelfUpdater
from node_agent.self_update.version import AGENT_VERSION
from node_agent.settings import AgentSettings
from node_agent.tpm_enrolment import PendingAnswer
from protocol.attest import MeasurementType
from protocol.desired_state import DesiredState
from protocol.messages import AgentUpdateStatus, AppStatus, InfoMessage
from protocol.ports import PortState

__all__ = ["AGENT_VERSION", "CODE_ROOTS", "FETCH_ERRORS", "Agent"]

log = logging.getLogger(__name__)
RuntimeFactory = Callable[[AgentSettings, str], tuple[Mapping[str, Runtime], str]]
CODE_ROOTS = tuple(Path(str(m.__file__)).parent for m in (node_agent, attestation, protocol))
"""The agent's code, measured at start."""
FETCH_ERRORS = (
    Unreachable,
    ControllerError,
    ConfigRejected,
    AttestationRefused,
    TpmError,
)
"""Failures of a config fetch after which the agent keeps enforcing its checkpoint."""
RENEWAL_CHECK_S = 86400.0
"""How often a running agent checks whether its device cert is due for renewal."""
PROGRESS_REPORT_S = 2.0
"""At most one info report this often while an image downloads (its progress)."""


class _Held:
    """The default of :meth:`Agent.report`'s ``desired``: the config held at the call."""


HELD = _Held()


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        runtime_factory: RuntimeFactory,
        code_roots: Iterable[Path] = CODE_ROOTS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.clock = clock
        """Time for back-offs, health probes and download windows (tests inject a fake)."""
        self._runtime_factory = runtime_factory
        self.code_roots = tuple(code_roots)
        self.tpm: Tpm | None = None
        self.measurements: Measurements | None = None
        self.attestor: Attestor | None = None
        bundle = load_bundle(settings.bundle_dir)
        self.bundle = bundle
        self.client = ControllerClient(
            bundle["url"], settings.bundle_dir / "root-ca.pem", settings.http_timeout_s
        )
        self.checkpoint = Checkpoint(settings.state_dir)
        self.identity: NodeIdentity | None = None
        self.desired: DesiredState | None = None
        self.reconciler: Reconciler | None = None
        self.prefetcher: Prefetcher | None = None
        self.hypervisor = ""
        self._verifier: ConfigVerifier | None = None
        self.ports: NodePorts | None = None
        self.reporter: Reporter | None = None
        self.reboot: RebootCounter | None = None
        self.log_buffer = AgentLogBuffer()
        self.revocation = Revocation(settings.revoked_check_s)
        """403 "revoked" from the controller: permanent (see node_agent/revocation.py)."""
        self._changed = threading.Event()
        self._progress_at = 0.0
        self.updater: SelfUpdater | None = None
        """Self-update, when running under outpost-agent-launcher."""
        self.config_requests = 0
        """Config requests sent (each long-poll is one), for the heartbeat and tests."""
        self.config_changed_by = 0
        """The number of the config request whose answer brought the current config."""

    # -- start-up --------------------------------------------------------------
    def _open_tpm(self) -> None:
        setting = parse_tpm_setting(self.settings.tpm)
        if setting.kind != "none":
            self.tpm = Tpm(setting)
            self.tpm.ensure_keys()
        log.info("TPM: %s", setting.tcti or "none (file key, self-reported measurements)")
        self.measurements = Measurements(self.settings.state_dir / "measurements.json", self.tpm)
        self.measurements.measure(
            MeasurementType.AGENT,
            code_digest(self.code_roots),
            f"outpost-agent {AGENT_VERSION} code",
        )

    def close(self) -> None:
        """Release the TPM (the agent's processes and apps keep running)."""
        logging.getLogger().removeHandler(self.log_buffer)
        if self.tpm is not None:
            self.tpm.close()
            self.tpm = None

    def start(self, stop: threading.Event | None = None) -> None:
        """Measure, onboard (retrying until claimed), load the checkpoint, build runtimes."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings.state_dir.chmod(0o755)
        logging.getLogger().addHandler(self.log_buffer)
        self._open_tpm()
        assert self.measurements is not None
        self.identity = load_identity(self.settings.state_dir, self.tpm)
        delay = 2.0
        while self.identity is None:
            try:
                self.identity = onboard(
                    self.client,
                    self.settings.state_dir,
                    self.settings.bundle_dir,
                    self.settings.serial,
                    collect_inventory(self.settings.pci_sysfs_root),
                    self.tpm,
                )
            except (OnboardingRefused, Unreachable) as exc:
                if self.revocation.note(exc):
                    wait = self.revocation.check_interval_s
                else:
                    wait, delay = delay, min(delay * 2, 60.0)
                    log.warning("onboarding not possible yet (retrying in %.0f s): %s", wait, exc)
                if stop is None:
                    raise
                if stop.wait(wait):
                    return
        self.client.root_ca = self.identity.root_ca
        self._renew_identity()
        self.attestor = Attestor(
            self.client,
            self.measurements,
            self.tpm,
            self.identity.key_in_tpm,
            PendingAnswer(self.settings.state_dir),
        )
        root = pki.load_cert(self.identity.root_ca.read_bytes())
        self._verifier = ConfigVerifier(root, self.checkpoint.load_signers())
        found = checkpoint_digest(self.checkpoint.path)
        if found is not None:
            self.measurements.measure(MeasurementType.CONFIG, *found)
        self.desired = self.checkpoint.load(
            self._verifier, self.identity.node_uuid, self.identity.generation_floor
        )
        if self.desired:
            log.info("enforcing checkpointed config generation %d", self.desired.generation)
            self._measure_images(self.desired)
        if self.settings.ports is not None:  # before any app starts: everything closed
            self.ports = NodePorts(self.settings.ports, self.identity.node_uuid)
            try:
                self.ports.apply(self.desired)
            except NetworkError as exc:
                log.error("ports: checkpointed config refused; all-closed ruleset: %s", exc)
        runtimes, self.hypervisor = self._runtime_factory(self.settings, self.identity.node_uuid)
        store = ImageStore(
            self.settings.state_dir / "images",
            self.client,
            self.settings.max_image_bytes,
            gate=DownloadGate(self.clock),
        )
        container = runtimes.get("container")
        health = HealthMonitor(
            self.settings.state_dir / "app-health.json",
            self.clock,
            getattr(container, "exec", None),
            on_change=self._changed.set,
        )
        self.reconciler = Reconciler(
            self.identity.node_uuid,
            store,
            runtimes,
            self.settings.state_dir / "apps",
            network=self.ports,
            sysfs_root=self.settings.pci_sysfs_root,
            on_progress=self._report_progress,
            clock=self.clock,
            health=health,
        )
        self.prefetcher = Prefetcher(
            store, self.clock, on_change=self._report_progress, on_done=self._changed.set
        )
        for runtime in runtimes.values():  # VM lifecycle events (a crash) wake the main loop
            if (watch := getattr(runtime, "watch", None)) is not None:
                watch(self._changed.set)
        self.reporter = Reporter(self.settings, self._send, self.log_buffer, self.revocation)
        self.updater = SelfUpdater.from_env(self.client, self._verifier)
        self.reboot = RebootCounter(self.settings.state_dir, self.settings.reboot_command)

    def _renew_identity(self) -> None:
        assert self.identity is not None
        try:
            self.identity = renew_if_due(
                self.client,
                self.settings.state_dir,
                self.identity,
                self.settings.serial,
                self.settings.device_cert_renew_days,
            )
        except (Unreachable, ControllerError) as exc:
            if not self.revocation.note(exc):
                log.warning("device certificate renewal postponed: %s", exc)

    def _measure_images(self, doc: DesiredState) -> None:
        assert self.measurements is not None
        for app in doc.apps:
            self.measurements.measure(
                MeasurementType.IMAGE, app.image.sha256, f"image {app.image.name}"
            )

    def _measure_config(self, wire: Any, doc: DesiredState) -> None:
        assert self.measurements is not None
        payload = base64.b64decode(wire["payload"])
        self.measurements.measure(
            MeasurementType.CONFIG,
            hashlib.sha256(payload).hexdigest(),
            f"config generation {doc.generation}",
        )
        self._measure_images(doc)

    # -- one step of each worker ---------------------------------------------------
    def attest(self) -> None:
        """Attest now (nonce → quote → token); raises AttestationRefused when refused."""
        assert self.identity and self.attestor
        self.attestor.attest(self.identity.device)

    def _send(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.identity
        return self.client.signed(self.identity.device, path, body)

    def _ask_config(self, have: str, wait_s: float = 0.0) -> dict[str, Any]:
        assert self.identity and self.attestor
        if self.attestor.due():
            self.attest()
        body = {"config_hash": have, "wait_s": wait_s}
        timeout = self.settings.http_timeout_s + wait_s
        self.config_requests += 1
        try:
            return self.client.signed(
                self.identity.device, "config", body, self.attestor.token, timeout
            )
        except ControllerError as exc:
            if exc.status != 403 or not exc.code.startswith("integrity_token"):
                raise
            log.info("config needs a fresh attestation (%s)", exc.code)
            self.attestor.forget()
            self.attest()
            self.config_requests += 1
            return self.client.signed(
                self.identity.device, "config", body, self.attestor.token, timeout
            )

    def fetch_config(self, wait_s: float = 0.0) -> bool:
        """Attest if due, ask for the config (holding up to ``wait_s`` for a change);
        verify, measure and checkpoint a new one.  True when it changed.
        """
        assert self.identity and self._verifier
        have = self.desired.content_hash() if self.desired else ""
        answer = self._ask_config(have, wait_s)
        request = self.config_requests
        if answer.get("unchanged"):
            return False
        self.take_config(answer.get("config"))
        self.config_changed_by = request
        return True

    def _controller_signing_certs(self) -> list[x509.Certificate]:
        return [pki.load_cert(p) for p in self.client.certs().get("signing", [])]

    def take_config(self, wire: Any) -> DesiredState:
        """A config envelope from the controller: verify it (learning a new signer from
        ``certs``, retiring signers no longer listed), measure it, checkpoint it, use it.
        Raises ConfigRejected (nothing changes) when it is not acceptable."""
        assert self.identity and self._verifier
        doc, signers_changed = self._verifier.verify_fetched(
            wire,
            self.identity.node_uuid,
            self.desired,
            self.identity.generation_floor,
            self._controller_signing_certs,
        )
        if signers_changed:
            self.checkpoint.save_signers(self._verifier)
        self._measure_config(wire, doc)
        self.checkpoint.save(wire)
        log.info("new config generation %d (%d apps)", doc.generation, len(doc.apps))
        self.desired = doc
        return doc

    def reconcile(self) -> list[AppStatus]:
        """One reconcile pass over the config held now."""
        assert self.reconciler
        return self.reconciler.reconcile(self.desired)

    def report(
        self,
        statuses: list[AppStatus],
        force: bool = False,
        desired: DesiredState | _Held | None = HELD,
    ) -> bool:
        """Info (through the outbox) about ``desired`` (default: the config held now), whose
        pass produced ``statuses``; True when the controller has the newest one."""
        assert self.reporter
        doc = self.desired if isinstance(desired, _Held) else desired
        inventory = node_inventory(self.settings.pci_sysfs_root)
        msg = InfoMessage(
            agent_version=AGENT_VERSION,
            config_generation=doc.generation if doc else -1,
            config_hash=doc.content_hash() if doc else "",
            hypervisor=self.hypervisor,
            apps=statuses,
            ports=self.ports.state() if self.ports else PortState.not_enforced(),
            inventory=inventory,
            agent_update=self._agent_update_status(doc),
            prefetch=self.prefetcher.statuses() if self.prefetcher else [],
            device_labels=device_labels(inventory, self.bundle, self.settings.device_labels_file),
        )
        interval = doc.settings.info_interval_s if doc else 600.0
        return self.reporter.info(msg, interval, force)

    def _agent_update_status(self, doc: DesiredState | None) -> AgentUpdateStatus | None:
        """The self-update's state; an agent not under the launcher says it cannot update."""
        if self.updater is not None:
            return self.updater.status()
        target = doc.settings.agent if doc else None
        if target is None or target.version == AGENT_VERSION:
            return None
        return AgentUpdateStatus(
            version=target.version,
            state="failed",
            reason="this agent does not run under outpost-agent-launcher, so it cannot "
            f"update itself; it stays at {AGENT_VERSION}",
        )

    def _report_progress(self) -> None:
        """Called by the reconciler as a download advances: info at most every 2 s."""
        now = time.monotonic()
        if self.reconciler is None or self.reporter is None:
            return
        if now - self._progress_at < PROGRESS_REPORT_S:
            return
        self._progress_at = now
        try:  # about the pass in progress: its own snapshot of the desired state
            self.report(self.reconciler.statuses(), desired=self.reconciler.desired)
        except Exception:  # a report must never break the download
            log.exception("progress report failed")

    def step(self, force_report: bool = False) -> list[AppStatus]:
        """One pass of the main loop: reboot counter, reconcile, info, logs, metrics.

        The pass works on one snapshot of the desired state: the fetch thread may replace
        ``self.desired`` meanwhile, and the next pass takes that up; one report never
        mixes two generations.
        """
        assert self.reporter and self.reboot and self.reconciler
        desired = self.desired
        if desired is not None:
            self.reboot.check(desired.reboot_counter)
        statuses = self.reconciler.reconcile(desired)
        if self.prefetcher is not None:
            self.prefetcher.want(desired.prefetch if desired else [])
        self.report(statuses, force=force_report, desired=desired)
        if self.updater is not None:
            self._self_update(statuses, desired)
        self.reporter.logs(force=force_report)
        interval = desired.settings.metrics_interval_s if desired else 60.0
        reports = self.ports.network.metadata.reports() if self.ports else {}
        self.reporter.metrics(self.reconciler.runtimes, interval, reports)
        return statuses

    def _heartbeat(self) -> None:
        passes = self.reconciler.passes if self.reconciler is not None else 0
        try:
            write_heartbeat(self.settings.state_dir, passes, self.config_requests)
        except OSError as exc:
            log.warning("heartbeat not written: %s", exc)

    def _self_update(self, statuses: list[AppStatus], desired: DesiredState | None) -> None:
        """Install a new target release; on trial, commit once attested and reported."""
        assert self.updater and self.attestor
        self.updater.consider(desired)
        attested = self.attestor.token is not None
        self.updater.maybe_commit(
            attested, lambda: self.report(statuses, force=True, desired=desired)
        )

    def once(self) -> list[AppStatus]:
        """One full pass (fetch, reconcile, report): `outpost-agent once`."""
        self.fetch_once(0.0)
        return self.step(force_report=True)

    # -- the loop ----------------------------------------------------------------
    def _config_interval(self) -> float:
        desired = self.desired
        base = self.settings.config_interval_s or (
            desired.settings.config_interval_s if desired else 60.0
        )
        if self.settings.config_interval_s:
            return base
        # jitter around the interval, not below it: a fleet of N nodes polls N/base times
        # a second on average (at 60 s, 100,000 nodes make 1,667 polls/s)
        return base * random.uniform(0.75, 1.25)

    def run(self, stop: threading.Event) -> None:
        try:
            self._run(stop)
        finally:
            self.close()

    def fetch_once(self, wait_s: float) -> float:
        """One config fetch (holding up to ``wait_s`` for a change); wakes the main loop on
        a new config. Returns how long to wait before the next one: a short jitter after a
        long-poll, the config interval after a poll or a failure, and the slow revocation
        check while the controller says this node is revoked."""
        try:
            if self.fetch_config(wait_s):
                self._changed.set()
            self.revocation.clear()
            return random.uniform(0.0, 0.5) if wait_s > 0 else self._config_interval()
        except FETCH_ERRORS as exc:
            if self.revocation.note(exc):
                return self.revocation.check_interval_s
            log.error("config fetch failed; enforcing the checkpoint: %s", exc)
        except Exception:  # e.g. libvirtd restarting: the next pass tries again
            log.exception("config fetch crashed; retrying")
        return self._config_interval()

    def _fetch_loop(self, stop: threading.Event) -> None:
        """Long-poll (or poll) the controller; wake the main loop when the config changed."""
        while not stop.is_set():
            stop.wait(self.fetch_once(self.settings.long_poll_s))

    def _run(self, stop: threading.Event) -> None:
        self.start(stop)
        if stop.is_set():
            return
        fetcher = threading.Thread(
            target=self._fetch_loop, args=(stop,), name="config-fetch", daemon=True
        )
        fetcher.start()
        if self.reconciler is not None and self.prefetcher is not None:
            self.reconciler.health.start(stop)
            self.prefetcher.start(stop)
        if self.settings.remote_access:  # consoles, exec, forwards: dialled out, on grants
            from node_agent.remote import RemoteAccess, RemoteContext

            remote = RemoteAccess(RemoteContext.from_agent(self), self.settings.long_poll_s)
            threading.Thread(target=remote.run, args=(stop,), name="remote", daemon=True).start()
        next_renewal = time.monotonic() + RENEWAL_CHECK_S  # start() just checked
        while not stop.is_set():
            if time.monotonic() >= next_renewal:
                self._renew_identity()
                next_renewal = time.monotonic() + RENEWAL_CHECK_S
            self._changed.clear()
            try:
                self.step()
            except Exception:  # e.g. libvirtd restarting: the next pass tries again
                log.exception("reconcile pass failed; retrying")
            self._heartbeat()
            deadline = time.monotonic() + self.settings.reconcile_interval_s
            if self.reconciler is not None and (wake := self.reconciler.wake_in()) is not None:
                deadline = min(deadline, time.monotonic() + wake)  # a crash back-off ends
            while not stop.is_set() and not self._changed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.25))
        fetcher.join(timeout=2.0)  # a daemon thread: a pending long-poll dies with the process
