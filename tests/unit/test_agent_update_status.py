"""What an agent reports about self-update when it does not run under the launcher."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from node_agent.agent import AGENT_VERSION, Agent
from protocol.desired_state import DesiredState, NodeSettings
from protocol.messages import AgentUpdateStatus


def _agent_targeting(version: str | None) -> Agent:
    agent = Agent.__new__(Agent)  # only the fields the status reads
    agent.updater = None
    target = SimpleNamespace(version=version) if version else None
    settings = NodeSettings.model_construct(**{**NodeSettings().__dict__, "agent": target})
    agent.desired = DesiredState.model_construct(
        node_uuid=str(uuid.uuid4()), generation=1, settings=settings, apps=[]
    )
    return agent


def _status(agent: Agent) -> AgentUpdateStatus | None:
    return agent._agent_update_status(agent.desired)


def test_an_agent_without_the_launcher_reports_it_cannot_take_a_new_release():
    status = _status(_agent_targeting("99.0.0"))
    assert status is not None and (status.version, status.state) == ("99.0.0", "failed")
    assert "outpost-agent-launcher" in status.reason and AGENT_VERSION in status.reason


def test_an_agent_without_the_launcher_reports_nothing_when_no_other_release_is_asked():
    assert _status(_agent_targeting(None)) is None
    assert _status(_agent_targeting(AGENT_VERSION)) is None
