"""The console's live feed: typed events from the record hook, bounded per subscriber, never blocking."""

from __future__ import annotations

import threading

from gateway.agents.base import RecordKind
from gateway.calls.reporting import CallReporting
from gateway.config import RecordingConfig
from gateway.console.feed import (
    BACKLOG_PER_CALL,
    MAX_SUBSCRIBERS,
    SUBSCRIBER_QUEUE,
    BotSaid,
    CallerSaid,
    CallFeed,
    CallFinished,
    TooManySubscribers,
    TurnTimed,
    event_of,
)
from gateway.metrics import Metrics


def test_record_kinds_become_typed_events():
    assert event_of("c", RecordKind.CALLER_SPEECH, {"start": 1, "end": 2.5, "text": "hi"}) == CallerSaid("c", "hi", 2.5)
    assert event_of("c", RecordKind.BOT_SPEECH, {"start": 3, "text": "hello", "interrupted": True}) == \
        BotSaid("c", "hello", 3.0, True)
    turn = event_of("c", RecordKind.TURN, {"turn": 2, "stages": {"first_rtp_ms": 900, "llm_first_token_ms": None}})
    assert turn == TurnTimed("c", 2, {"first_rtp_ms": 900.0, "llm_first_token_ms": None}, False)
    assert event_of("c", RecordKind.MODEL_ERROR, {"role": "stt"}) is None
    assert event_of("c", RecordKind.TURN, {"stages": "garbage", "turn": "x"}) == TurnTimed("c", 0, {}, False)


def test_a_slow_subscriber_overflows_without_blocking_the_publisher():
    feed = CallFeed()
    slow = feed.subscribe()
    done = threading.Event()

    def publish() -> None:
        for i in range(SUBSCRIBER_QUEUE * 3):
            feed.publish(CallerSaid("c", f"line {i}", 0.0))
        done.set()

    threading.Thread(target=publish, daemon=True).start()
    assert done.wait(10), "publish blocked on a subscriber that reads nothing"
    assert slow.overflowed.is_set() and slow.events.qsize() == SUBSCRIBER_QUEUE
    assert len(feed.backlog("c")) == BACKLOG_PER_CALL


def test_backlog_then_queue_gives_every_event_once():
    feed = CallFeed()
    feed.publish(CallerSaid("c", "before", 0.0))
    sub = feed.subscribe()
    feed.publish(BotSaid("c", "after", 0.0, False))
    replay = feed.backlog(until=sub.since)
    queued = [sub.events.get_nowait().event]
    assert [e.text for e in replay + queued] == ["before", "after"]
    feed.call_ended("c", "remote_bye")
    assert isinstance(sub.events.get_nowait().event, CallFinished) and feed.backlog("c") == []
    feed.unsubscribe(sub)
    assert feed.subscribers == 0


def test_subscribers_are_capped():
    feed = CallFeed()
    subs = [feed.subscribe() for _ in range(MAX_SUBSCRIBERS)]
    try:
        feed.subscribe()
    except TooManySubscribers:
        pass
    else:
        raise AssertionError("no cap on live pages")
    feed.unsubscribe(subs[0])
    feed.subscribe()


def test_the_record_hook_feeds_the_console_and_a_failing_observer_costs_nothing():
    reporting = CallReporting(RecordingConfig(), Metrics(), None)
    feed = CallFeed()

    def broken(call_id: str, kind: RecordKind, fields: dict[str, object]) -> None:
        raise RuntimeError("observer bug")

    reporting.on_record(broken)
    reporting.on_record(feed.record)
    record = reporting.record_to(None, "call-1")
    record(RecordKind.CALLER_SPEECH, start=1.0, end=2.0, text="What time do you open?")
    assert feed.backlog("call-1") == [CallerSaid("call-1", "What time do you open?", 2.0)]
