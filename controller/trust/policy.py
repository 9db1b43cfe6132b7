"""The trust policy: do a node's verified measurements match what it should be running?

Pure logic (no database, no HTTP).  Per measurement type:

    agent    the node's baseline (recorded at its first successful attestation, replaced
             only by an operator's accept-baseline) or the fleet allowlist when one is set
    config   must be the payload of a config this controller issued to this node
    image    must be an image of a config this controller issued to this node
    PCRs 0-7 (firmware, TPM nodes) must equal the baseline's values

Anything else is a mismatch.  Every reason is reported, not just the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attestation.measurement import FIRMWARE_PCRS
from protocol.attest import Measurement, MeasurementType

__all__ = ["PolicyInput", "Verdict", "baseline_from", "evaluate"]


@dataclass(frozen=True)
class PolicyInput:
    events: list[Measurement]
    pcrs: Mapping[int, str]
    """Verified sha256 PCR values (hex); empty for a node without a TPM."""
    baseline: Mapping[str, Any]
    """{"agent": [digests], "pcrs": {"0": hex, …}}; empty when none is recorded yet."""
    allowlist: Iterable[str] = ()
    issued_payloads: set[str] = field(default_factory=set)
    issued_images: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    reasons: list[str]
    new_baseline: dict[str, Any] | None = None
    """Set when the node had no baseline and passed: record this one."""

    @property
    def ok(self) -> bool:
        return not self.reasons


def baseline_from(events: Iterable[Measurement], pcrs: Mapping[int, str]) -> dict[str, Any]:
    """The baseline a node's evidence describes: its agent digests and firmware PCRs."""
    return {
        "agent": sorted({e.digest for e in events if e.type is MeasurementType.AGENT}),
        "pcrs": {str(i): pcrs[i] for i in FIRMWARE_PCRS if i in pcrs},
    }


def _short(digest: str) -> str:
    return f"{digest[:16]}…"


def evaluate(inp: PolicyInput) -> Verdict:
    reasons: list[str] = []
    agents = {e.digest for e in inp.events if e.type is MeasurementType.AGENT}
    if not agents:
        reasons.append("the event log has no agent measurement")
    allowlist = set(inp.allowlist)
    allowed = allowlist or (set(inp.baseline.get("agent", [])) if inp.baseline else None)
    if allowed is not None:
        source = "fleet allowlist" if allowlist else "node's baseline"
        reasons += [
            f"agent code {_short(d)} is not in the {source}" for d in sorted(agents - allowed)
        ]
    for index, value in sorted((inp.baseline.get("pcrs") or {}).items()):
        got = inp.pcrs.get(int(index))
        if got != value:
            reasons.append(
                f"firmware PCR {index} is {_short(got) if got else 'missing'},"
                f" baseline {_short(value)}"
            )
    for event in inp.events:
        if event.type is MeasurementType.CONFIG and event.digest not in inp.issued_payloads:
            reasons.append(
                f"config {event.description!r} ({_short(event.digest)}) was not issued to this node"
            )
        elif event.type is MeasurementType.IMAGE and event.digest not in inp.issued_images:
            reasons.append(
                f"image {event.description!r} ({_short(event.digest)}) was not given to this node"
            )
    new_baseline = None
    if not reasons and not inp.baseline:
        new_baseline = baseline_from(inp.events, inp.pcrs)
    return Verdict(reasons, new_baseline)
