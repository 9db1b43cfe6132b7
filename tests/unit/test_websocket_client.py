"""The remote-session WebSocket client drives TLS from one thread (protocol.websocket_client).

The server here is ``websockets``' asyncio server (one thread, TLS 1.3); the controller's own
server is exercised by tests/integration/test_remote_relay.py and the end-to-end tests."""

from __future__ import annotations

import os
import resource
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request
from websockets.server import ServerProtocol

from protocol.websocket_client import connect_websocket
from tests.fixtures.wss_echo import echo_server, self_signed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(wss URL of an echo server speaking TLS 1.3, its certificate)."""
    with echo_server(tmp_path_factory.mktemp("wss")) as found:
        yield found


def test_every_connection_of_many_opens_and_echoes(server: tuple[str, Path]):
    # websockets' own TLS socket read from a second thread hung about 1 in 200 of these
    url, cert = server
    for i in range(300):
        with connect_websocket(url, str(cert), open_timeout=20) as ws:
            ws.send(f"hello {i}")
            assert ws.recv(timeout=20) == f"hello {i}"


def test_the_websocket_reads_and_writes_a_plain_socket_and_tls_stays_in_the_pump(server):
    url, cert = server
    with connect_websocket(url, str(cert)) as ws:
        assert not isinstance(ws.socket, ssl.SSLSocket)


def test_a_large_message_passes_whole_in_both_directions(server: tuple[str, Path]):
    url, cert = server
    payload = bytes(range(256)) * 16384  # 4 MiB: more than the pump buffers per direction
    with connect_websocket(url, str(cert), max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=60) == payload


def test_sending_while_another_thread_receives_loses_nothing(server: tuple[str, Path]):
    url, cert = server
    with connect_websocket(url, str(cert)) as ws:
        got: list[str | bytes] = []
        reader = threading.Thread(target=lambda: got.extend(ws.recv(20) for _ in range(500)))
        reader.start()
        for i in range(500):
            ws.send(f"m{i}")
        reader.join(60)
        assert got == [f"m{i}" for i in range(500)]


def test_the_servers_close_reaches_the_client_with_its_reason(server: tuple[str, Path]):
    url, cert = server
    ws = connect_websocket(url, str(cert))
    ws.send("bye")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=20)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.reason == "asked to leave"


def _abrupt_server(cert: Path, key: Path, messages: list[str]) -> tuple[int, threading.Thread]:
    """Answers one upgrade, sends ``messages`` and a close frame, and closes the socket at
    once, without waiting for the client's answer (as the controller's relay does)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        listener.close()
        with context.wrap_socket(conn, server_side=True) as tls:
            proto = ServerProtocol()
            while not (requests := [e for e in proto.events_received() if isinstance(e, Request)]):
                proto.receive_data(tls.recv(65536))
            proto.send_response(proto.accept(requests[0]))
            for message in messages:
                proto.send_text(message.encode())
            proto.send_close(1000, "the command exited")
            tls.sendall(b"".join(proto.data_to_send()))

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_messages_sent_just_before_the_server_closes_all_arrive(tmp_path: Path):
    cert, key = self_signed(tmp_path, "abrupt")
    sent = [f"message {i}" for i in range(6)]
    for _ in range(20):
        port, thread = _abrupt_server(cert, key, sent)
        ws = connect_websocket(f"wss://localhost:{port}/s", str(cert), max_queue=4)
        got = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                got.append(ws.recv(timeout=20))
        thread.join(20)
        assert got == sent
        assert closed.value.rcvd is not None and closed.value.rcvd.reason == "the command exited"


def test_a_server_certificate_from_another_ca_is_refused(server: tuple[str, Path], tmp_path: Path):
    url, _cert = server
    other, _key = self_signed(tmp_path, "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        connect_websocket(url, str(other))


def test_a_url_that_is_not_a_websocket_is_refused():
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        connect_websocket("https://localhost/x", None)


def test_a_connection_opened_when_file_numbers_pass_1024_works(server: tuple[str, Path]):
    # the pump once waited with select(), which refuses descriptors from 1024 up: in a
    # process with many files open (a long test worker, a busy agent) every session died
    url, cert = server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), max(hard, 2048)))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with connect_websocket(url, str(cert)) as ws:
            assert ws.socket.fileno() > 1024
            ws.send("high")
            assert ws.recv(timeout=20) == "high"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
