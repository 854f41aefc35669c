"""Keeps a burst of TCP connections from aborting the process: the SIP listeners stop taking new
connections while pjlib's table of socket handles is nearly full.

Why the process aborted (measured with 100 connections opened and reset twice within a second,
pjsua2 wheel 2.15.1): pjsip watches every socket through one ioqueue (`pj_ioqueue_create(...,
PJSIP_MAX_TRANSPORTS)`) with 64 keys (PJ_IOQUEUE_MAX_HANDLES). A closed socket's key is not free
at once: it waits 500 ms on a closing list (PJ_IOQUEUE_KEY_FREE_DELAY, PJ_IOQUEUE_HAS_SAFE_UNREG).
`pj_ioqueue_register_sock2` refuses a socket when the *active* keys reach 64, but then takes a key
from the free list with `pj_assert(!pj_list_empty(&ioqueue->free_list))` first; the wheel keeps
asserts, so when active plus closing keys reach 64 before the closing ones are 500 ms old, the
65th accept aborts the process. pjsip accepts everything the kernel has queued (its accept loop
goes on until accept() would block) and offers no hook before a key is taken.

What the gate does: pjsip tells the application of every TCP/TLS transport connected and
destroyed (Endpoint.onTransportState, on the SIP thread, inside the accept loop, just after the
key was taken). `KeyCount` counts the keys those transports hold: alive, plus destroyed within
the last 500 ms (with a margin). When the count reaches `close_at`, `ListenerDoor` attaches a
one-instruction classic BPF program that drops every packet to the listening sockets
(SO_ATTACH_FILTER): the kernel completes no new handshake, the client's SYN goes unanswered and it
retries (1 s, then 3 s later) as after any lost packet. Connections already up are untouched (the
filter sits on the listener; a child socket inherits it only if made while it is attached, and the
dropped handshake makes none). Once the count is down to `open_at` the filter is detached.

Budget: 64 keys, less `RESERVED` (the UDP, TCP and TLS listeners, pjsua's media transports: RTP
and RTCP for each of its at most 4 calls, a few outgoing connects not yet reported), less what
can still arrive once the door is shut (each listener's accept queue: backlog 5, the kernel
queues one more). A TLS connection is counted from the end of its handshake only (that is when
pjsip reports it), so a burst of TLS handshakes is only held off by the margin; TCP is exact.
"""

from __future__ import annotations

import ctypes
import enum
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.sip.tcp_guard import LISTEN, own_sockets, sockets_on

log = structlog.get_logger("sip")

IOQUEUE_KEYS = 64  # PJ_IOQUEUE_MAX_HANDLES in the wheel's pjlib
KEY_FREE_DELAY_S = 0.5  # PJ_IOQUEUE_KEY_FREE_DELAY
FREE_MARGIN_S = 0.3  # the key is freed at the next register/poll after 500 ms, not on the dot
RESERVED = 16  # listeners (3), pjsua media transports (2 x PJSUA_MAX_CALLS 4), connects in progress
ACCEPT_QUEUE = 6  # PJSIP_TCP_TRANSPORT_BACKLOG 5, plus the one more the kernel queues
REOPEN_BELOW = 8  # hysteresis: reopen this many keys under the closing mark
RECHECK_S = 0.1  # while shut, how often to look whether freed keys have come back

SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h (not in Python's socket module)
SO_DETACH_FILTER = 27
# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: BPF_RET | BPF_K with k = 0, "keep 0 bytes" = drop
_DROP_ALL = struct.pack("=HBBI", 0x06, 0, 0, 0)


class TransportState(enum.Enum):
    """pjsip_transport_state, as pjsua2 reports it (OnTransportStateParam.state)."""

    CONNECTED = 0
    DISCONNECTED = 1
    SHUTDOWN = 2
    DESTROY = 3
    OTHER = -1

    @classmethod
    def of(cls, value: int) -> TransportState:
        try:
            return cls(value)
        except ValueError:
            return cls.OTHER


@dataclass(frozen=True)
class TransportChange:
    """One onTransportState callback: which transport (its handle), of what type, and what happened."""

    handle: int
    kind: str  # pjsip's type name: "TCP", "TLS", "UDP", ...
    state: TransportState

    @property
    def connection(self) -> bool:
        """A connection-oriented transport: one ioqueue key per connection."""
        return self.kind.upper().startswith(("TCP", "TLS"))


class KeyCount:
    """The ioqueue keys held by TCP/TLS connections: alive ones and those freed less than ~0.8 s ago."""

    def __init__(self, listeners: int, capacity: int = IOQUEUE_KEYS, reserved: int = RESERVED):
        self.close_at = capacity - reserved - ACCEPT_QUEUE * listeners
        self.open_at = self.close_at - REOPEN_BELOW
        if self.open_at <= 0:
            raise ValueError(f"no room for connections: {capacity} keys, {reserved} reserved, {listeners} listeners")
        self._alive: set[int] = set()
        self._freed: deque[float] = deque()  # monotonic times of DESTROY, oldest first

    def change(self, change: TransportChange, now: float) -> None:
        if change.state is TransportState.CONNECTED:
            self._alive.add(change.handle)
        elif change.state is TransportState.DESTROY:
            self._alive.discard(change.handle)  # an outgoing connect that failed had a key too
            self._freed.append(now)

    def in_use(self, now: float) -> int:
        horizon = now - KEY_FREE_DELAY_S - FREE_MARGIN_S
        while self._freed and self._freed[0] <= horizon:
            self._freed.popleft()
        return len(self._alive) + len(self._freed)


class ListenerDoor:
    """Shuts and reopens the kernel's door of this process's TCP listeners on `ports` (a BPF drop filter)."""

    def __init__(self, ports: tuple[int, ...]):
        self.ports = ports
        self.shut = False
        self._program = ctypes.create_string_buffer(_DROP_ALL, len(_DROP_ALL))
        # struct sock_fprog {unsigned short len; struct sock_filter *filter;}, native alignment
        self._fprog = struct.pack("@HP", 1, ctypes.addressof(self._program))

    def close(self) -> int:
        """Drop every packet to the listeners from now on; how many listeners were shut."""
        done = self._each(lambda s: s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, self._fprog))
        self.shut = True
        return done

    def open(self) -> int:
        done = self._each(lambda s: s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0))
        self.shut = False
        return done

    def _each(self, apply: Callable[[socket.socket], None]) -> int:
        done = 0
        for fd in listening_fds(self.ports):
            try:
                with socket.socket(fileno=os.dup(fd)) as sock:
                    apply(sock)
                done += 1
            except OSError as exc:  # closed meanwhile, or no filter to detach
                log.debug("sip_tcp_door_failed", fd=fd, error=str(exc))
        return done


class TcpGate:
    """Counts the keys as pjsip reports transports (SIP thread) and shuts the door in time.

    `schedule(delay_s, fn)` runs `fn` later on the SIP thread (SipStack.call_later): while the door
    is shut no new connection comes, so no callback would reopen it; a timer does.
    """

    def __init__(self, ports: tuple[int, ...], schedule: Callable[[float, Callable[[], None]], None],
                 clock: Callable[[], float] = time.monotonic, door: ListenerDoor | None = None):
        self.count = KeyCount(listeners=len(ports))
        self.door = door or ListenerDoor(ports)
        self._schedule = schedule
        self._clock = clock
        self.times_shut = 0

    def on_transport(self, change: TransportChange) -> None:
        if not change.connection:
            return
        now = self._clock()
        self.count.change(change, now)
        if not self.door.shut and self.count.in_use(now) >= self.count.close_at:
            self.door.close()
            self.times_shut += 1
            log.warning("sip_tcp_paused", keys_in_use=self.count.in_use(now), limit=self.count.close_at,
                        hint="a burst of TCP connections: new ones wait (their SYN is retried) until "
                             "pjsip has freed the handles of closed ones")
            self._schedule(RECHECK_S, self._recheck)

    def _recheck(self) -> None:
        if not self.door.shut:
            return
        in_use = self.count.in_use(self._clock())
        if in_use <= self.count.open_at:
            self.door.open()
            log.info("sip_tcp_resumed", keys_in_use=in_use)
        else:
            self._schedule(RECHECK_S, self._recheck)


def listening_fds(ports: tuple[int, ...]) -> list[int]:
    """This process's descriptors of TCP sockets listening on one of `ports` (IPv4 and IPv6)."""
    return list(own_sockets(sockets_on(ports, LISTEN)))
