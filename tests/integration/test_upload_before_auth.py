"""Limits before parsing, on the real server (gunicorn, gevent, TLS): a request declaring a
2 GiB body to an upload endpoint is answered 401/400 while only its first bytes have been
sent — nothing was read, so nothing was spooled — unless the caller is authenticated and
(for the form) its CSRF token checked; the server's temp dir stays empty."""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.controller_server import ControllerServer, running_controller

pytestmark = pytest.mark.integration
DECLARED = 2 * 1024**3 - 1
SENT = 64 * 1024
BOUNDARY = "outpostboundary"


@pytest.fixture
def ctl(tmp_path: Path, ek_ca: Any) -> Iterator[ControllerServer]:
    spool = tmp_path / "server-tmp"
    spool.mkdir()
    env = {**os.environ, "TMPDIR": str(spool)}
    password = ["--admin-password-file", str(tmp_path / "admin-ui-password")]
    with running_controller(
        tmp_path, ek_ca_bundle=ek_ca.bundle_path(), env=env, init_args=password
    ) as server:
        server.spool = spool  # type: ignore[attr-defined]
        yield server


def _send_head(ctl: ControllerServer, path: str, headers: dict[str, str]) -> ssl.SSLSocket:
    """Open TLS, send the request head declaring a 2 GiB body and the first 64 KiB of it."""
    port = int(ctl.url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(ctl.root_ca))
    sock = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
    )
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {DECLARED}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="up-file"; filename="x"\r\n\r\n'
    sock.sendall(part.encode() + b"\0" * (SENT - len(part)))
    return sock


def _status_without_the_body(sock: ssl.SSLSocket, timeout: float = 15.0) -> int | None:
    """The status the server answers while the client sends no more (None: it waits)."""
    sock.settimeout(timeout)
    try:
        line = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    except TimeoutError:
        return None
    finally:
        sock.close()
    return int(line.split()[1])


def _nothing_spooled(ctl: ControllerServer) -> None:
    """No file in the server's temp dir, and no open temp file (werkzeug spools to an
    unlinked one) holding a byte; gunicorn's empty worker heartbeat files are there."""
    assert list(ctl.spool.iterdir()) == []  # type: ignore[attr-defined]
    pids = [ctl.process.pid] + [
        int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == ctl.process.pid
    ]
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if str(ctl.spool) in target or "(deleted)" in target:
                assert os.stat(fd).st_size == 0, target


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_an_anonymous_ui_upload_is_refused_before_any_byte_is_read(ctl):
    sock = _send_head(ctl, "/ui/images/upload", MULTIPART)
    assert _status_without_the_body(sock) == 401
    _nothing_spooled(ctl)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/images?name=x&format=raw&sha256=" + "a" * 64,
        "/api/v1/agent-releases?version=1.0.0&sha256=" + "a" * 64,
    ],
)
def test_an_anonymous_api_upload_is_refused_before_any_byte_is_read(ctl, path):
    sock = _send_head(ctl, path, {"Content-Type": "application/octet-stream"})
    assert _status_without_the_body(sock) == 401
    _nothing_spooled(ctl)


def _ui_session(ctl: ControllerServer) -> tuple[requests.Session, str]:
    """Log in to the UI as the admin; the session and the images page's CSRF token."""
    s, ca = requests.Session(), str(ctl.root_ca)  # verify= per call: env CA bundles win else
    page = s.get(f"{ctl.url}/ui/login", verify=ca).text
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
    assert token is not None
    password = (ctl.data_dir.parent / "admin-ui-password").read_text().strip()
    r = s.post(
        f"{ctl.url}/ui/login",
        data={"username": "admin", "password": password, "csrf_token": token.group(1)},
        headers={"Referer": f"{ctl.url}/ui/login"},
        allow_redirects=False,
        verify=ca,
    )
    assert r.status_code == 302, r.text[-500:]
    images = s.get(f"{ctl.url}/ui/images", verify=ca).text
    action = re.search(r'action="/ui/images/upload\?csrf_token=([^"]+)"', images)
    assert action is not None
    return s, action.group(1)


def test_a_logged_in_upload_without_its_csrf_token_is_refused_before_reading(ctl):
    session, _token = _ui_session(ctl)
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    sock = _send_head(ctl, "/ui/images/upload", {**MULTIPART, "Cookie": cookie})
    assert _status_without_the_body(sock) == 400
    _nothing_spooled(ctl)


def test_an_authenticated_upload_with_its_token_is_read(ctl):
    """The control: the same head from a logged-in operator with the form's token is
    admitted, so the server reads on and waits for the rest of the body."""
    session, token = _ui_session(ctl)
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    headers = {**MULTIPART, "Cookie": cookie, "Referer": f"{ctl.url}/ui/images"}
    sock = _send_head(ctl, f"/ui/images/upload?csrf_token={token}", headers)
    assert _status_without_the_body(sock, timeout=3.0) is None
