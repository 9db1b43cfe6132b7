"""Remote sessions through the real server (gunicorn, gevent) with the agent's real remote
service on simulated nodes: exec output and exit code through ``outpost exec``, grants
that end live sessions (revoked, expired) within 2 s, roles, a foreign grant refused by
the node, recordings, caps, back-pressure.  (Real VMs and containers: test_remote_e2e.py.)
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost_cli.remote_stream import open_session
from protocol.remote import STDIN, SessionOffer, data_frame, split_frame
from tests.fixtures.controller_server import ControllerServer, running_controller
from tests.fixtures.remote_site import (
    SimNode,
    add_apps,
    add_sim_node,
    make_token,
    outpost,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ControllerServer, SimNode, SimNode]]:
    base = tmp_path_factory.mktemp("remote")
    with running_controller(base) as ctl:
        add_apps(ctl, {"web": "container", "vm1": "vm"})
        node_a = add_sim_node(ctl, base, "remote-a", ["web", "vm1"])
        node_b = add_sim_node(ctl, base, "remote-b", ["web"])
        node_a.start()
        node_b.start()
        try:
            yield ctl, node_a, node_b
        finally:
            node_a.stop.set()
            node_b.stop.set()


def _call(ctl: ControllerServer, token: str | None = None):  # type: ignore[no-untyped-def]
    def call(method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = ctl.api(method, path, headers=headers, **kw)
        assert r.status_code < 400, r.text
        return r.json()

    return call


def _grant(ctl: ControllerServer, node: str = "remote-a", **body) -> dict:  # type: ignore[no-untyped-def, type-arg]
    r = ctl.api("POST", "/remote/grants", json={"node": node, "kind": "exec", "app": "web", **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _open(ctl: ControllerServer, grant: str, command: list[str], tty: bool = False):  # type: ignore[no-untyped-def]
    return open_session(
        _call(ctl), ctl.url, str(ctl.root_ca), {"grant": grant, "command": command, "tty": tty}
    )


def _wait_session(ctl: ControllerServer, sid: str, state: str, timeout: float = 15) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        view = ctl.api("GET", f"/remote/sessions/{sid}").json()
        if view["state"] == state or time.monotonic() > deadline:
            return view  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_outpost_exec_prints_the_output_and_returns_the_exit_code(site):
    ctl, _a, _b = site
    done = outpost(
        ctl, "exec", "remote-a", "web", "--", "sh", "-c", "echo out-text; echo err-text >&2; exit 7"
    )
    assert done.stdout == b"out-text\n", done.stderr
    assert done.stderr == b"err-text\n"
    assert done.returncode == 7


def test_outpost_exec_passes_stdin_with_dash_i(site):
    ctl, _a, _b = site
    done = outpost(
        ctl, "exec", "-i", "remote-a", "web", "--", "tr", "a-z", "A-Z", input_bytes=b"hello\n"
    )
    assert (done.stdout, done.returncode) == (b"HELLO\n", 0)


def test_a_viewer_cannot_create_a_grant(site):
    ctl, _a, _b = site
    viewer = make_token(ctl, "remote-viewer", "viewer")
    r = ctl.api(
        "POST",
        "/remote/grants",
        json={"node": "remote-a", "kind": "exec", "app": "web"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 403
    assert ctl.api("GET", "/remote/grants", headers={"Authorization": f"Bearer {viewer}"}).ok


def test_an_operator_cannot_grant_a_node_shell(site):
    ctl, _a, _b = site
    operator = make_token(ctl, "remote-operator", "operator")
    r = ctl.api(
        "POST",
        "/remote/grants",
        json={"node": "remote-a", "kind": "shell"},
        headers={"Authorization": f"Bearer {operator}"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")


def _live_session(ctl: ControllerServer, grant: str):  # type: ignore[no-untyped-def]
    """A session running `cat` (it waits for input): (view, ws) once the node is attached."""
    view, ws = _open(ctl, grant, ["cat"])
    ws.send(data_frame(STDIN, b"ping\n"))
    while True:
        message = ws.recv(timeout=15)
        if isinstance(message, bytes) and split_frame(message)[1] == b"ping\n":
            return view, ws


def _closed_within(ws, seconds: float) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    reason = ""
    try:
        for message in ws:
            if isinstance(message, str) and json.loads(message).get("type") == "closed":
                reason = json.loads(message)["reason"]
    except Exception:
        pass
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"closed after {elapsed:.2f} s"
    return elapsed, reason


def test_revoking_a_grant_closes_its_live_session_within_2_s(site):
    ctl, _a, _b = site
    grant = _grant(ctl)["id"]
    view, ws = _live_session(ctl, grant)
    ctl.api("POST", f"/remote/grants/{grant}/revoke").raise_for_status()
    elapsed, reason = _closed_within(ws, 2.0)
    assert "revoked" in reason
    ended = _wait_session(ctl, view["id"], "ended")
    assert "revoked" in ended["end_reason"]
    print(f"\nrevoked → closed in {elapsed * 1000:.0f} ms")


def test_an_expiring_grant_closes_its_live_session_within_2_s(site):
    ctl, _a, _b = site
    grant = _grant(ctl, duration_s=60)
    expires = (
        time.mktime(time.strptime(grant["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    )
    # a grant lasts at least 60 s: wait for the end of this one, then time the close
    _view, ws = _live_session(ctl, grant["id"])
    time.sleep(max(0.0, expires - time.time() - 0.5))
    _elapsed, reason = _closed_within(ws, 2.5)
    assert "expired" in reason
    assert time.time() - expires < 2.0


def test_a_grant_for_node_a_is_refused_by_node_b(site):
    ctl, node_a, node_b = site
    grant = _grant(ctl, node="remote-a")["id"]
    view, ws = _open(ctl, grant, ["echo", "hi"])
    ws.close()
    # node B's agent is handed node A's signed grant (as a misrouted or replayed offer)
    offer_wire = _offer_for(ctl, node_a, view["id"])
    with pytest.raises(Exception, match="not this node"):
        assert node_b.remote is not None
        node_b.remote.open_endpoint(offer_wire)


def _offer_for(ctl: ControllerServer, node: SimNode, session_id: str) -> SessionOffer:
    """The offer the controller makes node ``node`` for a session (read as its agent)."""
    from controller.remote.grants import signed_claims  # the controller's own signing
    from controller.store.database import Database
    from controller.store.models import Node, RemoteGrant, RemoteSession
    from controller.store.pki import load_pki

    db = Database(f"sqlite:///{ctl.data_dir / 'outpost.db'}")
    with db.transaction() as s:
        row = s.query(RemoteSession).filter_by(uuid=session_id).one()
        grant = s.get(RemoteGrant, row.grant_id)
        db_node = s.get(Node, row.node_id)
        assert grant is not None and db_node is not None
        claims = signed_claims(grant, db_node, load_pki(ctl.data_dir / "pki").signing)
    return SessionOffer(
        session_id=session_id, grant=claims, kind="exec", command=["echo", "hi"], tty=False
    )


def test_the_recording_holds_what_the_terminal_showed(site):
    ctl, _a, _b = site
    grant = _grant(ctl)["id"]
    view, ws = _open(ctl, grant, ["sh", "-c", "printf 'recorded-line\\n'; exit 0"], tty=True)
    for _message in ws:
        pass
    _wait_session(ctl, view["id"], "ended")
    cast = ctl.api("GET", f"/remote/sessions/{view['id']}/recording")
    assert cast.status_code == 200
    lines = cast.text.splitlines()
    head = json.loads(lines[0])
    assert head["version"] == 2 and head["width"] == 80
    shown = "".join(e[2] for e in map(json.loads, lines[1:]) if e[1] == "o")
    assert "recorded-line" in shown
    events = [json.loads(line) for line in lines[1:]]
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(events))


def test_session_end_is_audited_with_bytes_and_duration(site):
    ctl, _a, _b = site
    done = outpost(ctl, "exec", "remote-a", "web", "--", "echo", "audited")
    assert done.returncode == 0
    sid = next(
        v["id"]
        for v in ctl.api("GET", "/remote/sessions").json()["sessions"]
        if v["command"] == ["echo", "audited"]
    )
    _wait_session(ctl, sid, "ended")
    audit = ctl.api("GET", "/audit", params={"limit": 200}).json()
    entries = audit.get("events", audit) if isinstance(audit, dict) else audit
    ends = [e for e in entries if e["action"] == "remote.session.end" and e["target"] == sid]
    assert len(ends) == 1, entries[:5]
    detail = ends[0]["detail"]
    assert detail["bytes_from_node"] == len(b"audited\n")
    assert detail["duration_s"] >= 0 and detail["exit_code"] == 0


def test_sessions_per_operator_are_capped(site):
    ctl, _a, _b = site
    ctl.api("PUT", "/remote/policy", json={"max_sessions_per_actor": 2}).raise_for_status()
    try:
        grant = _grant(ctl)["id"]
        held = [_live_session(ctl, grant) for _ in range(2)]
        r = ctl.api("POST", "/remote/sessions", json={"grant": grant, "command": ["cat"]})
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_sessions")
        for _view, ws in held:
            ws.close()
    finally:
        ctl.api("PUT", "/remote/policy", json={"max_sessions_per_actor": 8}).raise_for_status()


def _writer(command: str) -> int:
    """The pid of the process running ``command`` (the node's endpoint, started here)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.strip() == command:
            return int(entry.name)
    raise AssertionError(f"no process {command!r}")


def test_a_slow_reader_holds_the_node_back_instead_of_filling_memory(site):
    """The operator reads nothing while the node's command writes 32 MiB: the command is
    held back after a bounded amount (socket buffers and one message per hop), and
    everything arrives once the operator reads."""
    ctl, _a, _b = site
    grant = _grant(ctl)["id"]
    total = 32 * 1024 * 1024  # recorded too: well below the 64 MiB recording limit
    view, ws = _open(ctl, grant, ["sh", "-c", f"head -c {total} /dev/zero | tr '\\0' a"])
    deadline = time.monotonic() + 15
    while True:
        try:
            pid = _writer("tr \\0 a")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    written = []
    for _ in range(20):  # 2 s in which it could write 64 MiB many times over
        io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        written.append(int(io["wchar"]))
        time.sleep(0.1)
    assert written[-1] == written[-5], f"the writer did not stall: {written}"
    assert written[-1] < 16 * 1024 * 1024, f"{written[-1]} bytes went out before anyone read"
    received = 0
    for message in ws:
        if isinstance(message, bytes):
            received += len(split_frame(message)[1])
    ended = _wait_session(ctl, view["id"], "ended")
    assert received == total, ended["end_reason"]
    assert ended["bytes_from_node"] == total
    print(f"\nbytes the writer got out before the reader read: {written[-1]}")


def test_a_forward_session_records_metadata_only(site):
    ctl, _node_a, _b = site
    r = ctl.api(
        "POST",
        "/remote/grants",
        json={"node": "remote-a", "kind": "forward", "app": "web", "port": 80},
    )
    assert r.status_code == 201, r.text
    view = ctl.api("POST", "/remote/sessions", json={"grant": r.json()["id"]}).json()
    assert view["recorded"] is False
    assert ctl.api("GET", f"/remote/sessions/{view['id']}/recording").status_code == 404
    ctl.api("POST", f"/remote/sessions/{view['id']}/close").raise_for_status()


def test_a_grant_at_an_approval_site_waits_for_a_second_person(site):
    ctl, _a, _node_b = site
    ctl.api("PUT", "/remote/policy", json={"approval_sites": ["secure"]}).raise_for_status()
    ctl.api("PATCH", "/nodes/remote-b", json={"labels": {"site": "secure"}}).raise_for_status()
    try:
        grant = _grant(ctl, node="remote-b")
        assert grant["state"] == "awaiting-approval"
        r = ctl.api("POST", "/remote/sessions", json={"grant": grant["id"], "command": ["true"]})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "grant_awaiting_approval")
        me = ctl.api("POST", f"/remote/grants/{grant['id']}/approve")
        assert (me.status_code, me.json()["error"]["code"]) == (403, "second_person")
        other = make_token(ctl, "remote-approver", "operator")
        ok = ctl.api(
            "POST",
            f"/remote/grants/{grant['id']}/approve",
            headers={"Authorization": f"Bearer {other}"},
        )
        assert ok.status_code == 200 and ok.json()["approved_by"] == "token:remote-approver"
        done = outpost(ctl, "exec", "--grant", grant["id"], "remote-b", "web", "--", "echo", "ok")
        assert (done.returncode, done.stdout) == (0, b"ok\n"), done.stderr
    finally:
        ctl.api("PATCH", "/nodes/remote-b", json={"labels": {}}).raise_for_status()
        ctl.api("PUT", "/remote/policy", json={"approval_sites": []}).raise_for_status()


def test_a_node_shell_is_refused_by_the_node_without_debug_access(site):
    ctl, _node_a, _b = site
    grant = ctl.api("POST", "/remote/grants", json={"node": "remote-a", "kind": "shell"}).json()
    view, ws = _open(ctl, grant["id"], [], tty=True)
    messages = [json.loads(m) for m in ws if isinstance(m, str)]
    assert any(m["type"] == "error" and "no debug access" in m["message"] for m in messages)
    ended = _wait_session(ctl, view["id"], "ended")
    assert "no debug access" in ended["end_reason"]


def test_a_node_shell_opens_where_debug_access_is_on(site):
    ctl, node_a, _b = site
    ctl.api("PATCH", "/nodes/remote-a", json={"settings": {"debug_ssh": True}}).raise_for_status()
    try:
        node_a.refresh()
        grant = ctl.api("POST", "/remote/grants", json={"node": "remote-a", "kind": "shell"}).json()
        view, ws = _open(ctl, grant["id"], [], tty=True)
        ws.send(data_frame(STDIN, b"echo shell-$((6*7)); exit 0\r"))
        shown = b"".join(split_frame(m)[1] for m in ws if isinstance(m, bytes))
        assert b"shell-42" in shown
        assert _wait_session(ctl, view["id"], "ended")["exit_code"] == 0
    finally:
        ctl.api("PATCH", "/nodes/remote-a", json={"settings": {}}).raise_for_status()
        node_a.refresh()


def test_an_idle_session_is_closed(site):
    ctl, _a, _b = site
    ctl.api("PUT", "/remote/policy", json={"idle_timeout_s": 10}).raise_for_status()
    try:
        grant = _grant(ctl)["id"]
        _view, ws = _live_session(ctl, grant)
        _elapsed, reason = _closed_within(ws, 14.0)
        assert reason == "idle for 10 s"
    finally:
        ctl.api("PUT", "/remote/policy", json={"idle_timeout_s": 900}).raise_for_status()
