"""The agent's remote-access poll loop (node_agent.remote.service.RemoteAccess.run)."""

from __future__ import annotations

import threading
from typing import Any

from node_agent.remote.service import CLOSING_POLL_S, RemoteAccess
from protocol.remote import RemotePollAnswer

ENDED = "7eab4ec6-732c-48b8-b7d5-dbf1366dbb34"


class _Stop(threading.Event):
    """Records each pause the loop asks for, and stops it at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout or 0.0)
        self.set()
        return True


class _Answers(RemoteAccess):
    def __init__(self, answer: RemotePollAnswer) -> None:
        super().__init__(ctx=None)  # type: ignore[arg-type]  # poll is replaced
        self.answer = answer

    def poll(self, wait_s: float) -> RemotePollAnswer:
        self.polls += 1
        return self.answer

    def start(self, offer: Any) -> bool:
        return True


def test_an_answer_that_only_closes_sessions_still_open_here_pauses_before_the_next_poll():
    loop, stop = _Answers(RemotePollAnswer(close=[ENDED])), _Stop()
    loop.run(stop)
    assert (loop.polls, stop.pauses) == (1, [CLOSING_POLL_S])
