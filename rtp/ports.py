"""RTP/RTCP port pairs from a configured range.

RTP uses an even port and RTCP the next odd one (RFC 3550 section 11). The allocator binds both
sockets itself, so a port is only "ours" once the kernel agrees, and closing the pair is the one
way to release it: every path that ends a call (failure included) closes its `PortPair`.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


class PortsExhausted(RuntimeError):
    """No free even/odd pair is left in the range."""


@dataclass
class PortPair:
    host: str
    rtp_port: int
    rtp_socket: socket.socket
    rtcp_socket: socket.socket
    _allocator: PortAllocator | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def rtcp_port(self) -> int:
        return self.rtp_port + 1

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close both sockets and give the pair back; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self.rtp_socket.close()
        self.rtcp_socket.close()
        if self._allocator is not None:
            self._allocator._release(self.rtp_port)


class PortAllocator:
    """Hands out bound RTP/RTCP socket pairs, round-robin over the range.

    Round-robin (rather than lowest-free) avoids reusing a port a just-ended call was using,
    so late packets of that call do not land in the next one.
    """

    def __init__(self, host: str, first: int, last: int, receive_buffer: int = 256 * 1024):
        if first % 2:
            first += 1
        if last - first < 1:
            raise ValueError(f"port range {first}-{last} holds no even/odd pair")
        self.host = host
        self.first = first
        self.last = last
        self.receive_buffer = receive_buffer
        self._in_use: set[int] = set()
        self._next = first
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return (self.last - self.first + 1) // 2

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self._in_use)

    def allocate(self) -> PortPair:
        with self._lock:
            for _ in range(self.capacity):
                port = self._next
                self._next = port + 2 if port + 3 <= self.last else self.first
                if port in self._in_use:
                    continue
                pair = self._bind(port)
                if pair is not None:
                    self._in_use.add(port)
                    return pair
        raise PortsExhausted(f"no free RTP port pair in {self.first}-{self.last} on {self.host}")

    def _bind(self, port: int) -> PortPair | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sockets: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
                sock.bind((self.host, p))
                sock.setblocking(False)
        except OSError:
            for sock in sockets:
                sock.close()
            return None
        return PortPair(self.host, port, sockets[0], sockets[1], self)

    def _release(self, port: int) -> None:
        with self._lock:
            self._in_use.discard(port)
