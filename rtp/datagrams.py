"""Reading a media socket: every datagram waiting, each with the kernel's arrival time.

Jitter estimates (RFC 3550 and the jitter buffer's) want the time a packet reached the host, not
the media tick that happened to read it up to 20 ms later: SO_TIMESTAMPNS has the kernel stamp
each datagram, and the stamp (wall clock) is brought onto the monotonic clock the session runs on.
Without it (option refused) the tick time stands in.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

import structlog

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESTAMP_CMSG = struct.Struct("@qq")
_RECV_SIZE = 2048


def stamp_arrivals(sock: socket.socket) -> None:
    """Ask the kernel to stamp every datagram `sock` receives (best effort)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def read_datagrams(sock: socket.socket, now: float, realtime_offset: float,
                   log: structlog.typing.FilteringBoundLogger) -> Iterator[tuple[bytes, tuple[str, int], float]]:
    """Yield (data, source, arrival time on the monotonic clock) for every datagram waiting on the
    non-blocking `sock`. `realtime_offset` is wall clock minus monotonic clock."""
    while True:
        try:
            data, ancdata, _flags, source = sock.recvmsg(_RECV_SIZE, 64)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionRefusedError:  # ICMP port unreachable for an earlier send: go on
            continue
        except OSError as exc:
            log.warning("rtp_socket_error", error=str(exc))
            return
        arrival = now
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cmsg) >= 16:
                sec, nsec = _TIMESTAMP_CMSG.unpack_from(cmsg)
                arrival = sec + nsec * 1e-9 - realtime_offset
        yield data, source, arrival
