"""Ring selection and the health gate: pure functions of labels, reports and time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.rollouts.gates import Progress, evaluate, observe
from controller.rollouts.plan import Candidate, RingBody, select_ring
from protocol.messages import AppState, AppStatus

NODES = [Candidate(i, f"n-{i}", {"site": "qa" if i < 2 else "prod"}) for i in range(5)]


def serials(cs: list[Candidate]) -> list[str]:
    return [c.serial for c in cs]


def test_a_selector_ring_takes_the_matching_nodes():
    assert serials(select_ring(RingBody(selector={"site": "qa"}), NODES, set(), 5)) == [
        "n-0",
        "n-1",
    ]


def test_a_percent_ring_is_cumulative_and_never_takes_a_node_twice():
    first = select_ring(RingBody(percent=40), NODES, set(), 5)
    second = select_ring(RingBody(percent=60), NODES, {c.node_id for c in first}, 5)
    assert serials(first) == ["n-0", "n-1"] and serials(second) == ["n-2"]


def test_a_percent_rounds_up_to_at_least_one_node():
    assert serials(select_ring(RingBody(percent=1), NODES, set(), 5)) == ["n-0"]


def test_a_ring_without_selector_or_percent_takes_every_node_left():
    assert serials(select_ring(RingBody(), NODES, {0, 1}, 5)) == ["n-2", "n-3", "n-4"]


def test_a_ring_takes_a_selector_or_a_percent_not_both():
    with pytest.raises(ValidationError):
        RingBody(selector={"a": "b"}, percent=10)


def test_a_ring_deadline_shorter_than_its_soak_is_refused():
    with pytest.raises(ValidationError):
        RingBody(soak_s=60, deadline_s=30)


def status(state: str, restarts: int = 0) -> AppStatus:
    return AppStatus(
        uuid="00000000-0000-4000-8000-000000000001",
        name="svc",
        state=AppState(state),
        restarts=restarts,
    )


def run(p: Progress, *reports: tuple[int, str, float]) -> Progress:
    for generation, state, now in reports:
        observe(p, generation, status(state), now)
    return p


def test_reports_of_the_old_generation_do_not_count():
    p = run(Progress("n", generation=5), (4, "RUNNING", 0.0))
    assert (p.state, p.running_since) == ("UPDATING", None)


def test_running_since_is_the_first_sighting_at_the_new_generation():
    p = run(Progress("n", 5), (5, "BOOTING", 1.0), (5, "RUNNING", 2.0), (5, "RUNNING", 9.0))
    assert (p.running_since, p.restarts) == (2.0, 0)


def test_leaving_running_counts_a_restart():
    p = run(Progress("n", 5), (5, "RUNNING", 1.0), (5, "BOOTING", 2.0), (5, "RUNNING", 3.0))
    assert (p.restarts, p.running_since) == (1, 3.0)


def test_a_restart_the_agent_counted_between_two_reports_is_seen():
    p = Progress("n", 5)
    observe(p, 5, status("RUNNING"), 1.0)
    observe(p, 5, status("RUNNING", restarts=1), 2.0)  # crashed and came back meanwhile
    assert p.restarts == 1
    assert evaluate([p], 10, 60, 0.0, 20.0).verdict == "fail"


def test_the_gate_passes_when_every_node_ran_the_whole_window():
    nodes = [Progress("a", 1, "RUNNING", 0.0), Progress("b", 1, "RUNNING", 5.0)]
    assert evaluate(nodes, 10, 60, 0.0, 14.0).verdict == "wait"
    assert evaluate(nodes, 10, 60, 0.0, 15.0).verdict == "pass"


def test_the_gate_fails_on_an_app_in_error():
    nodes = [Progress("a", 1, "RUNNING", 0.0), Progress("b", 1, "ERROR", error="pull failed")]
    result = evaluate(nodes, 10, 60, 0.0, 1.0)
    assert result.verdict == "fail" and result.reason == "b: app is ERROR: pull failed"


def test_the_gate_fails_on_a_restart_in_the_window():
    result = evaluate([Progress("a", 1, "RUNNING", 8.0, restarts=1)], 10, 60, 0.0, 9.0)
    assert result.verdict == "fail" and "restarted" in result.reason


def test_the_gate_fails_at_the_deadline_naming_the_late_nodes():
    nodes = [Progress("a", 1, "RUNNING", 0.0), Progress("b", 1, "BOOTING")]
    assert evaluate(nodes, 10, 60, 0.0, 59.0).verdict == "wait"
    result = evaluate(nodes, 10, 60, 0.0, 60.0)
    assert result.verdict == "fail" and result.reason.startswith("b: not RUNNING")


def test_an_empty_ring_passes():
    assert evaluate([], 10, 60, 0.0, 0.0).verdict == "pass"


def test_a_stopped_version_expects_halted():
    nodes = [Progress("a", 1, "HALTED", 0.0)]
    assert evaluate(nodes, 5, 60, 0.0, 6.0, expected="HALTED").verdict == "pass"
