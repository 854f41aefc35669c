"""The live page's Server-Sent Events stream: the calls up, then every transcript event as it comes.

One stream holds one HTTP worker thread (it blocks only on its own subscription's queue, with a
timeout, so it notices a closed console or a gone browser within a second). The call list comes
from `GatewayControl.list_calls()` snapshots, compared once a second: a call appearing or ending
needs no hook in the SIP code. A subscriber that fell too far behind gets `resync` and the stream
ends; the browser reconnects (EventSource does that by itself) and starts from a fresh snapshot.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from gateway.console.feed import EVENT_NAMES, CallFeed, FeedEvent, TooManySubscribers

POLL_S = 1.0  # how often the call list is compared, and how soon a closed console ends the stream
KEEPALIVE_S = 5.0  # a comment line: keeps proxies from closing an idle stream, and finds a gone browser
RETRY_MS = 2000


def sse(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n".encode()


def event_data(event: FeedEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


def live_stream(feed: CallFeed, calls: Callable[[], list[dict[str, Any]]], closed: threading.Event) -> Iterator[bytes]:
    """The stream's pieces; closing the generator (the server does, when the browser goes) unsubscribes."""
    try:
        sub = feed.subscribe()
    except TooManySubscribers as exc:
        yield f"retry: {RETRY_MS * 10}\n\n".encode() + sse("busy", {"error": str(exc)})
        return
    try:
        snapshot = _calls(calls)
        yield f"retry: {RETRY_MS}\n\n".encode() + sse("calls", snapshot)
        for event in feed.backlog(until=sub.since):
            yield sse(EVENT_NAMES[type(event)], event_data(event))
        yield sse("ready", {"since": sub.since})
        next_poll = last_sent = time.monotonic()
        while not closed.is_set():
            if sub.overflowed.is_set():
                yield sse("resync", {"reason": "the page fell behind the calls"})
                return
            try:
                stamped = sub.events.get(timeout=max(0.05, next_poll - time.monotonic()))
            except queue.Empty:
                stamped = None
            if stamped is not None:
                yield sse(EVENT_NAMES[type(stamped.event)], event_data(stamped.event))
                last_sent = time.monotonic()
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + POLL_S
                current = _calls(calls)
                if current != snapshot:
                    snapshot = current
                    yield sse("calls", snapshot)
                    last_sent = now
                elif now - last_sent >= KEEPALIVE_S:
                    yield b": keepalive\n\n"
                    last_sent = now
    finally:
        feed.unsubscribe(sub)


def _calls(calls: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return sorted(calls(), key=lambda c: (float(c.get("started_at") or 0.0), str(c.get("call_id"))))
