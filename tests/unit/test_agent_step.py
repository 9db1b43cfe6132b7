"""``Agent.step``: one pass works on one snapshot of the desired state, and every info
report says where the node's port lockdown stands."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from node_agent.agent import Agent
from node_agent.settings import AgentSettings
from protocol.desired_state import DesiredState
from protocol.messages import AppStatus, InfoMessage
from protocol.ports import PortState

NODE = str(uuid.UUID(int=5))


class _Reporter:
    def __init__(self) -> None:
        self.infos: list[InfoMessage] = []

    def info(self, msg: InfoMessage, interval_s: float, force: bool = False) -> bool:
        self.infos.append(msg)
        return True

    def logs(self, force: bool = False) -> int:
        return 0

    def metrics(self, runtimes: Any, interval_s: float, reports: Any = None) -> bool:
        return False


class _Reboot:
    def check(self, counter: int) -> None:
        pass


class _ReconcilerRacingAFetch:
    """Reconciles ``seen``; meanwhile the fetch thread installs a newer generation."""

    runtimes: dict[str, Any] = {}

    def __init__(self, agent: Agent, newer: DesiredState) -> None:
        self.agent, self.newer = agent, newer
        self.seen: list[int] = []

    def reconcile(self, desired: DesiredState | None) -> list[AppStatus]:
        assert desired is not None
        self.seen.append(desired.generation)
        self.agent.desired = self.newer  # what the fetch thread may do at any moment
        return []


def _agent(tmp_path: Path) -> Agent:
    agent = object.__new__(Agent)
    agent.settings = AgentSettings(
        state_dir=tmp_path, bundle_dir=tmp_path, serial="n1", pci_sysfs_root=tmp_path
    )
    agent.hypervisor = "tcg"
    agent.ports = None
    agent.updater = None
    agent.prefetcher = None
    agent.bundle = {}
    agent.reporter = _Reporter()  # type: ignore[assignment]
    agent.reboot = _Reboot()  # type: ignore[assignment]
    return agent


def test_one_pass_reports_the_generation_it_reconciled_though_a_newer_one_arrived(tmp_path):
    agent = _agent(tmp_path)
    agent.desired = DesiredState(node_uuid=NODE, generation=1)
    newer = DesiredState(node_uuid=NODE, generation=2)
    agent.reconciler = _ReconcilerRacingAFetch(agent, newer)  # type: ignore[assignment]
    agent.step()
    (info,) = agent.reporter.infos  # type: ignore[union-attr]
    assert info.config_generation == 1
    assert info.config_hash == DesiredState(node_uuid=NODE, generation=1).content_hash()
    agent.step()
    assert agent.reconciler.seen == [1, 2]  # type: ignore[union-attr]


def test_an_agent_without_port_lockdown_says_its_ports_are_not_enforced(tmp_path):
    agent = _agent(tmp_path)
    agent.desired = None
    agent.report([])
    (info,) = agent.reporter.infos  # type: ignore[union-attr]
    assert info.ports == PortState.not_enforced()
    assert info.ports is not None and info.ports.lockdown == "off"
    assert info.ports.firewall.enforced is False
