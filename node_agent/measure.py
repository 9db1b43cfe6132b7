"""The agent's measurements: extend PCR 14 and keep the event log that replays to it.

What is measured (each once per TPM boot, before it is used):

    agent    sha256 over the agent's code (node_agent, attestation, protocol packages)
    config   sha256 of a config's signed payload bytes: the checkpoint found at start
             (or of the raw file when it cannot be parsed) and every new config
    image    the sha256 of each image a config asks to run

With a TPM the log is written ahead of the extend (atomic write) and kept in
``<state>/measurements.json`` for the current TPM boot, so an agent restart carries
on with the same log; a log the PCR cannot be explained by is dropped (the next
attestation then fails honestly until the TPM resets).  Without a TPM the PCR is
replayed in software and the log starts afresh at every agent start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from pathlib import Path

from pydantic import ValidationError

from attestation.files import atomic_write
from attestation.measurement import MEASUREMENT_PCR, ZERO_PCR, replay
from attestation.tpm import Tpm
from protocol.attest import Measurement, MeasurementType

__all__ = ["Measurements", "checkpoint_digest"]

log = logging.getLogger(__name__)


def checkpoint_digest(path: Path) -> tuple[str, str] | None:
    """(digest, description) of a config checkpoint file, None when there is none.

    The digest is that of the signed payload bytes (what the controller issued); a
    file that is not a checkpoint at all is measured as raw bytes.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        payload = base64.b64decode(json.loads(raw)["envelope"]["payload"], validate=True)
        return hashlib.sha256(payload).hexdigest(), "config checkpoint"
    except (ValueError, KeyError, TypeError, binascii.Error):
        return hashlib.sha256(raw).hexdigest(), "config checkpoint (unreadable)"


class Measurements:
    """The PCR 14 event log of this node, in step with the TPM (or with a software PCR)."""

    def __init__(self, path: Path, tpm: Tpm | None) -> None:
        self.path = path
        self.tpm = tpm
        self.events: list[Measurement] = []
        self._boot = tpm.boot_id() if tpm else ""
        if tpm is not None:
            self._recover(tpm)
        self._save()

    # -- start-up ------------------------------------------------------------------
    def _stored(self) -> tuple[str, list[Measurement]]:
        try:
            data = json.loads(self.path.read_text())
            return str(data["boot"]), [Measurement.model_validate(e) for e in data["events"]]
        except FileNotFoundError:
            return "", []
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.error("measurement log %s unreadable, starting a new one: %s", self.path, exc)
            return "", []

    def _recover(self, tpm: Tpm) -> None:
        """Take the stored log if it explains PCR 14; finish a write-ahead event if needed."""
        boot, events = self._stored()
        pcr = tpm.read_pcrs([MEASUREMENT_PCR])[MEASUREMENT_PCR]
        if replay(e.digest for e in events) == pcr:
            self.events = events
        elif boot == self._boot and events and replay(e.digest for e in events[:-1]) == pcr:
            log.info("completing the measurement logged before the agent stopped")
            tpm.extend(MEASUREMENT_PCR, bytes.fromhex(events[-1].digest))
            self.events = events
        elif pcr == ZERO_PCR:
            self.events = []  # the TPM was reset: a new boot, a new log
        else:
            log.error(
                "PCR %d holds measurements this node's log cannot explain; attestation will"
                " fail until the TPM is reset",
                MEASUREMENT_PCR,
            )
            self.events = []

    def _save(self) -> None:
        data = {"boot": self._boot, "events": [e.model_dump(mode="json") for e in self.events]}
        atomic_write(self.path, json.dumps(data, indent=1).encode(), mode=0o644)

    # -- measuring -----------------------------------------------------------------
    def has(self, kind: MeasurementType, digest: str) -> bool:
        return any(e.type is kind and e.digest == digest for e in self.events)

    def measure(self, kind: MeasurementType, digest: str, description: str) -> bool:
        """Log then extend ``digest``; False when it was already measured this boot."""
        if self.has(kind, digest):
            return False
        event = Measurement(
            pcr=MEASUREMENT_PCR, type=kind, digest=digest, description=description[:256]
        )
        self.events.append(event)
        self._save()
        if self.tpm is not None:
            self.tpm.extend(MEASUREMENT_PCR, bytes.fromhex(digest))
        log.info("measured %s %s: %s", kind.value, digest[:16], description)
        return True

    def software_pcr(self) -> bytes:
        """PCR 14 as the log says it is (what a TPM-less node reports)."""
        return replay(e.digest for e in self.events)
