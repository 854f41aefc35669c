"""The call pages: live calls (with their transcript so far), call history, one finished call.

Each function renders the page's `<main>` body; the live page is then kept current by
/console/static/console.js from the event stream (gateway/console/stream.py), using the same
markup as `call_card` here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.calls.outcome import CallOutcome
from gateway.console.auth import Session
from gateway.console.feed import BotSaid, CallerSaid, FeedEvent, TurnTimed
from gateway.console.history import HistoryQuery, audio_of, events_of, search
from gateway.console.html import action_button, duration, esc, ms, table, when
from gateway.console.timeline import timeline_svg
from gateway.http_api import HttpError
from gateway.report import STAGES

LATENCY_STAGES = tuple(key for key, _ in STAGES)


# --------------------------------------------------------------------------- live


def live_body(calls: list[dict[str, Any]], backlog: list[FeedEvent], session: Session) -> str:
    by_call: dict[str, list[FeedEvent]] = {}
    for event in backlog:
        by_call.setdefault(event.call_id, []).append(event)
    cards = "".join(call_card(call, by_call.get(str(call.get("call_id")), []), session) for call in calls)
    empty = "" if calls else '<p class="empty" id="no-calls">No call is up.</p>'
    return (f'<p class="status" id="stream-status">Live updates: connecting…</p>{empty}'
            f'<section id="calls">{cards}</section>')


def call_card(call: Mapping[str, Any], events: list[FeedEvent], session: Session) -> str:
    call_id = str(call.get("call_id"))
    started = float(call.get("started_at") or 0.0)
    lines = "".join(_line(e) for e in events if isinstance(e, CallerSaid | BotSaid))
    turns = "".join(turn_row(e) for e in events if isinstance(e, TurnTimed))
    hangup = action_button(session, f"/console/calls/{quote(call_id, safe='')}/hangup", "Hang up", css="danger",
                           confirm="Hang up this call?")
    return (f'<article class="call" data-call-id="{esc(call_id)}">'
            f'<header><strong class="remote">{esc(call.get("remote") or "unknown caller")}</strong> '
            f'<span class="agent">{esc(call.get("agent"))}</span> '
            f'<span class="direction">{esc(call.get("direction"))}</span> '
            f'<span class="duration" data-started="{started:.3f}">'
            f'{duration(time.time() - started if started else None)}</span> '
            f'<span class="state">{esc(call.get("state"))}</span> {hangup}</header>'
            f'<ol class="transcript">{lines}</ol>'
            f'<table class="latency"><thead><tr><th>turn</th>'
            + "".join(f"<th>{esc(label)}</th>" for _, label in STAGES)
            + f"</tr></thead><tbody>{turns}</tbody></table></article>")


def _line(event: CallerSaid | BotSaid) -> str:
    who = "caller" if isinstance(event, CallerSaid) else "bot"
    cut = " interrupted" if isinstance(event, BotSaid) and event.interrupted else ""
    return f'<li class="{who}{cut}"><span class="who">{who}</span> {esc(event.text)}</li>'


def turn_row(event: TurnTimed) -> str:
    cells = "".join(f"<td>{ms(event.stages.get(key))}</td>" for key in LATENCY_STAGES)
    return f'<tr class="{"cancelled" if event.cancelled else ""}"><td>{event.turn}</td>{cells}</tr>'


# --------------------------------------------------------------------------- history


def parse_query(query: Mapping[str, str]) -> HistoryQuery:
    day = None
    if query.get("date"):
        try:
            day = date.fromisoformat(query["date"])
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"date must be YYYY-MM-DD, got {query['date']!r}") from None
    outcome = None
    if query.get("outcome"):
        try:
            outcome = CallOutcome(query["outcome"])
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unknown outcome {query['outcome']!r}") from None
    return HistoryQuery(caller=query.get("caller", "").strip()[:200], day=day, outcome=outcome)


def history_body(records: Path | None, query: HistoryQuery) -> str:
    if records is None:
        return ('<p class="empty">Call records are off: set <code>recording.directory</code> '
                '(and <code>recording.audio: true</code> for playback).</p>')
    outcomes = "".join(
        f'<option value="{o.value}"{" selected" if query.outcome is o else ""}>{o.value}</option>' for o in CallOutcome
    )
    form = (f'<form method="get" action="/console/history" class="search">'
            f'<label>Caller <input name="caller" value="{esc(query.caller)}"></label>'
            f'<label>Date <input type="date" name="date" value="{esc(query.day or "")}"></label>'
            f'<label>Outcome <select name="outcome"><option value="">any</option>{outcomes}</select></label>'
            f'<button type="submit">Search</button></form>')
    rows = [[f'<a href="/console/history/{quote(c.call_id, safe="")}">{esc(when(c.started_at))}</a>',
             esc(c.remote), esc(c.agent), esc(c.direction), duration(c.duration_s), str(c.turns),
             esc(c.outcome.value if c.outcome else "up or unfinished"), "yes" if c.has_audio else ""]
            for c in search(records, query)]
    return form + table(["started", "caller", "agent", "direction", "duration", "turns", "outcome", "audio"], rows,
                        css="history", empty="No call matches.")


# --------------------------------------------------------------------------- one call


def call_body(records: Path | None, database: str | None, call_id: str) -> str:
    try:
        events = events_of(records, call_id, database)
    except FileNotFoundError:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no record of call {call_id}") from None
    start = next((e for e in events if e.get("kind") == "call_start"), {})
    end = next((e for e in events if e.get("kind") == "call_end"), None)
    facts = [("Call-ID", esc(call_id)), ("caller", esc(start.get("remote"))), ("agent", esc(start.get("agent"))),
             ("direction", esc(start.get("direction"))), ("started", esc(when(start.get("t")))),
             ("duration", duration(end.get("duration_s") if end else None)),
             ("ended", esc(end.get("reason") if end else "no call_end in the record"))]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    wav = audio_of(records, call_id)
    audio = '<p class="empty">No audio: recording.audio was off for this call.</p>'
    if wav is not None:
        src = f"/console/audio/{quote(call_id, safe='')}"
        audio = f'<audio id="recording" controls preload="metadata" src="{src}"></audio>'

    return (f'<dl class="facts">{dl}</dl><h2>Recording</h2>{audio}<h2>Timeline</h2>{timeline_svg(events)}'
            f'<h2>Transcript</h2>{_transcript(events)}<h2>Turns</h2>{_turns(events)}')


def _transcript(events: list[dict[str, Any]]) -> str:
    spoken = sorted((e for e in events if e.get("kind") in ("caller_speech", "bot_speech")),
                    key=lambda e: float(e.get("start") or e.get("t") or 0.0))
    lines = []
    for e in spoken:
        who = "caller" if e["kind"] == "caller_speech" else "bot"
        cut = " interrupted" if e.get("interrupted") else ""
        lines.append(f'<li class="{who}{cut}"><span class="who">{who}</span> {esc(e.get("text"))}</li>')
    return f'<ol class="transcript">{"".join(lines)}</ol>' if lines else '<p class="empty">Nothing was said.</p>'


def _turns(events: list[dict[str, Any]]) -> str:
    rows = []
    for e in events:
        if e.get("kind") != "turn":
            continue
        stages = e.get("stages") if isinstance(e.get("stages"), dict) else {}
        rows.append([esc(e.get("turn")), esc(e.get("caller")), esc(e.get("bot"))]
                    + [ms(_num(stages.get(key))) for key in LATENCY_STAGES])
    return table(["turn", "caller", "bot", *(label for _, label in STAGES)], rows, css="turns", empty="No turns.")


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
