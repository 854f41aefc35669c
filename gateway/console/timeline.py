"""A call's timeline as inline SVG, drawn on the server from its record.

The same picture as `voicegate report` (gateway/report.py, which reduces the events: we reuse its
`summarize`, so both read a record the same way): caller, bot and tool lanes with barge-ins, and
one bar per turn split into its pipeline stages. SVG rather than the report's PNG because it
needs no matplotlib per page view, scales with the window, and its `<title>` elements give each
span its text on hover without any script. Colours are presentation attributes, not styles, so
the console's Content-Security-Policy (no inline styles) allows them.
"""

from __future__ import annotations

from typing import Any

from gateway.console.html import esc
from gateway.report import _BARGE_IN, _BOT, _BOT_INTERRUPTED, _CALLER, _TOOL, summarize, turn_note

WIDTH = 1000
LABEL_W = 170  # left column for lane and turn labels
LANE_H = 22
TURN_H = 18
NOTE_W = 250  # room a turn's latency note needs right of its bar
_LANES = (("caller", 0), ("bot", 1), ("tools", 2))


def timeline_svg(events: list[dict[str, Any]]) -> str:
    """The SVG element, or a short note when the record has nothing to draw."""
    try:
        call = summarize(events)
    except ValueError as exc:
        return f'<p class="empty">No timeline: {esc(exc)}</p>'
    x_end = call.x_end
    scale = (WIDTH - LABEL_W - 10) / x_end

    def x(t: float) -> float:
        return LABEL_W + max(0.0, t) * scale

    lanes_h = LANE_H * len(_LANES)
    turns_top = lanes_h + 30
    height = turns_top + TURN_H * max(1, len(call.turns)) + 24
    parts = [f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="call timeline">']
    for name, row in _LANES:
        parts.append(_text(4, row * LANE_H + 15, name))
    for row, spans, colour in ((0, call.caller, _CALLER), (1, call.bot, _BOT), (2, call.tools, _TOOL)):
        for span in spans:
            fill = _BOT_INTERRUPTED if (row == 1 and span.flag) else colour
            if row == 2 and span.flag:
                fill = "#c5b0d5"  # a failed tool call: lighter
            width = max(2.0, (span.end - span.start) * scale)
            label = span.label or ("interrupted" if span.flag and row == 1 else "")
            parts.append(_rect(x(span.start), row * LANE_H + 3, width, LANE_H - 6, fill,
                               f"{span.start:.2f}-{span.end:.2f} s {label}"))
    for at in call.barge_ins:
        parts.append(f'<line x1="{x(at):.1f}" y1="0" x2="{x(at):.1f}" y2="{lanes_h}" stroke="{_BARGE_IN}" '
                     f'stroke-dasharray="4 3"><title>barge-in at {at:.2f} s</title></line>')
    parts.append(_axis(lanes_h + 4, x_end, x))
    if not call.turns:
        parts.append(_text(LABEL_W, turns_top + 13, "no turns recorded"))
    for row, turn in enumerate(call.turns):
        y = turns_top + row * TURN_H
        caller = turn.caller if len(turn.caller) <= 22 else turn.caller[:21] + "…"
        parts.append(_text(4, y + 12, f"turn {turn.number}: {caller}"))
        for seg in turn.segments:
            parts.append(_rect(x(seg.start_s), y + 2, max(1.0, seg.width_s * scale), TURN_H - 4, seg.colour,
                               f"{seg.label}: {seg.ms:.0f} ms"))
        end = max([s.start_s + s.width_s for s in turn.segments], default=turn.speech_end_s)
        if x(end) + NOTE_W < WIDTH:
            parts.append(_text(x(end) + 4, y + 12, turn_note(turn), css="note"))
        else:  # a late turn: its note left of its bar, inside the picture
            parts.append(_text(x(turn.speech_end_s) - 4, y + 12, turn_note(turn), css="note", anchor="end"))
    parts.append("</svg>")
    return "".join(parts)


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}">'
            f"<title>{esc(title)}</title></rect>")


def _text(x: float, y: float, text: str, css: str = "label", anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{css}" text-anchor="{anchor}">{esc(text)}</text>'


def _axis(y: float, x_end: float, x) -> str:
    step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1e9) if x_end / s <= 12)
    ticks = []
    t = 0.0
    while t <= x_end:
        ticks.append(f'<line x1="{x(t):.1f}" y1="0" x2="{x(t):.1f}" y2="{y:.0f}" class="grid"/>'
                     + _text(x(t) - 6, y + 14, f"{t:g} s", css="tick"))
        t += step
    return "".join(ticks)
