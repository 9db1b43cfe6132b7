"""The two halves of a session meet on an abstract Unix socket, whoever comes first."""

from __future__ import annotations

import threading
import uuid

import pytest

from controller.remote.rendezvous import MeetFailed, Pipe, meet, scope_for

SCOPE = scope_for("sqlite:///test-rendezvous")


def _meet_both(sid: str, key_a: str, key_b: str) -> tuple[Pipe | Exception, Pipe | Exception]:
    out: dict[str, Pipe | Exception] = {}

    def side(role: str, key: str) -> None:
        try:
            out[role] = meet(SCOPE, sid, key, role, timeout_s=2.0)
        except MeetFailed as exc:
            out[role] = exc

    threads = [
        threading.Thread(target=side, args=a) for a in (("operator", key_a), ("agent", key_b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out["operator"], out["agent"]


def test_the_two_halves_meet_and_carry_text_and_binary_messages_in_order():
    sid = str(uuid.uuid4())
    a, b = _meet_both(sid, "k" * 64, "k" * 64)
    assert isinstance(a, Pipe) and isinstance(b, Pipe)
    a.send("control")
    a.send(b"\x01bytes")
    assert (b.recv(), b.recv()) == ("control", b"\x01bytes")
    a.close()
    assert b.recv() is None


def test_a_half_without_the_sessions_key_is_not_let_in():
    sid = str(uuid.uuid4())
    a, b = _meet_both(sid, "k" * 64, "x" * 64)
    assert isinstance(a, MeetFailed) or isinstance(b, MeetFailed)


def test_nobody_arriving_ends_the_wait():
    with pytest.raises(MeetFailed, match="did not arrive"):
        meet(SCOPE, str(uuid.uuid4()), "k" * 64, "operator", timeout_s=0.3)
