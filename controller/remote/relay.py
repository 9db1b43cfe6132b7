"""The relay of one session, between the operator's WebSocket and the node's.

    operator_half(services, ws, session_id)   owns the session: the ticket, the meeting,
                                              recording, the grant watch, the idle timeout,
                                              the end (audited with bytes and duration)
    agent_half(services, ws, session_id, verify)  checks the node's signed attach, meets
                                              the operator's half, passes messages through

Each direction is one loop that takes one message and forwards it before it takes the
next, so memory per session is bounded by a message per direction: a slow reader slows
the writer through TCP (back-pressure), nothing queues.  Output of a recorded session is
written to the recording before it is forwarded to the operator.

A session ends, with its reason sent to both sides as a ``closed`` control message, when:
either side leaves; the grant expires or is revoked, or an operator closes the session
(the watch wakes on the node's remote wake-ups from any replica, and checks at least every
second); nothing moved for the policy's idle timeout; a side stops answering pings; the
recording reaches its size limit.  If this process dies, both connections break: the
operator's client says the relay was lost, the node's agent closes what it opened and
reports it, and any replica's sweep ends the session; the recording holds everything the
operator was shown.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from pydantic import ValidationError

from controller.errors import ApiError
from controller.remote import sessions as session_rules
from controller.remote import wakeups
from controller.remote.recording import Recorder, RecordingFull
from controller.remote.rendezvous import MeetFailed, Pipe, meet, scope_for
from controller.remote.sessions import RelayInfo
from controller.remote.websocket import Message, ServerWebSocket
from controller.services import Services
from protocol.remote import (
    STDIN,
    STDOUT,
    Closed,
    ErrorMessage,
    Exit,
    OperatorAttach,
    Ready,
    Resize,
    parse_control,
    split_frame,
)

__all__ = ["MEET_TIMEOUT_S", "agent_half", "operator_half"]

log = logging.getLogger(__name__)
MEET_TIMEOUT_S = 30.0
"""How long one half waits for the other (the node dialling in)."""
FIRST_MESSAGE_S = 10.0
WATCH_S = 1.0
PING_EVERY_S = 20.0
SILENT_PEER_S = 75.0
DRAIN_BYTES = 65536


def _closed(reason: str) -> str:
    return Closed(reason=reason[:500]).model_dump_json()


def _first_text(ws: ServerWebSocket) -> str:
    message = ws.recv(timeout=FIRST_MESSAGE_S)
    if not isinstance(message, str):
        raise ApiError(400, "bad_attach", "the first message must be the attach text message")
    return message


def _refuse(ws: ServerWebSocket, exc: Exception) -> None:
    text = exc.message if isinstance(exc, ApiError) else str(exc)
    try:
        ws.send(ErrorMessage(message=text[:500]).model_dump_json())
        ws.send(_closed(text))
    except OSError:
        pass
    ws.close(1008, text)


# -- the node's half -----------------------------------------------------------------------


def agent_half(
    services: Services, ws: ServerWebSocket, session_id: str, verify: Callable[[str], int]
) -> None:
    """``verify(first message) -> node id`` checks the node's signed attach."""
    try:
        node_id = verify(_first_text(ws))
        with services.db.transaction() as s:
            key = session_rules.attach_agent(s, session_id, node_id)
        pipe = meet(
            scope_for(services.settings.database_url), session_id, key, "agent", MEET_TIMEOUT_S
        )
    except (ApiError, MeetFailed) as exc:
        _refuse(ws, exc)
        return
    threads = [
        threading.Thread(target=_pump_ws_to_pipe, args=(ws, pipe), daemon=True),
        threading.Thread(target=_pump_pipe_to_ws, args=(pipe, ws), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _pump_ws_to_pipe(ws: ServerWebSocket, pipe: Pipe) -> None:
    try:
        while (message := ws.recv()) is not None:
            pipe.send(message)
    except OSError:
        pass
    finally:
        pipe.close()
        ws.close()


def _pump_pipe_to_ws(pipe: Pipe, ws: ServerWebSocket) -> None:
    try:
        while (message := pipe.recv()) is not None:
            ws.send(message)
    except OSError:
        pass
    finally:
        ws.close()
        pipe.close()


# -- the operator's half -------------------------------------------------------------------


def operator_half(services: Services, ws: ServerWebSocket, session_id: str) -> None:
    try:
        attach = OperatorAttach.model_validate_json(_first_text(ws))
        with services.db.transaction() as s:
            info = session_rules.attach_operator(s, session_id, attach.ticket)
    except (ApiError, ValidationError) as exc:
        _refuse(ws, exc if isinstance(exc, ApiError) else ApiError(400, "bad_attach", "bad ticket"))
        return
    OperatorRelay(services, ws, info).run()


class OperatorRelay:
    def __init__(self, services: Services, ws: ServerWebSocket, info: RelayInfo) -> None:
        self.services = services
        self.ws = ws
        self.info = info
        self.pipe: Pipe | None = None
        self.reason = ""
        self.exit_code: int | None = None
        self.to_node = 0
        self.from_node = 0
        self.activity = time.monotonic()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.recorder = (
            Recorder(services.db, info.pk, info.max_recording_bytes, time.time())
            if info.recorded
            else None
        )

    def _heartbeat(self) -> None:
        with self.services.db.transaction() as s:
            why = session_rules.relay_status(s, self.info.pk)
        if why is not None:
            raise MeetFailed(why)

    def run(self) -> None:
        try:
            self.pipe = meet(
                scope_for(self.services.settings.database_url),
                self.info.uuid,
                self.info.rendezvous_key,
                "operator",
                MEET_TIMEOUT_S,
                tick=self._heartbeat,
            )
        except MeetFailed as exc:
            reason = str(exc)
            if "did not arrive" in reason:
                reason = "the node did not connect to the session (is it online?)"
            self.finish(reason)
            return
        threads = [
            threading.Thread(target=self._up, daemon=True),
            threading.Thread(target=self._down, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for t in threads:
            t.start()
        self.done.wait()
        for t in threads:
            t.join(timeout=10)
        self.finish(self.reason)

    def stop(self, reason: str) -> None:
        """End the session (the first reason wins); both sides are told why."""
        with self._lock:
            if self.done.is_set():
                return
            self.reason = reason
            self.done.set()
        message = _closed(reason)
        for send in (self.ws.send, self.pipe.send if self.pipe else None):
            if send is not None:
                with contextlib.suppress(OSError):
                    send(message)
        if self.pipe is not None:
            self.pipe.close()
        self.ws.close(1000, reason)

    def finish(self, reason: str) -> None:
        if self.recorder is not None:
            self.recorder.marker(f"session ended: {reason}")
            with contextlib.suppress(RecordingFull):
                self.recorder.flush()
        with self.services.db.transaction() as s:
            session_rules.end(
                s,
                self.info.pk,
                reason,
                exit_code=self.exit_code,
                bytes_to_node=self.to_node,
                bytes_from_node=self.from_node,
            )
        if not self.done.is_set():
            self.stop(reason)

    # operator → node
    def _up(self) -> None:
        assert self.pipe is not None
        try:
            while (message := self.ws.recv()) is not None:
                self.activity = time.monotonic()
                if isinstance(message, bytes):
                    channel, data = split_frame(message)
                    if channel != STDIN:
                        continue
                    self.to_node += len(data)
                else:
                    control = parse_control(message)
                    if isinstance(control, Resize) and self.recorder is not None:
                        self.recorder.resize(control.cols, control.rows)
                    elif not isinstance(control, Resize) and control.type != "eof":
                        continue  # only resize and eof come from the operator
                self.pipe.send(message)
            self.stop("the operator left")
        except (ValueError, ValidationError):
            self.stop("the operator sent a message that is not part of the protocol")
        except OSError:
            return  # the node's side is gone: _down ends the session with what it says

    # node → operator
    def _down(self) -> None:
        assert self.pipe is not None
        try:
            while (first := self.pipe.recv()) is not None:
                batch = [first]
                size = len(first)
                while size < DRAIN_BYTES and self._more_waiting():
                    nxt = self.pipe.recv()
                    if nxt is None:
                        break
                    batch.append(nxt)
                    size += len(nxt)
                ending = self._take(batch)
                if self.recorder is not None:
                    self.recorder.flush()  # recorded before anyone sees it
                for message in batch:
                    self.ws.send(message)
                if ending is not None:
                    self.stop(ending)
                    return
            self.stop("the node closed the session")
        except RecordingFull as exc:
            self.stop(str(exc))
        except OSError:
            self.stop("the operator's connection broke")

    def _more_waiting(self) -> bool:
        assert self.pipe is not None
        import select  # here: in a gevent worker, the patched module

        poller = select.poll()  # not select(): it refuses file numbers from 1024 up
        poller.register(self.pipe.sock, select.POLLIN)
        return bool(poller.poll(0))

    def _take(self, batch: list[Message]) -> str | None:
        """Count and record a batch from the node; the end reason if it ends the session."""
        ending = None
        self.activity = time.monotonic()
        for message in batch:
            if isinstance(message, bytes):
                channel, data = split_frame(message)
                self.from_node += len(data)
                if self.recorder is not None and channel >= STDOUT:
                    self.recorder.output(data)
                continue
            try:
                control = parse_control(message)
            except ValidationError:
                continue
            if isinstance(control, Exit):
                self.exit_code = control.code
                ending = "the command exited" + (
                    f" with code {control.code}" if control.code is not None else ""
                )
            elif isinstance(control, ErrorMessage):
                ending = f"the node refused or failed: {control.message}"
            elif isinstance(control, Closed):
                ending = control.reason
            elif isinstance(control, Ready) and self.recorder is not None:
                self.recorder.marker("ready")
        return ending

    def _watch(self) -> None:
        notifier = self.services.notifier
        key = wakeups.remote_key(self.info.node_id)
        last_ping = last_beat = time.monotonic()
        while not self.done.is_set():
            since = notifier.version(key)
            left = self.info.expires_at - time.time()
            if left <= 0:
                self.stop("the grant expired")
                return
            woke = wakeups.wait(notifier, self.info.node_id, since, min(WATCH_S, left))
            now = time.monotonic()
            if woke or now - last_beat >= 2.0:
                last_beat = now
                try:
                    with self.services.db.transaction() as s:
                        why = session_rules.relay_status(s, self.info.pk)
                except Exception:  # the database is briefly away: try again next second
                    log.exception("remote session %s: status check failed", self.info.uuid)
                    why = None
                if why is not None:
                    self.stop(why)
                    return
            if now - self.activity > self.info.idle_timeout_s:
                self.stop(f"idle for {self.info.idle_timeout_s:.0f} s")
                return
            if now - self.ws.last_received > SILENT_PEER_S:
                self.stop("the operator's client stopped answering")
                return
            if now - last_ping >= PING_EVERY_S:
                last_ping = now
                self.ws.ping()
