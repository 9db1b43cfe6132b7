"""One remote session on the node: dial the controller, attach, relay, end.

The agent dials ``wss://<controller>/api/v1/remote/s/<id>/agent`` (TLS checked against
the pinned root), sends its attach signed with the device key, opens the endpoint only
after the grant was checked, then runs two pumps: endpoint → controller (one read, one
send: a slow operator slows the endpoint) and controller → endpoint.  The session ends
when the endpoint ends (the command's exit code is sent), the controller closes it
(revoked, closed, idle), the grant expires by the node's own clock, or the connection to
the controller breaks — then the agent reports the end itself (``device/ended``).  A
session the controller names in a poll answer's ``close`` list (ended there, its grant
revoked or expired) is ended here too (``cancel``), even when its own connection has not
said so: the relay that should have told it may be on a replica that is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from attestation import envelope
from attestation.pki import Identity
from node_agent.remote.endpoints import Endpoint, OpenFailed
from protocol.remote import (
    STDIN,
    AgentAttach,
    Closed,
    Eof,
    ErrorMessage,
    Exit,
    Ready,
    Resize,
    SessionEnded,
    data_frame,
    parse_control,
    split_frame,
)
from protocol.websocket_client import connect_websocket

__all__ = ["SessionLink", "run_session", "stream_url"]

log = logging.getLogger(__name__)


def stream_url(controller_url: str, session_id: str) -> str:
    base = controller_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest}/api/v1/remote/s/{session_id}/agent"


@dataclass
class SessionLink:
    """How to reach the controller for one session."""

    controller_url: str
    root_ca: Path
    device: Identity
    report_end: Callable[[SessionEnded], None]


class _Counters:
    def __init__(self) -> None:
        self.to_node = 0
        self.from_node = 0
        self.closed_by_controller = ""
        self.finished_here = False
        """The node ended it and said so (exit code sent, or the grant expired)."""
        self.ended = threading.Event()


def _connect(link: SessionLink, session_id: str) -> ClientConnection:
    ws = connect_websocket(
        stream_url(link.controller_url, session_id),
        str(link.root_ca),
        open_timeout=15,
        close_timeout=5,
    )
    attach = envelope.seal(AgentAttach(session_id=session_id).model_dump(mode="json"), link.device)
    ws.send(json.dumps(attach))
    return ws


def run_session(
    link: SessionLink,
    session_id: str,
    open_endpoint: Callable[[], Endpoint],
    expires_at: Callable[[], float],
    cancel: threading.Event | None = None,
) -> None:
    """Run one session to its end (in the caller's thread).

    ``expires_at()`` is read once the endpoint is open (the checked grant's expiry);
    setting ``cancel`` ends the session as the controller's close would."""
    try:
        ws = _connect(link, session_id)
    except (OSError, ConnectionClosed, TimeoutError, Exception) as exc:
        log.warning("remote session %s: cannot reach the controller: %s", session_id, exc)
        return
    if cancel is not None and cancel.is_set():  # ended while it was dialling
        with contextlib.suppress(Exception):
            ws.close()
        return
    try:
        endpoint = open_endpoint()
    except OpenFailed as exc:
        log.warning("remote session %s refused: %s", session_id, exc)
        with contextlib.suppress(Exception):
            ws.send(ErrorMessage(message=str(exc)[:500]).model_dump_json())
            ws.close()
        return
    counters = _Counters()
    try:
        ws.send(Ready().model_dump_json())
        _relay(ws, endpoint, counters, expires_at(), cancel or threading.Event())
    except (OSError, ConnectionClosed):
        pass
    finally:
        endpoint.close()
        with contextlib.suppress(Exception):
            ws.close()
    if not counters.closed_by_controller and not counters.finished_here:
        with contextlib.suppress(Exception):
            link.report_end(
                SessionEnded(
                    session_id=session_id,
                    reason="its connection to the controller broke (the relay went away)",
                    bytes_to_node=counters.to_node,
                    bytes_from_node=counters.from_node,
                )
            )
    log.info(
        "remote session %s ended (%s); %d bytes in, %d out",
        session_id,
        counters.closed_by_controller or "stream ended",
        counters.to_node,
        counters.from_node,
    )


CANCELLED = "ended by the controller (named in a poll answer)"


def _relay(
    ws: ClientConnection,
    endpoint: Endpoint,
    counters: _Counters,
    expires_at: float,
    cancel: threading.Event,
) -> None:
    def cancelled() -> None:  # the poll loop sets it; so does this relay's own end
        cancel.wait()
        if counters.ended.is_set():
            return
        log.info("remote session: the controller ended it; closing")
        counters.closed_by_controller = CANCELLED
        counters.ended.set()
        endpoint.close()
        with contextlib.suppress(Exception):
            ws.close()

    def expire() -> None:
        if not counters.ended.wait(max(0.0, expires_at - time.time())):
            log.info("remote session: the grant expired (node clock); closing")
            with contextlib.suppress(Exception):
                ws.send(ErrorMessage(message="the grant expired").model_dump_json())
                counters.finished_here = True
            counters.ended.set()
            endpoint.close()
            with contextlib.suppress(Exception):
                ws.close()

    def down() -> None:  # endpoint → controller
        try:
            while (item := endpoint.read()) is not None:
                channel, data = item
                counters.from_node += len(data)
                ws.send(data_frame(channel, data))
            if not counters.ended.is_set():
                ws.send(Exit(code=_clamp(endpoint.exit_code())).model_dump_json())
                counters.finished_here = True
        except (OSError, ConnectionClosed):
            pass
        finally:
            counters.ended.set()
            with contextlib.suppress(Exception):
                ws.close()

    threads = [
        threading.Thread(target=expire, daemon=True),
        threading.Thread(target=down, daemon=True),
        threading.Thread(target=cancelled, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        for message in ws:  # controller → endpoint
            if isinstance(message, bytes):
                channel, data = split_frame(message)
                if channel == STDIN and data:
                    counters.to_node += len(data)
                    endpoint.write(data)
                continue
            try:
                control = parse_control(message)
            except ValidationError:
                continue
            if isinstance(control, Resize):
                endpoint.resize(control.cols, control.rows)
            elif isinstance(control, Eof):
                endpoint.eof()
            elif isinstance(control, Closed):
                counters.closed_by_controller = control.reason
                break
    except ValueError:
        pass
    finally:
        counters.ended.set()
        cancel.set()  # the watcher's wait ends
        endpoint.close()
        for t in threads:
            t.join(timeout=10)


def _clamp(code: int | None) -> int | None:
    if code is None:
        return None
    return max(-255, min(255, code))
