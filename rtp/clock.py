"""The media clock: one thread, one tick every 20 ms, for every call.

Ticks are scheduled on absolute monotonic deadlines (start + n * period), never by sleeping
20 ms after the work: sleeping a fixed period accumulates the work time and scheduler delay
as drift, and the far end's jitter buffer then sees our packets slowly fall behind.

A tick that comes late is still run (and its lateness recorded) so the packet rate stays at
50 per second; if the thread was stalled for more than `max_catch_up` periods the missed ticks
are skipped and counted instead of sent as a burst.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PERIOD_S = 0.020


class Tickable(Protocol):
    def tick(self, now: float) -> None:
        """Do one period of media work. Called on the media clock thread; must never block."""


@dataclass(frozen=True)
class ClockStats:
    ticks: int
    skipped: int
    sessions: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    work_p50_ms: float
    work_p99_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


class _Ring:
    """Fixed-size float history (the last N ticks) for percentiles without unbounded growth."""

    def __init__(self, size: int):
        self.values = np.zeros(size, dtype=np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def percentile(self, q: float) -> float:
        n = min(self.count, len(self.values))
        return float(np.percentile(self.values[:n], q)) if n else 0.0

    def max(self) -> float:
        n = min(self.count, len(self.values))
        return float(self.values[:n].max()) if n else 0.0


class MediaClock:
    """Runs `tick(now)` of every registered session once per period on one thread."""

    def __init__(
        self,
        period_s: float = PERIOD_S,
        *,
        max_catch_up: int = 3,
        history: int = 3000,
        on_error: Callable[[Tickable, BaseException], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.period_s = period_s
        self.max_catch_up = max_catch_up
        self._on_error = on_error
        self._monotonic = monotonic
        self._sleep = sleep
        self._sessions: tuple[Tickable, ...] = ()
        self._lock = threading.Lock()
        self._removals: collections.deque[tuple[Tickable, Callable[[], None] | None]] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lateness = _Ring(history)
        self._work = _Ring(history)
        self.ticks = 0
        self.skipped = 0

    def add(self, session: Tickable) -> None:
        with self._lock:
            self._sessions = (*self._sessions, session)

    def remove(self, session: Tickable, then: Callable[[], None] | None = None) -> None:
        """Stop ticking `session`; `then` runs once it is certain no tick of it is in progress.

        The removal is applied by the clock thread between ticks, so a session's resources (its
        sockets) can be released by `then` without racing a tick that is using them.
        """
        if self._thread is None or threading.current_thread() is self._thread:
            self._drop(session)
            if then is not None:
                then()
            return
        self._removals.append((session, then))

    def _drop(self, session: Tickable) -> None:
        with self._lock:
            self._sessions = tuple(s for s in self._sessions if s is not session)

    def _apply_removals(self) -> None:
        while self._removals:
            session, then = self._removals.popleft()
            self._drop(session)
            if then is not None:
                try:
                    then()
                except Exception as exc:
                    if self._on_error is not None:
                        self._on_error(session, exc)

    @property
    def sessions(self) -> tuple[Tickable, ...]:
        return self._sessions

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("media clock already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="media-clock", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._apply_removals()

    def run(self, max_ticks: int | None = None) -> None:
        """The clock loop; `max_ticks` bounds it for tests and benchmarks."""
        start = self._monotonic()
        n = 0
        while not self._stop.is_set() and (max_ticks is None or self.ticks < max_ticks):
            deadline = start + n * self.period_s
            now = self._monotonic()
            if now < deadline:
                self._sleep(deadline - now)
                now = self._monotonic()
            behind = int((now - deadline) / self.period_s)
            if behind > self.max_catch_up:
                # Stalled (e.g. the machine was suspended or swapped): skip rather than burst.
                self.skipped += behind
                n += behind
                deadline = start + n * self.period_s
            self._lateness.add(max(0.0, now - deadline))
            self.tick_all(now)
            self._work.add(self._monotonic() - now)
            n += 1

    def tick_all(self, now: float) -> None:
        self._apply_removals()
        for session in self._sessions:
            try:
                session.tick(now)
            except Exception as exc:  # one broken call must not stop the others' media
                self._drop(session)
                if self._on_error is not None:
                    self._on_error(session, exc)
        self.ticks += 1

    def stats(self) -> ClockStats:
        return ClockStats(
            ticks=self.ticks,
            skipped=self.skipped,
            sessions=len(self._sessions),
            lateness_p50_ms=self._lateness.percentile(50) * 1000,
            lateness_p99_ms=self._lateness.percentile(99) * 1000,
            lateness_max_ms=self._lateness.max() * 1000,
            work_p50_ms=self._work.percentile(50) * 1000,
            work_p99_ms=self._work.percentile(99) * 1000,
        )
