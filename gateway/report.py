"""`voicegate report CALL_ID`: one call's timeline as a PNG, drawn from its event record.

Why a picture: "the bot was slow" or "it talked over me" is a question about *time*; a timeline of
who spoke when, with each turn's latency split into its pipeline stages, answers it at a glance.

Top panel (x = seconds since ``call_start``): a caller-speech lane, a bot-speech lane (speech the
caller cut off is drawn in another colour), a tool-call lane (failed calls hatched), and a dashed
line at every barge-in.  Bottom panel, same x axis: one row per turn, a stacked bar that starts at
the end of the caller's speech and is split at each stage mark (turn decision, transcript, LLM
first token, first clause, TTS audio, first RTP packet), annotated with the total and the slowest
stage.  The stage marks are milliseconds after speech end on one clock, so a segment's width is the
time *that* stage added; a missing (null) mark merges its time into the next segment.

Drawing uses matplotlib's object API on an Agg canvas: no display, no pyplot global state, so it
is safe from any thread and on a headless server.  The event schema is in :mod:`gateway.records`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gateway.records import load_record, safe_call_id

__all__ = ["STAGES", "StageSegment", "render_report", "report_main", "stage_segments", "summarize", "turn_note"]

STAGES: tuple[tuple[str, str], ...] = (
    ("turn_decision_ms", "turn decision"),
    ("transcript_final_ms", "transcript"),
    ("llm_first_token_ms", "LLM first token"),
    ("first_clause_ms", "first clause"),
    ("first_tts_audio_ms", "TTS"),
    ("first_rtp_ms", "first RTP"),
)
_STAGE_COLOURS = ("#8c8c8c", "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd")
_CALLER = "#1f77b4"
_BOT = "#2ca02c"
_BOT_INTERRUPTED = "#ff7f0e"
_TOOL = "#9467bd"
_BARGE_IN = "#d62728"
_LANES = {"caller": 2.0, "bot": 1.0, "tools": 0.0}
_BAR_HEIGHT = 0.6
_TEXT_CHARS = 40
_WIDTH_IN = 14.0
_DPI = 100


@dataclass(frozen=True)
class StageSegment:
    """The part of a turn's latency one stage added, in seconds on the report's x axis."""

    label: str
    colour: str
    start_s: float
    width_s: float

    @property
    def ms(self) -> float:
        return self.width_s * 1000.0


@dataclass(frozen=True)
class _Span:
    start: float
    end: float
    label: str = ""
    flag: bool = False  # bot: interrupted; tool: failed


@dataclass(frozen=True)
class _Turn:
    number: int
    caller: str
    speech_end_s: float
    segments: list[StageSegment]


@dataclass
class _Call:
    """The events reduced to what the picture needs, times in seconds since call start."""

    call_id: str = "?"
    details: str = ""
    duration_s: float = 0.0
    reason: str = "unknown (no call_end)"
    caller: list[_Span] = field(default_factory=list)
    bot: list[_Span] = field(default_factory=list)
    tools: list[_Span] = field(default_factory=list)
    barge_ins: list[float] = field(default_factory=list)
    turns: list[_Turn] = field(default_factory=list)

    @property
    def x_end(self) -> float:
        ends = [self.duration_s] + [s.end for s in self.caller + self.bot + self.tools] + self.barge_ins
        ends += [seg.start_s + seg.width_s for turn in self.turns for seg in turn.segments]
        return max(ends) * 1.02 + 0.1


# --------------------------------------------------------------------------- events -> call


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _start_time(events: list[dict[str, Any]]) -> float:
    for event in events:
        if event.get("kind") == "call_start" and _num(event.get("t")) is not None:
            return float(event["t"])
    times = [_num(e.get(k)) for e in events for k in ("t", "start", "at", "speech_end")]
    known = [t for t in times if t is not None]
    if not known:
        raise ValueError("the events carry no times: nothing to draw")
    return min(known)


def _span(event: dict[str, Any], t0: float, label: str = "", flag: bool = False) -> _Span | None:
    start, end = _num(event.get("start")), _num(event.get("end"))
    if start is None:
        return None
    return _Span(start - t0, (start if end is None else max(end, start)) - t0, label, flag)


def stage_segments(stages: dict[str, Any], speech_end_s: float) -> list[StageSegment]:
    """Split a turn's stage marks (ms after speech end) into the time each stage added.

    A null mark is skipped (its time lands in the next known stage); a mark earlier than the
    previous one (work done in parallel) adds nothing.
    """
    segments: list[StageSegment] = []
    reached_ms = 0.0
    for (key, label), colour in zip(STAGES, _STAGE_COLOURS, strict=True):
        mark = _num(stages.get(key))
        if mark is None or mark <= reached_ms:
            continue
        start = speech_end_s + reached_ms / 1000.0
        segments.append(StageSegment(label, colour, start, (mark - reached_ms) / 1000.0))
        reached_ms = mark
    return segments


def _turn(event: dict[str, Any], t0: float, index: int) -> _Turn | None:
    speech_end = _num(event.get("speech_end"))
    if speech_end is None:
        return None
    stages = event.get("stages") if isinstance(event.get("stages"), dict) else {}
    number = event.get("turn") if isinstance(event.get("turn"), int) else index
    return _Turn(number, str(event.get("caller") or ""), speech_end - t0, stage_segments(stages, speech_end - t0))


def _apply(call: _Call, event: dict[str, Any], t0: float) -> None:
    kind = event.get("kind")
    if kind == "call_start":
        call.call_id = str(event.get("call_id", call.call_id))
        parts = [str(event[k]) for k in ("direction", "remote", "agent") if event.get(k)]
        call.details = " · ".join(parts)
    elif kind == "caller_speech" and (span := _span(event, t0)):
        call.caller.append(span)
    elif kind == "bot_speech" and (span := _span(event, t0, flag=bool(event.get("interrupted")))):
        call.bot.append(span)
    elif kind == "tool_call" and (span := _span(event, t0, str(event.get("tool", "?")), event.get("ok") is False)):
        call.tools.append(span)
    elif kind == "barge_in" and (at := _num(event.get("at", event.get("t")))) is not None:
        call.barge_ins.append(at - t0)
    elif kind == "turn" and (turn := _turn(event, t0, len(call.turns) + 1)):
        call.turns.append(turn)
    elif kind == "call_end":
        call.reason = str(event.get("reason") or "unknown")
        duration = _num(event.get("duration_s"))
        end_t = _num(event.get("t"))
        call.duration_s = duration if duration is not None else (end_t - t0 if end_t is not None else 0.0)


def summarize(events: list[dict[str, Any]]) -> _Call:
    events = [e for e in events if isinstance(e, dict)]
    t0 = _start_time(events)
    call = _Call()
    for event in events:
        _apply(call, event, t0)
    if call.duration_s <= 0:  # no call_end (a crash): the call lasted at least as long as its last event
        times = [_num(e.get("t")) for e in events]
        call.duration_s = max([t - t0 for t in times if t is not None] + [0.0])
    return call


# --------------------------------------------------------------------------- drawing


def _draw_lanes(ax: Axes, call: _Call) -> None:
    for lane, spans in (("caller", call.caller), ("bot", call.bot)):
        for span in spans:
            colour = _BOT_INTERRUPTED if span.flag else (_CALLER if lane == "caller" else _BOT)
            ax.broken_barh(
                [(span.start, span.end - span.start)], (_LANES[lane] - _BAR_HEIGHT / 2, _BAR_HEIGHT), facecolors=colour
            )
    for span in call.tools:
        ax.broken_barh(
            [(span.start, max(span.end - span.start, 0.05))],
            (-_BAR_HEIGHT / 2, _BAR_HEIGHT),
            facecolors=_TOOL,
            hatch="//" if span.flag else None,
            edgecolor="black",
            linewidth=0.5,
        )
        ax.text(span.start, _BAR_HEIGHT / 2 + 0.05, span.label, fontsize=7, va="bottom", clip_on=True)
    for at in call.barge_ins:
        ax.axvline(at, color=_BARGE_IN, linestyle="--", linewidth=1.2)
    ax.set_yticks(list(_LANES.values()), ["caller", "bot", "tools"])
    ax.set_ylim(-0.7, 2.7)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=_lane_legend(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _lane_legend() -> list[Any]:
    return [
        Patch(color=_CALLER, label="caller speech"),
        Patch(color=_BOT, label="bot speech"),
        Patch(color=_BOT_INTERRUPTED, label="bot speech (interrupted)"),
        Patch(facecolor=_TOOL, label="tool call"),
        Patch(facecolor=_TOOL, hatch="//", edgecolor="black", label="tool call (failed)"),
        Line2D([], [], color=_BARGE_IN, linestyle="--", label="barge-in"),
    ]


def turn_note(turn: _Turn) -> str:
    if not turn.segments:
        return "no stage reached"
    total = sum(s.ms for s in turn.segments)
    slowest = max(turn.segments, key=lambda s: s.width_s)
    return f"{total:.0f} ms (slowest: {slowest.label} {slowest.ms:.0f} ms)"


def _turn_label(turn: _Turn) -> str:
    text = turn.caller if len(turn.caller) <= _TEXT_CHARS else turn.caller[: _TEXT_CHARS - 1] + "…"
    return f"turn {turn.number}: {text!r}" if text else f"turn {turn.number}"


def _draw_turns(ax: Axes, call: _Call, x_end: float) -> None:
    if not call.turns:
        ax.text(0.5, 0.5, "no turns recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        return
    for row, turn in enumerate(call.turns):
        for seg in turn.segments:
            ax.barh(row, seg.width_s, left=seg.start_s, height=_BAR_HEIGHT, color=seg.colour)
        end = max([s.start_s + s.width_s for s in turn.segments], default=turn.speech_end_s)
        right_side = end < 0.7 * x_end  # late turns: note left of the bar, so it stays inside the axes
        ax.text(
            end + 0.01 * x_end if right_side else turn.speech_end_s - 0.01 * x_end,
            row,
            turn_note(turn),
            fontsize=7,
            va="center",
            ha="left" if right_side else "right",
        )
    ax.set_yticks(range(len(call.turns)), [_turn_label(t) for t in call.turns], fontsize=7)
    ax.set_ylim(len(call.turns) - 0.5, -0.5)  # turn 1 on top
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=c, label=label) for (_, label), c in zip(STAGES, _STAGE_COLOURS, strict=True)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="turn latency")


def _figure(call: _Call) -> Figure:
    turns_height = max(1.5, 0.35 * len(call.turns) + 0.8)
    fig = Figure(figsize=(_WIDTH_IN, 2.6 + turns_height), dpi=_DPI)
    FigureCanvasAgg(fig)
    lanes, turns = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.6, turns_height]})
    x_end = call.x_end
    _draw_lanes(lanes, call)
    _draw_turns(turns, call, x_end)
    turns.set_xlim(0.0, x_end)
    turns.set_xlabel("seconds since call start")
    fig.suptitle(f"Call {call.call_id} — {call.duration_s:.1f} s — ended: {call.reason}", fontsize=11)
    if call.details:
        lanes.set_title(call.details, fontsize=9)
    return fig


def render_report(events: list[dict[str, Any]], out: Path) -> Path:
    """Draw the call's timeline to ``out`` (PNG) and return the path; ValueError if there is nothing to draw."""
    if not events:
        raise ValueError("no events: the call record is empty")
    fig = _figure(summarize(events))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out


def report_main(call_id: str, directory: Path | None, out: Path | None = None, database: str | None = None) -> Path:
    """`voicegate report CALL_ID`: find the call's record under ``directory`` (else in a PostgreSQL
    ``database``, where every gateway of a cluster copies its calls' events) and draw it.

    The default output is ``./<safe call id>.png``.  Raises FileNotFoundError if the call has no
    record, ValueError if the record is empty, StoreError if the database cannot be read.
    """
    events = load_record(directory, call_id, database)
    return render_report(events, out if out is not None else Path(f"{safe_call_id(call_id)}.png"))
