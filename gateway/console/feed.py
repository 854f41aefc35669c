"""The live feed from calls to the console: typed events, one bounded queue per subscriber.

Why a feed of its own: the live transcript must appear while the call goes on, but the threads
that produce it (each call's controller, its tool threads) must never wait for a browser. So the
call side only `publish`es: the event is turned into a frozen dataclass on the producer's thread
and put, without blocking, into each subscriber's bounded queue. A subscriber that cannot keep
up loses events and is told so (`overflowed`); the page then reloads its state instead of the
producer ever slowing down.

The feed also keeps each live call's recent events (bounded), so a page opened mid-call starts
with the transcript so far. Everything shared here sits behind one lock held only for dict and
deque operations.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.agents.base import RecordKind

SUBSCRIBER_QUEUE = 512  # events a slow browser may lag behind before it must resync
BACKLOG_PER_CALL = 200  # recent events kept per live call for pages opened mid-call
MAX_SUBSCRIBERS = 32  # each holds an HTTP worker thread: more is a leak or an attack


@dataclass(frozen=True)
class CallerSaid:
    """The caller's final transcript of one utterance."""

    call_id: str
    text: str
    at: float  # unix time the caller stopped


@dataclass(frozen=True)
class BotSaid:
    """What the bot actually said in one reply (cut short when interrupted)."""

    call_id: str
    text: str
    at: float
    interrupted: bool


@dataclass(frozen=True)
class TurnTimed:
    """One turn's stage marks, in ms after the caller stopped (None: the stage did not happen)."""

    call_id: str
    turn: int
    stages: Mapping[str, float | None]
    cancelled: bool


@dataclass(frozen=True)
class CallerBargedIn:
    call_id: str
    at: float


@dataclass(frozen=True)
class ToolUsed:
    call_id: str
    tool: str
    ok: bool


@dataclass(frozen=True)
class CallFinished:
    call_id: str
    reason: str


FeedEvent = CallerSaid | BotSaid | TurnTimed | CallerBargedIn | ToolUsed | CallFinished

EVENT_NAMES: dict[type, str] = {
    CallerSaid: "caller", BotSaid: "bot", TurnTimed: "turn", CallerBargedIn: "barge_in", ToolUsed: "tool",
    CallFinished: "ended",
}


def _float(value: object, default: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def event_of(call_id: str, kind: RecordKind, fields: Mapping[str, object]) -> FeedEvent | None:
    """The feed's event for one recorded event (None: nothing the console shows)."""
    match kind:
        case RecordKind.CALLER_SPEECH:
            return CallerSaid(call_id, str(fields.get("text") or ""), _float(fields.get("end")))
        case RecordKind.BOT_SPEECH:
            return BotSaid(call_id, str(fields.get("text") or ""), _float(fields.get("start")),
                           bool(fields.get("interrupted")))
        case RecordKind.TURN:
            raw = fields.get("stages")
            stages = {str(k): (_float(v) if v is not None else None) for k, v in raw.items()} \
                if isinstance(raw, dict) else {}
            turn = fields.get("turn")
            return TurnTimed(call_id, turn if isinstance(turn, int) else 0, stages, bool(fields.get("cancelled")))
        case RecordKind.BARGE_IN:
            return CallerBargedIn(call_id, _float(fields.get("at")))
        case RecordKind.TOOL_CALL:
            return ToolUsed(call_id, str(fields.get("tool") or "?"), bool(fields.get("ok")))
    return None


@dataclass(frozen=True)
class Stamped:
    """An event and its place in the feed: a page replays the backlog up to its subscription's
    `since`, then reads its queue, which holds only later events: nothing twice, nothing lost."""

    seq: int
    event: FeedEvent


@dataclass(eq=False)
class Subscription:
    """One browser's view of the feed; read only by the thread serving that browser."""

    since: int
    events: queue.Queue[Stamped] = field(default_factory=lambda: queue.Queue(SUBSCRIBER_QUEUE))
    overflowed: threading.Event = field(default_factory=threading.Event)


class TooManySubscribers(RuntimeError):
    pass


class CallFeed:
    """Publish from any call thread (never blocks); subscribe from the HTTP side."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._backlog: dict[str, deque[Stamped]] = {}
        self._seq = 0

    def record(self, call_id: str, kind: RecordKind, fields: dict[str, object]) -> None:
        """The hook `CallReporting.on_record` calls: one recorded event of a live call."""
        event = event_of(call_id, kind, fields)
        if event is not None:
            self.publish(event)

    def call_ended(self, call_id: str, reason: str) -> None:
        self.publish(CallFinished(call_id, reason))
        with self._lock:
            self._backlog.pop(call_id, None)

    def publish(self, event: FeedEvent) -> None:
        with self._lock:
            self._seq += 1
            stamped = Stamped(self._seq, event)
            if not isinstance(event, CallFinished):
                self._backlog.setdefault(event.call_id, deque(maxlen=BACKLOG_PER_CALL)).append(stamped)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.events.put_nowait(stamped)
            except queue.Full:
                sub.overflowed.set()

    def subscribe(self) -> Subscription:
        with self._lock:
            if len(self._subscribers) >= MAX_SUBSCRIBERS:
                raise TooManySubscribers(f"more than {MAX_SUBSCRIBERS} live pages open")
            sub = Subscription(since=self._seq)
            self._subscribers.append(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def backlog(self, call_id: str | None = None, until: int | None = None) -> list[FeedEvent]:
        """The recent events of one live call, or of all of them (oldest first per call), up to `until`."""
        with self._lock:
            kept = [self._backlog.get(call_id, ())] if call_id is not None else list(self._backlog.values())
            return [s.event for events in kept for s in events if until is None or s.seq <= until]

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)
