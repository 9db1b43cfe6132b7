"""A session the controller names in a poll answer's ``close`` list ends on the node, even
when its own connection has not said so (node_agent.remote: RemoteAccess.end, the relay's
cancel)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from node_agent.remote.service import RemoteAccess
from node_agent.remote.session import CANCELLED, _Counters, _relay
from protocol.remote import RemotePollAnswer

SESSION = "0d3c8a52-3f53-4d51-9d0a-1f4f2b7e9a10"


class _QuietSocket:
    """A WebSocket on which the controller never speaks: iterating blocks until closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.sent: list[Any] = []

    def __iter__(self) -> Any:
        self.closed.wait()
        return iter(())

    def send(self, data: Any) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed.set()


class _IdleEndpoint:
    """A shell that prints nothing: read blocks until it is closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def read(self) -> None:
        self.closed.wait()
        return None

    def exit_code(self) -> None:
        return None

    def close(self) -> None:
        self.closed.set()


def test_cancelling_a_relay_closes_its_endpoint_and_its_connection() -> None:
    ws, endpoint, counters, cancel = _QuietSocket(), _IdleEndpoint(), _Counters(), threading.Event()
    relay = threading.Thread(target=_relay, args=(ws, endpoint, counters, 4e9, cancel), daemon=True)
    relay.start()
    cancel.set()
    relay.join(timeout=30)
    assert not relay.is_alive()
    assert endpoint.closed.is_set() and ws.closed.is_set()
    assert counters.closed_by_controller == CANCELLED


class _Parked(RemoteAccess):
    """Sessions that run until they are ended; one poll answer, then the loop stops."""

    def __init__(self, answer: RemotePollAnswer) -> None:
        super().__init__(ctx=SimpleNamespace(max_sessions=4))  # type: ignore[arg-type]
        self.answer = answer

    def poll(self, wait_s: float) -> RemotePollAnswer:
        return self.answer

    def _session(self, offer: Any) -> None:
        with self._lock:
            cancel = self._cancel[offer.session_id]
        cancel.wait()


class _OneTurn(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_a_session_named_in_close_is_ended_here() -> None:
    loop = _Parked(RemotePollAnswer(close=[SESSION]))
    assert loop.start(SimpleNamespace(session_id=SESSION))  # type: ignore[arg-type]
    assert loop.running() == 1
    loop.run(_OneTurn())
    thread = loop._running[SESSION]
    thread.join(timeout=30)
    assert not thread.is_alive() and loop.running() == 0


def test_ending_a_session_not_running_here_changes_nothing() -> None:
    loop = _Parked(RemotePollAnswer())
    assert loop.start(SimpleNamespace(session_id=SESSION))  # type: ignore[arg-type]
    assert not loop.end("5b1e9a52-0000-4000-8000-000000000000")
    assert loop.running() == 1
    assert loop.end(SESSION)
    loop._running[SESSION].join(timeout=30)
    assert loop.running() == 0
