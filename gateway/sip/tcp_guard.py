"""Keeps SIP over TCP usable when someone opens connections and sends nothing.

pjsip, as built into the pjsua2 wheel, watches its sockets with a select()-based ioqueue of 64
handles, and it keeps an accepted connection that never sends a byte open: measured, 300 idle
connections to the SIP port left 62 held open after 41 s, and every new TCP connection was reset
(SIP over UDP went on). Anyone who can reach the port could so switch TCP off for the PBX.

pjsip offers no hook at accept, so the gateway looks at the connections itself, once a second on
the SIP thread: the process's sockets (/proc/self/fd) that are established TCP connections on the
SIP port (/proc/net/tcp), and for each, the kernel's TCP_INFO. It shuts down (the same socket
pjsip holds, through a duplicate descriptor; pjsip then sees the peer leave and frees it):

- a connection from outside `sip.trusted_sources` (when set): the TCP twin of the INVITE's 403;
- a connection that has not sent a byte within `IDLE_FIRST_BYTE_S` of being opened.

A connection that has sent SIP is left to pjsip, whatever it does next: a PBX's trunk connection
may be quiet for minutes between calls. Linux only (procfs and TCP_INFO), like the rest of the gateway.

What this does not cover: a burst of connections opened and reset faster than pjlib frees the
handles of closed ones (500 ms) aborted the whole process (`pj_ioqueue_register_sock2: Assertion
'!pj_list_empty(&ioqueue->free_list)' failed`; measured, 100 connections opened and reset twice in a
row). gateway/sip/tcp_gate.py keeps that out: it stops the listener taking new connections while
the handles are nearly all taken.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from gateway.sip.stack import SipStack

log = structlog.get_logger("sip")

IDLE_FIRST_BYTE_S = 5.0
CHECK_INTERVAL_S = 1.0
ESTABLISHED = "01"  # /proc/net/tcp "st"
LISTEN = "0A"
# struct tcp_info (linux/tcp.h): tcpi_last_data_recv (u32, ms ago) and tcpi_bytes_received (u64)
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_AT = 52
_BYTES_RECEIVED = struct.Struct("=Q")
_BYTES_RECEIVED_AT = 128
_TCP_INFO_SIZE = 136


@dataclass(frozen=True)
class TcpPeer:
    """One established connection on the SIP port, as the kernel sees it."""

    fd: int
    remote: tuple[str, int]
    idle_ms: int  # since the last byte received (since the connection was made, if none)
    bytes_received: int


class TcpGuard:
    """Checks the SIP port's TCP connections once a second, on the SIP thread (`start`)."""

    def __init__(self, port: int, trusted: Callable[[str], bool]):
        self.port = port
        self._trusted = trusted  # source IP -> allowed (sip.trusted_sources; always true when unset)
        self.closed = 0

    def start(self, stack: SipStack) -> None:
        """Check every second from now on (SIP thread)."""

        def tick() -> None:
            try:
                self.check()
            finally:
                stack.call_later(CHECK_INTERVAL_S, tick)

        stack.call_later(CHECK_INTERVAL_S, tick)

    def check(self) -> None:
        for peer in established_peers(self.port):
            host, port = peer.remote
            if not self._trusted(host):
                self._close(peer, "untrusted_source")
                log.warning("sip_security_event", kind="untrusted_tcp", src_ip=host, source=f"{host}:{port}",
                            response="connection closed")
            elif peer.bytes_received == 0 and peer.idle_ms >= IDLE_FIRST_BYTE_S * 1000:
                self._close(peer, "silent")
                log.warning("sip_tcp_closed", reason="nothing sent", source=f"{host}:{port}",
                            after_s=round(peer.idle_ms / 1000, 1))

    def _close(self, peer: TcpPeer, why: str) -> None:
        try:
            with socket.socket(fileno=os.dup(peer.fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            self.closed += 1
        except OSError as exc:  # it went away meanwhile
            log.debug("sip_tcp_close_failed", why=why, error=str(exc))


def established_peers(port: int) -> list[TcpPeer]:
    """This process's established TCP connections whose local port is `port` (accepted ones)."""
    inodes = sockets_on((port,), ESTABLISHED)
    peers = []
    for fd, inode in own_sockets(inodes).items():
        info = _tcp_info(fd)
        if info is not None:
            peers.append(TcpPeer(fd, inodes[inode], *info))
    return peers


def own_sockets(inodes: Collection[str]) -> dict[int, str]:
    """fd -> inode of this process's descriptors that are one of the sockets `inodes` (/proc/self/fd)."""
    found: dict[int, str] = {}
    if not inodes:
        return found
    for entry in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            found[int(entry.name)] = target[8:-1]
    return found


def sockets_on(ports: Collection[int], state: str) -> dict[str, tuple[str, int]]:
    """inode -> remote (host, port) of the TCP sockets in `state` on a local port in `ports` (IPv4 and IPv6)."""
    found: dict[str, tuple[str, int]] = {}
    for table, parse in (("/proc/net/tcp", _ipv4), ("/proc/net/tcp6", _ipv6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if fields[3] == state and int(local.rsplit(":", 1)[1], 16) in ports:
                host_hex, port_hex = remote.rsplit(":", 1)
                found[inode] = (parse(host_hex), int(port_hex, 16))
    return found


def _ipv4(hex_host: str) -> str:
    return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_host)[::-1])


def _ipv6(hex_host: str) -> str:
    raw = bytes.fromhex(hex_host)
    address = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return address.removeprefix("::ffff:")  # an IPv4 peer on a dual-stack socket


def _tcp_info(fd: int) -> tuple[int, int] | None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _TCP_INFO_SIZE:
        return None
    (idle_ms,) = _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_AT)
    (received,) = _BYTES_RECEIVED.unpack_from(info, _BYTES_RECEIVED_AT)
    return idle_ms, received
