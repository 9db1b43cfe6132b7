"""The agent's HTTP(S) client (node_agent.https) against a real TLS server and a real
CONNECT proxy in threads: pinned trust, keep-alive, bounded answers, streamed ranges,
proxies and no_proxy from the environment, timeouts."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node_agent.https import HttpsClient, TransportError, proxy_for
from tests.fixtures.wss_echo import self_signed

BLOB = bytes(range(256)) * 400  # 102,400 bytes


@dataclass
class _Server:
    url: str
    ca: Path
    connections: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _TlsServer

    def setup(self) -> None:
        super().setup()
        self.server.state.connections.append(self.client_address[1])

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = {"got": json.loads(body), "port": self.client_address[1]}
        self._send(200, json.dumps(answer).encode())

    def do_GET(self) -> None:
        self.server.state.paths.append(self.path)
        if self.path == "/close":
            self._send(200, b"{}", close=True)
            self.close_connection = True
        elif self.path == "/hang":
            self.server.state.release.wait(30)
        elif self.path == "/blob":
            start = int(self.headers.get("Range", "bytes=0-")[6:-1] or 0)
            self._send(206 if start else 200, BLOB[start:])
        else:
            self._send(404, b"")


class _TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: _Server


@contextlib.contextmanager
def _tls_server(directory: Path) -> Iterator[_Server]:
    cert, key = self_signed(directory, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _TlsServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.state = _Server(f"https://localhost:{server.server_address[1]}", cert)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.state.release.set()
        server.shutdown()
        server.server_close()


@dataclass
class _Proxy:
    port: int
    heads: list[str] = field(default_factory=list)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def _connect_proxy() -> Iterator[_Proxy]:
    """An HTTP proxy that only does CONNECT, and records each request head."""
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = _Proxy(listener.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            text = head.decode()
            proxy.heads.append(text)
            host, _, port = text.split()[1].rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield proxy
    finally:
        listener.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    with _tls_server(tmp_path) as found:
        yield found


@pytest.fixture(autouse=True)
def _no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "http_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_answers_come_over_tls_pinned_to_the_root_on_one_kept_connection(server: _Server):
    http = HttpsClient(timeout_s=10)
    ports = set()
    for n in range(3):
        answer = http.request(
            "POST", f"{server.url}/echo", json_body={"n": n}, ca_file=str(server.ca)
        )
        assert answer.status_code == 200 and answer.json()["got"] == {"n": n}
        ports.add(answer.json()["port"])
    assert len(ports) == 1 and len(server.connections) == 1


def test_a_server_certificate_from_another_ca_is_refused(server: _Server, tmp_path: Path):
    other, _key = self_signed(tmp_path, "other")
    with pytest.raises(TransportError, match="certificate verify failed"):
        HttpsClient(timeout_s=10).request("GET", f"{server.url}/blob", ca_file=str(other))


def test_without_a_pinned_root_a_private_certificate_is_refused(server: _Server):
    with pytest.raises(TransportError, match="certificate verify failed"):
        HttpsClient(timeout_s=10).request("GET", f"{server.url}/blob", ca_file=None)


def test_a_connection_the_server_closed_is_replaced_before_the_next_request(server: _Server):
    http = HttpsClient(timeout_s=10)
    assert http.request("GET", f"{server.url}/close", ca_file=str(server.ca)).status_code == 200
    answer = http.request("POST", f"{server.url}/echo", json_body=[1], ca_file=str(server.ca))
    assert answer.json()["got"] == [1] and len(server.connections) == 2


def test_an_answer_longer_than_the_bound_is_cut_and_marked(server: _Server):
    http = HttpsClient(timeout_s=10)
    answer = http.request("GET", f"{server.url}/blob", ca_file=str(server.ca), max_bytes=1000)
    assert answer.truncated and answer.content == BLOB[:1000]
    whole = http.request("GET", f"{server.url}/blob", ca_file=str(server.ca))
    assert not whole.truncated and whole.content == BLOB


def test_a_stream_reads_the_rest_of_a_resumed_download_as_it_arrives(server: _Server):
    http = HttpsClient(timeout_s=10)
    with http.stream(
        "GET", f"{server.url}/blob", headers={"Range": "bytes=1000-"}, ca_file=str(server.ca)
    ) as resp:
        assert resp.status_code == 206
        assert b"".join(resp.iter_content(4096)) == BLOB[1000:]


def test_https_goes_through_the_environments_proxy_with_its_credentials(
    server: _Server, monkeypatch: pytest.MonkeyPatch
):
    with _connect_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://agent:s%40cret@127.0.0.1:{proxy.port}")
        answer = HttpsClient(timeout_s=10).request(
            "POST", f"{server.url}/echo", json_body={"via": "proxy"}, ca_file=str(server.ca)
        )
    assert answer.json()["got"] == {"via": "proxy"}
    (head,) = proxy.heads
    port = server.url.rsplit(":", 1)[1]
    assert head.startswith(f"CONNECT localhost:{port} ")
    assert "Proxy-Authorization: Basic YWdlbnQ6c0BjcmV0" in head  # agent:s@cret


def test_a_host_named_in_no_proxy_is_reached_directly(
    server: _Server, monkeypatch: pytest.MonkeyPatch
):
    with _connect_proxy() as proxy:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "example.org,localhost")
        answer = HttpsClient(timeout_s=10).request(
            "GET", f"{server.url}/blob", ca_file=str(server.ca)
        )
    assert answer.content == BLOB and proxy.heads == []


@pytest.mark.parametrize(
    ("host", "direct"),
    [
        ("10.1.2.3", True),
        ("192.168.1.1", False),
        ("images.example.com", True),
        ("example.com", True),
        ("notexample.com", False),
        ("controller.local", False),
    ],
)
def test_no_proxy_takes_networks_and_domain_suffixes(monkeypatch, host, direct):
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "10.0.0.0/8, .example.com")
    assert (proxy_for("https", host, 443) is None) is direct


def test_a_server_that_does_not_answer_in_time_is_a_transport_error(server: _Server):
    with pytest.raises(TransportError, match="timed out"):
        HttpsClient(timeout_s=0.3).request("GET", f"{server.url}/hang", ca_file=str(server.ca))


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(TransportError, match="not an http"):
        HttpsClient().request("GET", "ftp://example.invalid/x")


def test_the_agent_runs_without_requests_loaded():
    """requests and urllib3 were ~8 MiB of the agent's memory: nothing the agent imports
    may bring them back."""
    code = (
        "import sys, node_agent.cli, node_agent.runtime.vm, node_agent.remote.service;"
        " print(sorted(m for m in ('requests', 'urllib3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_url_with_characters_outside_ascii_is_sent_percent_encoded(server: _Server):
    answer = HttpsClient(timeout_s=10).request(
        "GET", f"{server.url}/blob\u00a0caf\u00e9%20x", ca_file=str(server.ca)
    )
    assert answer.status_code == 404  # reached the server, which knows no such path
    assert server.paths[-1] == "/blob%C2%A0caf%C3%A9%20x"
