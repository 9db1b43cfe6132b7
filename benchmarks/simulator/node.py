"""One simulated node: what the agent sends and checks, without runtimes.

Each call builds a real signed envelope (``attestation.envelope.seal`` with the node's
own device key) and goes through :class:`~benchmarks.simulator.transport.Transport`:

- ``register``: signed with the batch's onboarding key, both certificates in full;
- ``attest``: nonce, then a TPM-less quote (software PCR 14 replayed from a one-entry
  event log, as the agent does without a TPM); the controller accepts it only where the
  fleet policy allows TPM-less nodes (``tpm_less: allow``);
- ``config``: the hash of the held config and the integrity token; a new config is
  verified in ``full`` mode by the agent's own :class:`ConfigVerifier` (signature under
  a codeSigning cert chained to the pinned root, schema, node uuid, no rollback) or in
  ``hash`` mode by recomputing the content hash only;
- ``info`` (reliable: the newest message is kept until delivered; ``agent_version``
  carries a per-node sequence number ``sim-<seq>`` so a test can tell which one the
  controller holds), with every app of the held config RUNNING (healthy when probed) and
  every pre-fetch done (``full`` mode); ``metrics`` (lossy).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from attestation import envelope, pki
from attestation.measurement import replay
from benchmarks.simulator.identities import SimIdentity
from benchmarks.simulator.transport import RequestFailed, Transport
from node_agent.config_verifier import ConfigRejected, ConfigVerifier
from protocol.attest import TOKEN_HEADER
from protocol.desired_state import DesiredState

__all__ = [
    "SIM_AGENT_DIGEST",
    "ConfigCheck",
    "SimNode",
    "VerifyMode",
    "metrics_body",
    "quote_body",
]

SIM_AGENT_DIGEST = hashlib.sha256(b"outpost node simulator").hexdigest()
"""The 'agent code' every simulated node reports in its event log."""
RENEW_AT = 0.8  # attest again once 80 % of the token's life has passed (as the agent)
VerifyMode = Literal["full", "hash"]


@dataclass
class ConfigCheck:
    """How nodes check a new config (shared by every node of a fleet)."""

    mode: VerifyMode
    verifier: ConfigVerifier | None = None
    """``full`` mode: the agent's verifier, knowing the controller's signing certs."""


@dataclass(slots=True, eq=False)
class SimNode:
    identity: SimIdentity
    node_uuid: str = ""
    token: str | None = None
    token_renew_at: float = 0.0
    doc: DesiredState | None = None
    config_hash: str = ""
    generation: int = -1
    reboot_counter: int = 0
    reboots_acted: int = 0
    counter_at: float = 0.0
    """time.monotonic() when the node took its current reboot counter."""
    info_seq: int = 0
    info_pending: dict[str, Any] | None = None
    info_delivered_seq: int = 0
    info_sending: bool = False
    """An info request is in flight (one at a time per node, as the agent's one thread)."""
    last_config_ok: float = 0.0
    """time.monotonic() of the last answered config request."""
    expected: list[tuple[int, float]] = field(default_factory=list)
    """Operator changes not seen yet: (reboot counter it raised, when it was sent)."""

    @property
    def serial(self) -> str:
        return self.identity.serial

    # -- onboarding --------------------------------------------------------------
    async def register(self, t: Transport, onboarding: pki.Identity) -> int:
        body = {
            "serial": self.serial,
            "onboarding_cert_pem": onboarding.cert_pem(),
            "device_cert_pem": self.identity.cert_pem,
            "inventory": {"tpm": "none"},
        }
        status, answer = await t.device("register", "register", envelope.seal(body, onboarding))
        self.node_uuid = answer["node_uuid"]
        return status

    async def attest(self, t: Transport) -> None:
        """nonce → quote; raises RequestFailed (also for a refused attestation)."""
        seal = self.identity.device
        _, nonce = await t.device("attest", "attest", envelope.seal({"request": "nonce"}, seal))
        quote = quote_body(nonce["nonce"])
        _, answer = await t.device("attest", "attest", envelope.seal(quote, seal))
        if answer.get("result") != "SUCCESS" or not answer.get("integrity_token"):
            self.token = None
            what = f"attest {answer.get('result', '?')}"
            t.stats.error("attest", what)
            raise RequestFailed(what)
        self.token = answer["integrity_token"]
        life = float(answer.get("expires_in_s") or 60.0)
        self.token_renew_at = time.monotonic() + RENEW_AT * life

    # -- config ----------------------------------------------------------------
    async def poll_config(
        self, t: Transport, check: ConfigCheck, wait_s: float = 0.0, kind: str = "config"
    ) -> bool:
        """One config request (attesting first when due); True when a new config was
        accepted. Raises RequestFailed; a refused config raises it as ``bad-config``."""
        if self.token is None or time.monotonic() >= self.token_renew_at:
            await self.attest(t)
        body = {"config_hash": self.config_hash, "wait_s": wait_s}
        timeout = t.settings.timeout_s + wait_s
        try:
            _, answer = await t.device(
                kind,
                "config",
                envelope.seal(body, self.identity.device),
                {TOKEN_HEADER: self.token or ""},
                timeout,
            )
        except RequestFailed as exc:
            if exc.status != 403 or not exc.code.startswith("integrity_token"):
                raise
            self.token = None  # as the agent: attest again and ask once more
            await self.attest(t)
            _, answer = await t.device(
                kind,
                "config",
                envelope.seal(body, self.identity.device),
                {TOKEN_HEADER: self.token or ""},
                timeout,
            )
        self.last_config_ok = time.monotonic()
        if answer.get("unchanged"):
            return False
        try:
            self.accept(answer.get("config"), check)
        except ConfigRejected as exc:
            t.stats.error(kind, "bad-config")
            raise RequestFailed("bad-config") from exc
        return True

    def accept(self, wire: Any, check: ConfigCheck) -> None:
        """Verify and take a new config (raises ConfigRejected)."""
        if check.mode == "full":
            assert check.verifier is not None
            doc = check.verifier.verify(wire, self.node_uuid, self.doc)
            self.doc = doc
            self.config_hash, self.generation = doc.content_hash(), doc.generation
            counter = doc.reboot_counter
        else:
            try:
                body = json.loads(base64.b64decode(wire["payload"]))["body"]
                content = {k: v for k, v in body.items() if k != "generation"}
                canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
                generation, counter = int(body["generation"]), int(body.get("reboot_counter", 0))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigRejected(f"config is not readable: {exc}") from exc
            if body.get("node_uuid") != self.node_uuid or generation < self.generation:
                raise ConfigRejected("config is for another node or older than the held one")
            self.config_hash, self.generation = hashlib.sha256(canonical).hexdigest(), generation
        if counter > self.reboot_counter:  # the reboot command, acted on once per increase
            self.reboots_acted += 1
            self.reboot_counter, self.counter_at = counter, time.monotonic()
        self.queue_info()

    def reached(self) -> list[float]:
        """Delays of the operator changes this node now holds (and forgets them)."""
        if not self.expected:
            return []
        done = [
            self.counter_at - t0 for counter, t0 in self.expected if counter <= self.reboot_counter
        ]
        self.expected = [(c, t0) for c, t0 in self.expected if c > self.reboot_counter]
        return done

    # -- reports ---------------------------------------------------------------
    def queue_info(self) -> None:
        """A new info message (it replaces an undelivered one, as the agent's outbox)."""
        self.info_seq += 1
        self.info_pending = {
            "agent_version": f"sim-{self.info_seq}",
            "config_generation": self.generation,
            "config_hash": self.config_hash,
            "hypervisor": "sim",
            **self.workload_report(),
        }

    def workload_report(self) -> dict[str, Any]:
        """Every app of the held config RUNNING (healthy when it has a probe) and every
        pre-fetch done, as an agent whose apps work would say (``full`` mode only: the
        hash mode keeps no document)."""
        if self.doc is None:
            return {"apps": []}
        apps = []
        for app in self.doc.apps:
            status: dict[str, Any] = {"uuid": app.uuid, "name": app.name, "state": "RUNNING",
                                      "image_sha256": app.image.sha256}  # fmt: skip
            if app.health is not None:
                status["health"] = {"status": "healthy", "since": time.time()}
            apps.append(status)
        out: dict[str, Any] = {"apps": apps}
        if self.doc.prefetch:
            out["prefetch"] = [
                {"sha256": r.sha256, "state": "done", "done_bytes": r.size, "total_bytes": r.size}
                for r in self.doc.prefetch
            ]
        return out

    async def send_info(self, t: Transport) -> bool:
        """Deliver the pending info; True when nothing is left to deliver."""
        pending = self.info_pending
        if pending is None:
            return True
        await t.device("info", "info", envelope.seal(pending, self.identity.device))
        seq = int(pending["agent_version"].removeprefix("sim-"))
        self.info_delivered_seq = max(self.info_delivered_seq, seq)
        if self.info_pending is pending:
            self.info_pending = None
        return self.info_pending is None

    async def send_metrics(self, t: Transport, started: float) -> None:
        body = metrics_body(time.monotonic() - started)
        await t.device("metrics", "metrics", envelope.seal(body, self.identity.device))


def quote_body(nonce: str) -> dict[str, Any]:
    """A TPM-less quote (``protocol.attest.QuoteRequest``): PCR 14 replayed in software
    from a one-entry event log, as the agent sends without a TPM."""
    return {
        "request": "quote",
        "nonce": nonce,
        "tpm": "none",
        "pcrs": {"14": replay([SIM_AGENT_DIGEST]).hex()},
        "event_log": [
            {"pcr": 14, "type": "agent", "digest": SIM_AGENT_DIGEST, "description": "sim"}
        ],
    }


def metrics_body(uptime_s: float) -> dict[str, Any]:
    """A metrics sample (``protocol.messages.MetricsMessage``) of a node up this long."""
    return {
        "at": time.time(),
        "node": {
            "cpu_seconds_total": round(uptime_s * 0.01, 3),
            "memory_used_bytes": 512 * 1024**2,
            "memory_total_bytes": 2048 * 1024**2,
            "disk_used_bytes": 4 * 1024**3,
            "disk_total_bytes": 32 * 1024**3,
            "net_rx_bytes_total": int(uptime_s * 1000),
            "net_tx_bytes_total": int(uptime_s * 800),
            "uptime_s": round(uptime_s, 3),
        },
        "apps": [],
    }
