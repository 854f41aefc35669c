"""Free-port helpers so that parallel tests (and parallel engineers) never collide.

Every peer in the rig binds to 127.0.0.1 on a port picked here instead of a fixed
number. The kernel picks ephemeral ports for :func:`free_udp_port` and
:func:`free_tcp_port`; there is an unavoidable window between closing the probe
socket and the peer binding it, so ports are also remembered per process and never
handed out twice, which removes the collisions between peers of one test run.

Port ranges used by the rig, chosen to stay apart: kernel ephemeral ports
(32768-60999 on Debian) for SIP/control sockets, :func:`free_port_pair` defaults to
10000-19999 (SIPp media, gateway RTP in tests), baresip picks its RTP ports in
20000-31999 itself.
"""

from __future__ import annotations

import random
import socket
import threading

HOST = "127.0.0.1"

_lock = threading.Lock()
_handed_out: set[tuple[str, int]] = set()


def _claim(kind: str, port: int) -> bool:
    """Remember a port for this process; False if it was already handed out."""
    with _lock:
        if (kind, port) in _handed_out:
            return False
        _handed_out.add((kind, port))
        return True


def _bind_ok(kind: int, port: int, host: str = HOST) -> bool:
    """True when a socket of ``kind`` can bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _kernel_port(kind: int, host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = HOST) -> int:
    """A UDP port on ``host`` that is free now and not yet handed out by this process."""
    for _ in range(200):
        port = _kernel_port(socket.SOCK_DGRAM, host)
        if _claim("udp", port):
            return port
    raise RuntimeError("no free UDP port found")


def free_tcp_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that is free now and not yet handed out by this process."""
    for _ in range(200):
        port = _kernel_port(socket.SOCK_STREAM, host)
        if _claim("tcp", port):
            return port
    raise RuntimeError("no free TCP port found")


def free_sip_port(host: str = HOST, also_next_tcp: bool = False) -> int:
    """A port free for both UDP and TCP (SIP peers open both on the same number).

    ``also_next_tcp``: also require ``port + 1`` free for TCP, because baresip opens
    its SIP/TLS listener there whether or not TLS is configured.
    """
    for _ in range(200):
        port = _kernel_port(socket.SOCK_DGRAM, host)
        if port >= 65535 or not _bind_ok(socket.SOCK_STREAM, port, host):
            continue
        if also_next_tcp and not _bind_ok(socket.SOCK_STREAM, port + 1, host):
            continue
        if not (_claim("udp", port) and _claim("tcp", port)):
            continue
        if also_next_tcp and not _claim("tcp", port + 1):
            continue
        return port
    raise RuntimeError("no port free for both UDP and TCP found")


def free_port_pair(low: int = 10000, high: int = 20000, host: str = HOST, span: int = 2) -> int:
    """An even UDP port ``p`` in ``[low, high)`` such that ``p`` .. ``p + span - 1`` are all free.

    RTP wants an even port with RTCP on the next odd one (RFC 3550 section 11); SIPp also binds
    its video pair on the next two (``span=4``). The start is random so that concurrent callers
    rarely probe the same ports.
    """
    if high - low < span:
        raise ValueError("range too small for an RTP/RTCP pair")
    first_even = low + (low % 2)
    candidates = list(range(first_even, high - span + 1, 2))
    random.shuffle(candidates)
    for port in candidates:
        ports = range(port, port + span)
        if not all(_bind_ok(socket.SOCK_DGRAM, p, host) for p in ports):
            continue
        claimed = [p for p in ports if _claim("udp", p)]
        if len(claimed) == span:
            return port
        with _lock:
            for p in claimed:
                _handed_out.discard(("udp", p))
    raise RuntimeError(f"no free RTP/RTCP port pair in [{low}, {high})")
