"""`voicegate report`: a call's events drawn as a PNG timeline."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from gateway.records import CallRecorder
from gateway.report import render_report, report_main, stage_segments

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T0 = 1_716_206_400.0  # 2024-05-20 12:00 UTC
CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"


def _stages(decision: float, transcript: float | None, llm: float, clause: float, tts: float, rtp: float) -> dict:
    return {
        "turn_decision_ms": decision,
        "transcript_final_ms": transcript,
        "llm_first_token_ms": llm,
        "first_clause_ms": clause,
        "first_tts_audio_ms": tts,
        "first_rtp_ms": rtp,
    }


def _synthetic_call() -> list[dict[str, Any]]:
    """Three turns, the second one slow in the LLM, a tool call in the third, a barge-in on turn 2's answer."""
    ev: list[dict[str, Any]] = [
        {"t": T0, "kind": "call_start", "call_id": CALL_ID, "direction": "inbound", "remote": "sip:1001@pbx",
         "agent": "reception"},
        {"t": T0 + 1.0, "kind": "bot_speech", "start": T0 + 0.2, "end": T0 + 1.0, "text": "Hello!",
         "interrupted": False},
    ]  # fmt: skip
    turns = [
        (2.0, 3.5, _stages(250, 320, 600, 800, 900, 940)),
        (8.0, 9.2, _stages(240, None, 2600, 2900, 3050, 3100)),  # slow LLM; no transcript mark
        (14.0, 15.0, _stages(260, 330, 700, 950, 1050, 1090)),
    ]
    for n, (start, end, stages) in enumerate(turns, start=1):
        bot_start = T0 + end + stages["first_rtp_ms"] / 1000
        ev += [
            {"t": T0 + end, "kind": "caller_speech", "start": T0 + start, "end": T0 + end, "text": f"question {n}"},
            {"t": bot_start, "kind": "turn", "turn": n, "caller": f"question {n}", "bot": f"answer {n}",
             "speech_end": T0 + end, "stages": stages},
            {"t": bot_start + 2, "kind": "bot_speech", "start": bot_start, "end": bot_start + 2, "text": f"answer {n}",
             "interrupted": n == 2},
        ]  # fmt: skip
    ev += [
        {"t": T0 + 13.5, "kind": "barge_in", "at": T0 + 13.5},
        {"t": T0 + 16.5, "kind": "tool_call", "tool": "check_calendar", "arguments": {"day": "monday"},
         "start": T0 + 15.4, "end": T0 + 16.0, "ok": True},
        {"t": T0 + 20.0, "kind": "call_end", "reason": "caller hung up", "duration_s": 20.0},
    ]  # fmt: skip
    return ev


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_render_report_draws_a_png(tmp_path: Path) -> None:
    out = render_report(_synthetic_call(), tmp_path / "sub" / "call.png")
    assert out == tmp_path / "sub" / "call.png"
    width, height = _png_size(out)
    assert width > 800 and height > 400
    assert out.stat().st_size > 10_000


def test_render_report_survives_a_crashed_call(tmp_path: Path) -> None:
    events = [e for e in _synthetic_call() if e["kind"] not in ("call_start", "call_end")]
    events.append({"t": T0 + 30, "kind": "turn", "turn": 4, "speech_end": T0 + 29, "stages": {}})
    events.append({"t": T0 + 31, "kind": "something_new", "x": 1})
    _png_size(render_report(events, tmp_path / "crashed.png"))


def test_render_report_without_events_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no events"):
        render_report([], tmp_path / "empty.png")


def test_stage_segments_split_latency_by_stage() -> None:
    segments = stage_segments(_stages(240, None, 2600, 2900, 2800, 3100), speech_end_s=9.2)
    assert [s.label for s in segments] == ["turn decision", "LLM first token", "first clause", "first RTP"]
    assert [round(s.ms) for s in segments] == [240, 2360, 300, 200]  # TTS mark before the clause adds nothing
    assert segments[0].start_s == pytest.approx(9.2)
    assert segments[1].start_s == pytest.approx(9.44)
    assert max(segments, key=lambda s: s.width_s).label == "LLM first token"


def test_report_main_reads_the_record_and_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records_dir = tmp_path / "records"
    with CallRecorder(records_dir, CALL_ID, audio=False, clock=lambda: T0) as rec:
        for event in _synthetic_call():
            rec.event(**event)
    monkeypatch.chdir(tmp_path)
    out = report_main(CALL_ID, records_dir, None)
    assert out.parent == Path(".") and out.suffix == ".png" and "@" not in out.name
    _png_size(tmp_path / out)
    explicit = report_main(CALL_ID, records_dir, tmp_path / "explicit.png")
    _png_size(explicit)


def test_report_main_missing_call(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        report_main("nope", tmp_path, None)
