"""A fleet of simulated nodes in one asyncio loop: enrolment, EVE's timers, operator
changes, and a clean stop.

Timers (as EVE's, jitter symmetric so the mean stays the interval and N nodes make
N/interval requests per second): config poll every ``config_interval_s`` x U(1-j, 1+j),
or a long-poll held ``long_poll_s`` and asked again 0-0.5 s after each answer (as the
agent); metrics every ``metrics_interval_s``; info when the config changed plus a full
report every ``info_interval_s``. Each node starts at a random phase of each timer so
the load is steady from the first second. (The agent's own jitter is U(0.3, 1.0) x the
interval: real agents poll 1.5x as often as the nominal interval says.)

Nothing per idle node but its state and one timer handle per timer: a due timer starts a
task for one request and the task arms the next timer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from attestation import pki
from benchmarks.simulator.identities import SimIdentity
from benchmarks.simulator.node import ConfigCheck, SimNode
from benchmarks.simulator.operator import Operator
from benchmarks.simulator.stats import Stats
from benchmarks.simulator.transport import RequestFailed, Transport

__all__ = ["Fleet", "FleetSettings", "manifest_csv"]

log = logging.getLogger(__name__)


def manifest_csv(identities: Sequence[SimIdentity]) -> bytes:
    """A bulk-enrolment manifest of these identities (serial, base64 DER device cert)."""
    lines = ["serial,device_cert"]
    for ident in identities:
        der = ident.device.cert.public_bytes(Encoding.DER)
        lines.append(f"{ident.serial},{base64.b64encode(der).decode()}")
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class FleetSettings:
    config_interval_s: float = 60.0
    jitter: float = 0.25
    """Timers fire at interval x U(1 - jitter, 1 + jitter)."""
    long_poll_s: float = 0.0
    """> 0: long-poll config with this wait instead of polling every interval."""
    metrics_interval_s: float = 60.0
    """0: no metrics."""
    info_interval_s: float = 600.0
    """The periodic full info report; 0: info only on change."""
    retry_s: float = 5.0
    """First retry of an undelivered info (doubling up to 60 s)."""
    enrol_concurrency: int = 16


class Fleet:
    def __init__(
        self,
        identities: Sequence[SimIdentity],
        transport: Transport,
        check: ConfigCheck,
        settings: FleetSettings,
        operator: Operator | None = None,
    ) -> None:
        self.nodes = [SimNode(ident) for ident in identities]
        self.by_serial = {n.serial: n for n in self.nodes}
        self.t = transport
        self.check = check
        self.settings = settings
        self.operator = operator
        self.enrolled: list[SimNode] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._running = False
        self._started = time.monotonic()
        self.parked = 0
        """Long-polls in flight right now."""
        self.long_poll_returns: dict[str, int] = {}
        """serial → long-poll answers that were 'unchanged' before their wait ran out
        (a node woken for nothing), counted while ``count_wakeups`` is set."""
        self.count_wakeups = False

    @property
    def stats(self) -> Stats:
        return self.t.stats

    def new_phase(self) -> Stats:
        """Start counting afresh (e.g. after enrolment); returns the finished phase."""
        old = self.t.stats
        old.finish()
        self.t.stats = Stats()
        return old

    # -- enrolment ---------------------------------------------------------------
    async def enrol(
        self, onboarding: pki.Identity, claim: bool, bulk: bool = False
    ) -> list[SimNode]:
        """Claim (optional) and register, or import every node in one manifest (``bulk``);
        then attest and fetch the first config, for every node; returns the nodes that
        made it (the others are counted as errors)."""
        gate = asyncio.Semaphore(self.settings.enrol_concurrency)
        if bulk:
            assert self.operator is not None, "a bulk import needs an operator token"
            uuids = await self.operator.import_manifest(
                manifest_csv([n.identity for n in self.nodes])
            )
            for node in self.nodes:
                node.node_uuid = uuids[node.serial]

        async def one(node: SimNode) -> SimNode | None:
            async with gate:
                try:
                    if claim and not bulk:
                        assert self.operator is not None, "claiming needs an operator token"
                        await self.operator.claim(node.serial, node.identity.device.sha256)
                    if not bulk:
                        await node.register(self.t, onboarding)
                    await node.poll_config(self.t, self.check)
                    await node.send_info(self.t)
                    return node
                except RequestFailed as exc:
                    log.warning("%s: enrolment failed: %s", node.serial, exc)
                    return None

        done = await asyncio.gather(*(one(n) for n in self.nodes))
        self.enrolled = [n for n in done if n is not None]
        return self.enrolled

    # -- scheduling --------------------------------------------------------------
    def _jittered(self, interval: float) -> float:
        j = self.settings.jitter
        return interval * random.uniform(1.0 - j, 1.0 + j)

    def _later(self, delay: float, coro_fn: Any, *args: Any) -> None:
        if not self._running:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._spawn(coro_fn(*args))

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if not self._running:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        """Arm every enrolled node's timers at a random phase."""
        self._running = True
        self._started = time.monotonic()
        s = self.settings
        for node in self.enrolled:
            if s.long_poll_s > 0:
                self._later(random.uniform(0, min(5.0, s.config_interval_s)), self._config, node)
            else:
                self._later(random.uniform(0, s.config_interval_s), self._config, node)
            if s.metrics_interval_s > 0:
                self._later(random.uniform(0, s.metrics_interval_s), self._metrics, node)
            if s.info_interval_s > 0:
                self._later(random.uniform(0, s.info_interval_s), self._info_full, node)

    async def _config(self, node: SimNode) -> None:
        s = self.settings
        long_poll = s.long_poll_s > 0
        asked = time.monotonic()
        ok = False
        try:
            if long_poll:
                self.parked += 1
                try:
                    changed = await node.poll_config(
                        self.t, self.check, s.long_poll_s, "config-long"
                    )
                finally:
                    self.parked -= 1
                if (
                    not changed
                    and self.count_wakeups
                    and time.monotonic() - asked < s.long_poll_s * 0.9
                ):
                    self.long_poll_returns[node.serial] = (
                        self.long_poll_returns.get(node.serial, 0) + 1
                    )
            else:
                changed = await node.poll_config(self.t, self.check)
            ok = True
            if changed:
                for delay in node.reached():
                    self.stats.change_reached(delay)
                await self._deliver_info(node)
        except RequestFailed:
            pass
        delay = (
            random.uniform(0.0, 0.5) if long_poll and ok else self._jittered(s.config_interval_s)
        )
        self._later(delay, self._config, node)

    async def _metrics(self, node: SimNode) -> None:
        with contextlib.suppress(RequestFailed):  # lossy, as the agent's metrics
            await node.send_metrics(self.t, self._started)
        self._later(self._jittered(self.settings.metrics_interval_s), self._metrics, node)

    async def _info_full(self, node: SimNode) -> None:
        node.queue_info()
        await self._deliver_info(node)
        self._later(self._jittered(self.settings.info_interval_s), self._info_full, node)

    async def _deliver_info(self, node: SimNode, attempt: int = 0) -> None:
        """Send the pending info, one request at a time per node (a newer message queued
        meanwhile goes next), retrying with back-off until the controller has it."""
        if node.info_sending:
            return  # the request in flight sends the newer one after it
        node.info_sending = True
        try:
            while not await node.send_info(self.t):
                pass
        except RequestFailed:
            retry = min(self.settings.retry_s * 2**attempt, 60.0)
            self._later(self._jittered(retry), self._deliver_info, node, attempt + 1)
        finally:
            node.info_sending = False

    # -- operator changes -------------------------------------------------------
    async def change(self, node: SimNode) -> bool:
        """The operator raises ``node``'s reboot counter; the node must see it."""
        assert self.operator is not None
        sent = time.monotonic()
        try:
            counter = await self.operator.reboot(node.serial)
        except RequestFailed:
            return False
        node.expected.append((counter, sent))
        self.stats.changes_marked += 1
        for delay in node.reached():  # a long-poll may bring it before the answer comes
            self.stats.change_reached(delay)
        return True

    async def changes(self, every_s: float, per_change: int, until: float) -> int:
        """Every ``every_s``, change ``per_change`` random enrolled nodes, until ``until``
        (time.monotonic()); returns how many changes were made."""
        made = 0
        while time.monotonic() + every_s < until:
            await asyncio.sleep(every_s)
            picks = random.sample(self.enrolled, min(per_change, len(self.enrolled)))
            made += sum(await asyncio.gather(*(self.change(n) for n in picks)))
        return made

    # -- stop ------------------------------------------------------------------
    async def stop(self) -> None:
        """Disarm every timer and cancel requests in flight (parked long-polls too)."""
        self._running = False
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain_info(self, deadline_s: float) -> int:
        """Deliver every pending info (retrying) until done or the deadline; returns how
        many nodes still hold an undelivered one."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            left = [n for n in self.enrolled if n.info_pending is not None or n.info_sending]
            if not left:
                return 0
            idle = [n for n in left if not n.info_sending]
            await asyncio.gather(*(n.send_info(self.t) for n in idle), return_exceptions=True)
            await asyncio.sleep(0.2)
        return sum(1 for n in self.enrolled if n.info_pending is not None)

    def unreached(self) -> int:
        """Operator changes no node has seen yet."""
        return sum(1 for n in self.enrolled for c, _ in n.expected if c > n.reboot_counter)
