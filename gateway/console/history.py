"""Finished calls for the history page, read from the call records (`recording.directory`).

Why from the record files: they are what the gateway already writes for every call (see
gateway/records.py), with who called, which agent, how it ended and every turn; the console keeps
no database of its own. A search reads at most `MAX_SCANNED` of the newest records, so a
directory with a year of calls cannot stall the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from gateway.calls.outcome import CallOutcome
from gateway.records import _parse_day as day_of_folder  # the record folders' own date rule
from gateway.records import load_record, safe_call_id

MAX_SCANNED = 2000
MAX_SHOWN = 200


@dataclass(frozen=True)
class CallSummary:
    call_id: str
    day: str  # the record's UTC day folder
    started_at: float
    direction: str
    remote: str
    agent: str
    outcome: CallOutcome | None  # None: no call_end yet (up, or the gateway crashed)
    reason: str
    duration_s: float | None
    turns: int
    has_audio: bool


@dataclass(frozen=True)
class HistoryQuery:
    caller: str = ""  # substring of the remote URI / caller ID
    day: date | None = None
    outcome: CallOutcome | None = None

    def matches(self, call: CallSummary) -> bool:
        if self.caller and self.caller.lower() not in call.remote.lower():
            return False
        if self.day is not None and call.day != self.day.isoformat():
            return False
        return self.outcome is None or call.outcome is self.outcome


def search(directory: Path | None, query: HistoryQuery) -> list[CallSummary]:
    """Newest first; at most MAX_SHOWN matches among the MAX_SCANNED newest records."""
    if directory is None or not directory.is_dir():
        return []
    found: list[CallSummary] = []
    for path in _newest_records(directory):
        summary = _summary(path)
        if summary is not None and query.matches(summary):
            found.append(summary)
            if len(found) >= MAX_SHOWN:
                break
    return found


def _newest_records(directory: Path) -> list[Path]:
    days = sorted((p for p in directory.iterdir() if p.is_dir() and day_of_folder(p.name) is not None), reverse=True)
    paths: list[Path] = []
    for day in days:
        files = sorted(day.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
        paths.extend(files[: MAX_SCANNED - len(paths)])
        if len(paths) >= MAX_SCANNED:
            break
    return paths


def _summary(path: Path) -> CallSummary | None:
    start: dict[str, Any] = {}
    end: dict[str, Any] | None = None
    turns = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                kind = _kind(line)
                if kind == "call_start":
                    start = json.loads(line)
                elif kind == "call_end":
                    end = json.loads(line)
                elif kind == "turn":
                    turns += 1
    except (OSError, json.JSONDecodeError):
        return None
    if not start:
        return None
    reason = str(end.get("reason") or "") if end else ""
    duration = end.get("duration_s") if end else None
    return CallSummary(
        call_id=str(start.get("call_id") or path.stem), day=path.parent.name,
        started_at=float(start.get("t") or 0.0), direction=str(start.get("direction") or ""),
        remote=str(start.get("remote") or ""), agent=str(start.get("agent") or ""),
        outcome=CallOutcome.of(reason) if end else None, reason=reason,
        duration_s=float(duration) if isinstance(duration, int | float) else None, turns=turns,
        has_audio=path.with_suffix(".wav").is_file(),
    )


def _kind(line: str) -> str | None:
    """The line's kind without parsing every line in full (only the ones the summary needs)."""
    marker = line.find('"kind": "')
    if marker < 0:
        return None
    start = marker + len('"kind": "')
    return line[start: line.find('"', start)]


def events_of(directory: Path | None, call_id: str, database: str | None) -> list[dict[str, Any]]:
    """One call's record events (FileNotFoundError if there is none)."""
    return load_record(directory, call_id, database)


def audio_of(directory: Path | None, call_id: str) -> Path | None:
    """The call's stereo WAV, when recording.audio was on (newest day folder first)."""
    if directory is None:
        return None
    name = f"{safe_call_id(call_id)}.wav"
    matches = sorted(p for p in directory.glob(f"*/{name}") if day_of_folder(p.parent.name) is not None)
    return matches[-1] if matches else None
