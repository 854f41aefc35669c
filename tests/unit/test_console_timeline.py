"""The call timeline the console draws in the page (SVG), from a record's events."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.console.timeline import timeline_svg

T0 = 1_700_000_000.0


def events(turns: int = 1) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{"t": T0, "kind": "call_start", "call_id": "c", "remote": "sip:1@x"}]
    for i in range(turns):
        at = T0 + 2 + i * 10
        out += [
            {"t": at, "kind": "caller_speech", "start": at - 1, "end": at, "text": "<script>alert(1)</script>"},
            {"t": at, "kind": "turn", "turn": i + 1, "caller": "When & where?", "speech_end": at,
             "stages": {"transcript_final_ms": 200, "llm_first_token_ms": 500, "first_rtp_ms": 900}},
            {"t": at, "kind": "bot_speech", "start": at + 0.9, "end": at + 3, "text": "Here.", "interrupted": i == 0},
        ]
    out += [{"t": T0 + 3, "kind": "barge_in", "at": T0 + 3},
            {"t": T0 + 4, "kind": "tool_call", "tool": "hangup", "start": T0 + 4, "end": T0 + 4.2, "ok": False},
            {"t": T0 + 10 * turns + 5, "kind": "call_end", "reason": "remote_bye", "duration_s": 10.0 * turns + 5}]
    return out


def test_the_svg_is_well_formed_escaped_and_carries_every_span():
    svg = timeline_svg(events(turns=3))
    root = ET.fromstring(svg)  # well-formed: caller text cannot break out of it
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(f"{ns}title")]
    assert any("barge-in" in t for t in titles)
    assert any("hangup" in t for t in titles) and any("first RTP" in t for t in titles)
    assert "<script>" not in svg and "When &amp; where?" in svg
    rects = list(root.iter(f"{ns}rect"))
    assert len(rects) >= 3 * 2 + 1 + 3 * 3  # caller + bot per turn, a tool, 3 stage segments per turn
    width = float(root.get("viewBox").split()[2])
    for text in root.iter(f"{ns}text"):  # the late turns' notes are drawn left of their bar, inside the picture
        if text.get("class") == "note" and text.get("text-anchor") == "start":
            assert float(text.get("x")) < width - 200, text.text


def test_a_record_without_times_gives_a_note_not_an_error():
    assert "No timeline" in timeline_svg([{"kind": "call_start"}])
