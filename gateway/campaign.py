"""Outbound call campaigns: dial a CSV list of numbers with bounded concurrency and rate.

A campaign must never overload the trunk or the gateway's models, so it keeps at most
`concurrency` of its calls up and starts calls no faster than `calls_per_second` (spacing on a
monotonic clock: start N+1 is never earlier than start N + 1/rate).  A failed originate counts as
failed, still uses its slot in the rate, and the campaign goes on: one bad number in a list of
thousands must not stop the rest, nor make the gateway hammer a failing trunk.

Everything runs on one thread that polls `GatewayControl.wait_ended(call_id, 0)`, so the clock and
sleep can be injected and a test drives a whole campaign deterministically through `run()`.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from gateway.http_api import GatewayControl

log = structlog.get_logger("campaign")

MAX_ROWS = 10_000
_NUMBER_COLUMNS = ("to", "number")


def parse_campaign_csv(text: str) -> list[dict[str, str]]:
    """Rows of a campaign CSV as dicts with key "to" plus the other columns (the call's variables).

    The header needs a `to` (or `number`) column, matched case-insensitively; blank lines are
    skipped.  Errors name the row, because operators fix these files by hand.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise ValueError("campaign CSV is empty: expected a header line with a 'to' column")
    names = [h.strip() for h in header]
    number_index = _number_column(names)
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"campaign CSV header has duplicate columns: {names}")
    rows: list[dict[str, str]] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        line = reader.line_num
        if len(rows) >= MAX_ROWS:
            raise ValueError(f"campaign CSV has more than {MAX_ROWS} rows")
        rows.append(_row(names, number_index, values, line))
    if not rows:
        raise ValueError("campaign CSV has a header but no rows")
    return rows


def _number_column(names: list[str]) -> int:
    lowered = [n.lower() for n in names]
    for wanted in _NUMBER_COLUMNS:
        if wanted in lowered:
            return lowered.index(wanted)
    raise ValueError(f"campaign CSV needs a 'to' (or 'number') column; the header has {names}")


def _row(names: list[str], number_index: int, values: list[str], line: int) -> dict[str, str]:
    if len(values) > len(names):
        raise ValueError(f"campaign CSV line {line} has {len(values)} fields but the header has {len(names)}")
    values = [v.strip() for v in values] + [""] * (len(names) - len(values))
    if not values[number_index]:
        raise ValueError(f"campaign CSV line {line} has an empty '{names[number_index]}'")
    row = {"to": values[number_index]}
    row.update((name, value) for i, (name, value) in enumerate(zip(names, values, strict=True)) if i != number_index)
    return row


@dataclass
class Campaign:
    """One campaign run; `start()` runs it on its own thread, `status()` is safe from any thread."""

    rows: list[dict[str, str]]
    agent: str | None
    concurrency: int
    calls_per_second: float
    control: GatewayControl
    account: str | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] | None = None  # None: wait on the stop event, so stop() is prompt
    poll_interval: float = 0.2  # how often active calls are checked for their end

    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _active: list[str] = field(default_factory=list, init=False, repr=False)
    _next_row: int = field(default=0, init=False)
    _started: int = field(default=0, init=False)
    _completed: int = field(default=0, init=False)
    _failed: int = field(default=0, init=False)
    _running: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not self.calls_per_second > 0:
            raise ValueError("calls_per_second must be greater than 0")
        if any("to" not in row for row in self.rows):
            raise ValueError("every campaign row needs a 'to'")

    def start(self) -> None:
        """Run the campaign on a daemon thread (so it never holds up process exit)."""
        if self._thread is not None:
            raise RuntimeError("campaign already started")
        self._running = True
        self._thread = threading.Thread(target=self.run, name="campaign", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Start no more calls.  Calls already up are left to finish (and are still counted)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the campaign thread; True once it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return not self._running

    def status(self) -> dict[str, object]:
        with self._lock:
            return {
                "total": len(self.rows),
                "started": self._started,
                "completed": self._completed,
                "failed": self._failed,
                "active": len(self._active),
                "running": self._running,
                "stopped": self._stop.is_set(),
                "not_attempted": len(self.rows) - self._next_row,
            }

    def run(self) -> None:
        """The campaign loop; returns once every row was tried (or stop()) and its calls ended."""
        self._running = True
        next_start = self.clock()
        try:
            while True:
                self._reap()
                if self._stop.is_set() or self._next_row >= len(self.rows):
                    if not self._active:
                        return
                    self._wait(self.poll_interval)
                    continue
                if len(self._active) >= self.concurrency:
                    self._wait(self.poll_interval)
                    continue
                now = self.clock()
                if now < next_start:
                    self._wait(min(self.poll_interval, next_start - now))
                    continue
                if self.control.draining:  # the gateway is going away: keep the rest of the list, unfailed
                    log.info("campaign_stopped", reason="draining", left=len(self.rows) - self._next_row)
                    self._stop.set()
                    continue
                next_start = max(next_start, now) + 1.0 / self.calls_per_second
                self._originate(self.rows[self._next_row])
        finally:
            with self._lock:
                self._running = False

    def _reap(self) -> None:
        ended = [cid for cid in self._active if self._ended(cid)]
        if ended:
            with self._lock:
                for cid in ended:
                    self._active.remove(cid)
                self._completed += len(ended)

    def _ended(self, call_id: str) -> bool:
        try:
            return self.control.wait_ended(call_id, 0)
        except Exception:  # a gateway that lost track of the call: do not keep the slot forever
            log.exception("campaign_wait_failed", call_id=call_id)
            return True

    def _originate(self, row: dict[str, str]) -> None:
        variables = {k: v for k, v in row.items() if k != "to"}
        with self._lock:
            self._next_row += 1
        try:
            call_id = self.control.originate(row["to"], self.agent, variables, self.account)
        except Exception as exc:  # ValueError for a bad number; anything else must not end the campaign
            log.warning("campaign_originate_failed", error=str(exc))
            with self._lock:
                self._failed += 1
            return
        with self._lock:
            self._started += 1
            self._active.append(call_id)

    def _wait(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif self._stop.is_set():  # stopped, waiting for calls to end: the event no longer blocks
            time.sleep(seconds)
        else:
            self._stop.wait(seconds)
