"""Copies every call's record events into PostgreSQL, off the call threads.

Why: with several gateways, an operator must be able to draw any call from one place
(``voicegate report``), not log in to whichever gateway took it.  The JSONL file stays the
primary record (it survives a database outage); the database gets the same events.

Why a queue and a thread: :meth:`gateway.records.CallRecorder.event` runs on the SIP thread
and the conversation threads, which pace a call's audio; a database round trip (or a
5-second connect timeout while the server restarts) must never stall them.  :meth:`put` only
appends to a bounded queue and never blocks: when the queue is full (the database is down
for long) events are dropped and counted, not waited for.  One writer thread drains the queue
in batches (one transaction per batch), on its own connection.

A batch that fails (server unreachable) is dropped and counted too: the events are still in
the call's JSONL file.  The next batch reconnects.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog

from gateway.store.base import StoreError
from gateway.store.postgres import CallEventRow, PostgresStore

__all__ = ["CallEventWriter"]

log = structlog.get_logger("call_events")

_QUEUE_EVENTS = 10_000  # a few minutes of events of a busy gateway while the database is away
_BATCH_EVENTS = 500
_CLOSE_TIMEOUT_S = 10.0
_STOP = object()


class CallEventWriter:
    """A bounded queue of call events and the thread that writes them to PostgreSQL."""

    def __init__(
        self,
        open_store: Callable[[], PostgresStore],
        *,
        purge_days: float | None = None,
        queue_events: int = _QUEUE_EVENTS,
    ) -> None:
        """``open_store`` is called on the writer thread (and again after a failure); ``purge_days``
        purges expired calls' events once, when the first connection is made."""
        self._open_store = open_store
        self._purge_days = purge_days
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_events))
        self._lock = threading.Lock()  # for the counters, written by many threads
        self.written = 0
        self.dropped = 0  # queue full: never queued
        self.failed = 0  # queued, but their batch could not be written
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="call-events", daemon=True)
        self._thread.start()

    def put(self, call_id: str, event: dict[str, Any]) -> None:
        """Queue one event (``{"t", "kind", **fields}``, JSON-ready) for ``call_id``; never blocks."""
        if self._closed:
            return
        fields = {k: v for k, v in event.items() if k not in ("t", "kind")}
        row: CallEventRow = (call_id, float(event.get("t") or 0.0), str(event.get("kind")), fields)
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            if dropped == 1 or dropped % 1000 == 0:  # a log line per event would flood the log too
                log.warning("call_events_dropped", dropped=dropped, queue=self._queue.maxsize)

    def close(self, timeout_s: float = _CLOSE_TIMEOUT_S) -> None:
        """Write what is queued (up to ``timeout_s``), then stop the thread.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.error("call_events_writer_stuck")
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("call_events_writer_stuck")
        log.info("call_events_closed", written=self.written, dropped=self.dropped, failed=self.failed)

    # ---------------------------------------------------------------- writer thread

    def _drain(self) -> None:
        store = self._connect()  # at start-up: migrate and purge before the first call, not during it
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < _BATCH_EVENTS:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            rows = [item for item in batch if item is not _STOP]
            if rows:
                store = self._write(store, rows)
        if store is not None:
            store.close()

    def _connect(self) -> PostgresStore | None:
        try:
            store = self._open_store()
        except StoreError as exc:  # already without the password; the next batch tries again
            log.error("call_events_unavailable", error=str(exc))
            return None
        days, self._purge_days = self._purge_days, None
        if days is not None:
            try:
                log.info("call_events_purged", rows=store.purge_call_events(days), retention_days=days)
            except StoreError as exc:
                log.error("call_events_purge_failed", error=str(exc))
        return store

    def _write(self, store: PostgresStore | None, rows: list[CallEventRow]) -> PostgresStore | None:
        try:
            if store is None:
                store = self._connect()
                if store is None:
                    raise StoreError("no connection")
            store.add_call_events(rows)
        except StoreError as exc:  # already without the password
            with self._lock:
                self.failed += len(rows)
            log.error("call_events_write_failed", events=len(rows), error=str(exc))
            return store
        with self._lock:
            self.written += len(rows)
        return store
