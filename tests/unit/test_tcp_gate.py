"""The TCP gate: its key count on a virtual clock, and its door on a real listening socket (no pjsip)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from gateway.sip.tcp_gate import (
    KEY_FREE_DELAY_S,
    KeyCount,
    ListenerDoor,
    TcpGate,
    TransportChange,
    TransportState,
    listening_fds,
)

CONNECTED, DESTROY = TransportState.CONNECTED, TransportState.DESTROY


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeDoor:
    def __init__(self) -> None:
        self.shut = False
        self.moves: list[str] = []

    def close(self) -> int:
        self.shut = True
        self.moves.append("close")
        return 1

    def open(self) -> int:
        self.shut = False
        self.moves.append("open")
        return 1


def tcp(handle: int, state: TransportState) -> TransportChange:
    return TransportChange(handle, "TCP", state)


def test_closed_keys_count_until_pjlib_has_freed_them():
    count = KeyCount(listeners=1)
    count.change(tcp(1, CONNECTED), 0.0)
    count.change(tcp(2, CONNECTED), 0.0)
    count.change(tcp(1, DESTROY), 1.0)
    assert count.in_use(1.0) == 2  # one alive, one on pjlib's closing list
    assert count.in_use(1.0 + KEY_FREE_DELAY_S) == 2  # 500 ms is when pjlib frees it at the earliest
    assert count.in_use(2.0) == 1
    count.change(tcp(7, DESTROY), 2.0)  # an outgoing connect that failed before it was reported
    assert count.in_use(2.0) == 2


def test_udp_is_not_counted_and_the_budget_leaves_room_for_accept_queues():
    count = KeyCount(listeners=2)
    assert count.close_at == 64 - 16 - 2 * 6 and count.open_at < count.close_at
    gate = TcpGate((5060, 5061), lambda delay, fn: None, Clock(), FakeDoor())
    gate.on_transport(TransportChange(1, "UDP", CONNECTED))
    assert gate.count.in_use(100.0) == 0
    with pytest.raises(ValueError):
        KeyCount(listeners=8)


def test_a_burst_shuts_the_door_in_the_accept_loop_and_a_timer_reopens_it():
    clock, door = Clock(), FakeDoor()
    timers: list[tuple[float, Callable[[], None]]] = []
    gate = TcpGate((5060,), lambda delay, fn: timers.append((clock.now + delay, fn)), clock, door)
    limit = gate.count.close_at
    for handle in range(limit - 1):  # connected and reset at once: each key stays 500 ms on the list
        gate.on_transport(tcp(handle, CONNECTED))
        gate.on_transport(tcp(handle, DESTROY))
    assert door.moves == []
    gate.on_transport(tcp(1000, CONNECTED))  # the key that reaches the mark: shut before the next accept
    assert door.moves == ["close"] and gate.times_shut == 1 and len(timers) == 1

    def run_timers() -> None:
        while timers and timers[0][0] <= clock.now:
            _, fn = timers.pop(0)
            fn()

    clock.now += 0.2
    run_timers()
    assert door.shut and len(timers) == 1  # the freed keys are not back yet: look again later
    clock.now += 1.0
    run_timers()
    assert door.moves == ["close", "open"] and not timers  # only connection 1000 is left
    assert gate.count.in_use(clock.now) == 1


def test_the_door_drops_new_connections_and_spares_established_ones():
    listener = socket.create_server(("127.0.0.1", 0), backlog=5)
    port = listener.getsockname()[1]
    with listener:
        assert listening_fds((port,)) == [listener.fileno()]
        before = socket.create_connection(("127.0.0.1", port), timeout=2)
        accepted, _ = listener.accept()
        door = ListenerDoor((port,))
        assert door.close() == 1
        with before, accepted:
            late = socket.socket()
            late.settimeout(0.5)
            with late, pytest.raises(TimeoutError):  # its SYN is dropped: no answer, not a reset
                late.connect(("127.0.0.1", port))
            before.sendall(b"still here")  # the connection made before the door shut works both ways
            assert accepted.recv(100) == b"still here"
            accepted.sendall(b"yes")
            assert before.recv(100) == b"yes"
            assert door.open() == 1
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                listener.settimeout(2)
                listener.accept()[0].close()
