"""The trust policy: baseline, allowlist, issued configs and images, firmware PCRs."""

from __future__ import annotations

import hashlib

from controller.trust.policy import PolicyInput, baseline_from, evaluate
from protocol.attest import Measurement, MeasurementType


def _d(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


AGENT, CONFIG, IMAGE = _d("agent"), _d("config"), _d("image")
PCRS = {i: _d(f"pcr{i}") for i in range(8)} | {14: _d("pcr14")}


def _events(agent: str = AGENT, config: str = CONFIG, image: str = IMAGE) -> list[Measurement]:
    return [
        Measurement(type=MeasurementType.AGENT, digest=agent, description="code"),
        Measurement(type=MeasurementType.CONFIG, digest=config, description="generation 1"),
        Measurement(type=MeasurementType.IMAGE, digest=image, description="image web"),
    ]


def _input(**kw) -> PolicyInput:  # type: ignore[no-untyped-def]
    base = {
        "events": _events(),
        "pcrs": PCRS,
        "baseline": baseline_from(_events(), PCRS),
        "issued_payloads": {CONFIG},
        "issued_images": {IMAGE},
    }
    return PolicyInput(**(base | kw))


def test_measurements_matching_the_baseline_and_what_was_issued_pass():
    verdict = evaluate(_input())
    assert verdict.ok and verdict.new_baseline is None


def test_the_first_success_records_a_baseline_of_agent_code_and_firmware_pcrs():
    verdict = evaluate(_input(baseline={}))
    assert verdict.ok
    assert verdict.new_baseline == {
        "agent": [AGENT],
        "pcrs": {str(i): PCRS[i] for i in range(8)},
    }


def test_other_agent_code_than_the_baseline_is_a_mismatch():
    verdict = evaluate(_input(events=_events(agent=_d("patched agent"))))
    assert not verdict.ok and "not in the node's baseline" in verdict.reasons[0]


def test_a_fleet_allowlist_overrides_the_baseline_for_agent_code():
    new = _d("agent v2")
    assert evaluate(_input(events=_events(agent=new), allowlist=[new])).ok
    assert not evaluate(_input(allowlist=[new])).ok


def test_a_config_the_controller_never_issued_is_a_mismatch():
    verdict = evaluate(_input(events=_events(config=_d("forged config"))))
    assert verdict.reasons == [
        f"config 'generation 1' ({_d('forged config')[:16]}…) was not issued to this node"
    ]


def test_an_image_the_controller_never_gave_is_a_mismatch():
    verdict = evaluate(_input(events=_events(image=_d("other image"))))
    assert not verdict.ok and "was not given to this node" in verdict.reasons[0]


def test_a_changed_firmware_pcr_is_a_mismatch():
    verdict = evaluate(_input(pcrs=PCRS | {0: _d("new firmware")}))
    assert not verdict.ok and verdict.reasons[0].startswith("firmware PCR 0")


def test_a_log_without_agent_code_is_a_mismatch():
    verdict = evaluate(_input(events=_events()[1:]))
    assert "no agent measurement" in verdict.reasons[0]


def test_every_reason_is_reported():
    verdict = evaluate(
        _input(events=_events(agent=_d("x"), config=_d("y"), image=_d("z")), baseline={})
    )
    assert len(verdict.reasons) == 2 and verdict.new_baseline is None
