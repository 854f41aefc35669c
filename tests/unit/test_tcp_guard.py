"""The TCP guard's view of this process's connections (real sockets on loopback, no pjsip)."""

from __future__ import annotations

import socket

from gateway.sip import tcp_guard
from gateway.sip.tcp_guard import TcpGuard, established_peers


def accepted_pair() -> tuple[socket.socket, socket.socket, socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    return listener, client, server, port


def test_sees_accepted_connections_and_what_they_received():
    listener, client, server, port = accepted_pair()
    with listener, client, server:
        (peer,) = established_peers(port)
        assert peer.remote == client.getsockname() and peer.bytes_received == 0 and peer.idle_ms < 1000
        client.sendall(b"OPTIONS sip:x SIP/2.0\r\n")
        server.recv(100)
        (peer,) = established_peers(port)
        assert peer.bytes_received == 23
    assert established_peers(port) == []


def test_closes_untrusted_at_once_and_silent_after_the_limit(monkeypatch):
    listener, client, server, port = accepted_pair()
    with listener, client, server:
        TcpGuard(port, trusted=lambda ip: True).check()
        assert established_peers(port)  # trusted and young: kept
        monkeypatch.setattr(tcp_guard, "IDLE_FIRST_BYTE_S", 0.0)
        guard = TcpGuard(port, trusted=lambda ip: True)
        guard.check()
        client.settimeout(2)
        assert client.recv(10) == b"" and guard.closed == 1
    listener, client, server, port = accepted_pair()
    with listener, client, server:
        guard = TcpGuard(port, trusted=lambda ip: ip != "127.0.0.1")
        guard.check()
        client.settimeout(2)
        assert client.recv(10) == b"" and guard.closed == 1
