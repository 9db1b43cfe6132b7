"""Remote access on the wire: grants, session offers, the agent's poll, the relay frames.

A **grant** (:class:`GrantClaims`) says who may open which kind of session on which node
(and app) until when.  The controller signs it with its config-signing key, as it signs
configs (an :mod:`attestation.envelope` with no freshness window: its ``expires_at`` is
its life); the agent verifies it against the signing certs it trusts for configs before
it opens anything, and closes the session when it expires.

The agent long-polls ``POST /api/v1/remote/device/poll`` (:class:`RemotePoll`, signed
with its device key) and is answered :class:`RemotePollAnswer` with the sessions waiting
for it.  For each it dials ``wss://…/api/v1/remote/s/<session>/agent`` and sends a signed
:class:`AgentAttach` as its first message; the operator's side dials
``…/api/v1/remote/s/<session>/operator`` and sends :class:`OperatorAttach`.  Both paths
carry the session id at the same depth, so a balancer hashing the first five path
segments sends them to the same controller replica.

Relay frames, both ways: a binary WebSocket message is one channel byte then data
(:data:`STDIN` from the operator; :data:`STDOUT` / :data:`STDERR` from the node; a
port-forward's bytes travel as STDIN and STDOUT); a text message is one JSON control
message (:data:`Control`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, TypeAdapter

from protocol.desired_state import Uuid
from protocol.model_base import MAX_COUNT, StrictModel, Timestamp

__all__ = [
    "MAX_ARGS",
    "MAX_FRAME_BYTES",
    "STDERR",
    "STDIN",
    "STDOUT",
    "AgentAttach",
    "Closed",
    "Control",
    "ControlMessage",
    "Eof",
    "ErrorMessage",
    "Exit",
    "GrantClaims",
    "OperatorAttach",
    "Ready",
    "RemotePoll",
    "RemotePollAnswer",
    "Resize",
    "SessionEnded",
    "SessionKind",
    "SessionOffer",
    "data_frame",
    "parse_control",
    "split_frame",
]

SessionKind = Literal["console", "exec", "shell", "forward"]
"""console: a VM's serial console · exec: a command in a container · shell: a root shell on
the node (debug access only) · forward: one TCP connection to an app's port."""

STDIN, STDOUT, STDERR = 0, 1, 2
MAX_FRAME_BYTES = 256 * 1024
"""The largest WebSocket message either side sends or accepts (control or data)."""
MAX_ARGS = 64
Port = Annotated[int, Field(ge=1, le=65535)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=160)]
Arg = Annotated[str, StringConstraints(max_length=4096)]
Reason = Annotated[str, StringConstraints(max_length=500)]
Cols = Annotated[int, Field(ge=1, le=1000)]
Rows = Annotated[int, Field(ge=1, le=500)]
Envelope = dict[
    Annotated[str, StringConstraints(max_length=32)],
    Annotated[str, StringConstraints(max_length=65536)],
]


class GrantClaims(StrictModel):
    """What a signed grant allows (the payload the agent checks)."""

    grant_id: Uuid
    node_uuid: Uuid
    kind: SessionKind
    app_uuid: Uuid | None = None
    """The app (console, exec, forward); None for a node shell."""
    app_name: str = Field(default="", max_length=63)
    grantee: Actor
    issued_at: Timestamp
    expires_at: Timestamp
    forward_port: Port | None = None
    """forward: the one port of the app this grant reaches."""


class SessionOffer(StrictModel):
    """A session waiting for the node to dial in (in the poll answer)."""

    session_id: Uuid
    grant: Envelope
    """The signed :class:`GrantClaims`."""
    kind: SessionKind
    command: list[Arg] = Field(default_factory=list, max_length=MAX_ARGS)
    """exec: the argv to run (empty: an interactive shell)."""
    tty: bool = True
    cols: Cols = 80
    rows: Rows = 24
    port: Port | None = None
    """forward: the app port to connect to."""


class RemotePoll(StrictModel):
    """The agent's long-poll for sessions (signed with its device key)."""

    wait_s: float = Field(default=0.0, ge=0.0, le=120.0)
    open_sessions: list[Uuid] = Field(default_factory=list, max_length=256)
    """Sessions the agent has open now (never offered again)."""


class RemotePollAnswer(StrictModel):
    offers: list[SessionOffer] = Field(default_factory=list, max_length=64)
    close: list[Uuid] = Field(default_factory=list, max_length=256)
    """Open sessions the controller ended (revoked, closed): the agent closes them."""


class AgentAttach(StrictModel):
    """The agent's first WebSocket message, inside an envelope signed by its device key."""

    session_id: Uuid


class OperatorAttach(StrictModel):
    """The operator's first WebSocket message: the one-time ticket the session was
    created with."""

    ticket: str = Field(min_length=16, max_length=128)


class SessionEnded(StrictModel):
    """The agent's word that a session ended without the relay saying so (its stream to
    the controller broke); signed with its device key."""

    session_id: Uuid
    reason: Reason
    bytes_to_node: int = Field(default=0, ge=0, le=MAX_COUNT)
    bytes_from_node: int = Field(default=0, ge=0, le=MAX_COUNT)
    exit_code: int | None = Field(default=None, ge=-255, le=255)


# -- control messages (text frames) ------------------------------------------------------


class Resize(StrictModel):
    type: Literal["resize"] = "resize"
    cols: Cols
    rows: Rows


class Eof(StrictModel):
    """The operator's input ended (exec without a tty: the command's stdin closes)."""

    type: Literal["eof"] = "eof"


class Ready(StrictModel):
    """The node opened the console, command, shell or connection."""

    type: Literal["ready"] = "ready"


class Exit(StrictModel):
    """The command or shell ended (exit code; None for a console or a connection)."""

    type: Literal["exit"] = "exit"
    code: int | None = Field(default=None, ge=-255, le=255)


class ErrorMessage(StrictModel):
    """The node refused or failed (a foreign grant, an app that is not running, …)."""

    type: Literal["error"] = "error"
    message: Reason


class Closed(StrictModel):
    """The controller ended the session (revoked, expired, idle, the other side left)."""

    type: Literal["closed"] = "closed"
    reason: Reason


Control = Annotated[
    Resize | Eof | Ready | Exit | ErrorMessage | Closed, Field(discriminator="type")
]
ControlMessage = Resize | Eof | Ready | Exit | ErrorMessage | Closed
_CONTROL: TypeAdapter[ControlMessage] = TypeAdapter(Control)


def parse_control(text: str) -> ControlMessage:
    """One control message from a text frame (pydantic ValidationError when invalid)."""
    return _CONTROL.validate_json(text)


def data_frame(channel: int, data: bytes) -> bytes:
    """A binary frame: the channel byte, then the data."""
    return bytes((channel,)) + data


def split_frame(frame: bytes) -> tuple[int, bytes]:
    """(channel, data) of a binary frame; ValueError for an empty or unknown one."""
    if not frame or frame[0] not in (STDIN, STDOUT, STDERR):
        raise ValueError("a data frame starts with channel 0, 1 or 2")
    return frame[0], frame[1:]
