"""Per-call records: event round-trip, the streamed stereo WAV, a slow disk, retention, unsafe Call-IDs."""

from __future__ import annotations

import json
import os
import threading
import time
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gateway import records
from gateway.records import FRAME_SAMPLES, SAMPLE_RATE, CallRecorder, load_record, purge_records, safe_call_id

DAY = 86_400.0
NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC).timestamp()


def _tone(freq: float, start: int, n: int = FRAME_SAMPLES, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(start, start + n) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _read_wav(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        samples = np.frombuffer(w.readframes(params.nframes), dtype="<i2").reshape(-1, params.nchannels)
    return params, samples


# --------------------------------------------------------------------------- events


def test_events_round_trip(tmp_path: Path) -> None:
    with CallRecorder(tmp_path, "abc123", audio=False, clock=lambda: NOW) as rec:
        rec.event("call_start", call_id="abc123", direction="inbound", remote="sip:1001@pbx", agent="reception")
        rec.event("caller_speech", start=NOW + 1.0, end=NOW + 2.5, text="hello")
        rec.event(
            "turn",
            turn=1,
            caller="hello",
            bot="hi",
            speech_end=NOW + 2.5,
            stages={"turn_decision_ms": np.float32(300.0), "transcript_final_ms": None, "first_rtp_ms": float("nan")},
        )
        rec.event("call_end", reason="caller hung up", duration_s=10.0)

    assert rec.paths.jsonl == tmp_path / "2024-05-20" / "abc123.jsonl"
    assert rec.paths.wav is None
    events = load_record(tmp_path, "abc123")
    assert [e["kind"] for e in events] == ["call_start", "caller_speech", "turn", "call_end"]
    assert all(e["t"] == NOW for e in events)
    assert events[0] == {
        "t": NOW,
        "kind": "call_start",
        "call_id": "abc123",
        "direction": "inbound",
        "remote": "sip:1001@pbx",
        "agent": "reception",
    }
    assert events[2]["stages"] == {"turn_decision_ms": 300.0, "transcript_final_ms": None, "first_rtp_ms": None}
    for line in rec.paths.jsonl.read_text().splitlines():  # strict JSON: no NaN tokens
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_event_lines_are_on_disk_before_close(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "live", audio=False)
    rec.event("call_start", call_id="live")
    assert [e["kind"] for e in load_record(tmp_path, "live")] == ["call_start"]  # a crash now keeps it
    rec.close()
    rec.close()  # idempotent
    rec.event("late")  # ignored after close
    assert len(load_record(tmp_path, "live")) == 1


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    with CallRecorder(tmp_path, "crashed", audio=False) as rec:
        rec.event("call_start", call_id="crashed")
    with rec.paths.jsonl.open("a") as f:
        f.write('{"t": 1.0, "kind": "bot_spe')
    assert [e["kind"] for e in load_record(tmp_path, "crashed")] == ["call_start"]


def test_load_record_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-call"):
        load_record(tmp_path, "no-such-call")


# --------------------------------------------------------------------------- audio


def test_wav_is_stereo_8k_with_caller_left_and_bot_right(tmp_path: Path) -> None:
    frames = 150  # 3 s
    caller = [_tone(440, i * FRAME_SAMPLES) if i % 10 else None for i in range(frames)]  # some silent frames
    bot = [_tone(1000, i * FRAME_SAMPLES, amplitude=4000) if i >= 50 else None for i in range(frames)]
    with CallRecorder(tmp_path, "stereo", audio=True) as rec:
        for c, b in zip(caller, bot, strict=True):
            rec.audio(c, b)
    assert rec.dropped_frames == 0

    params, samples = _read_wav(rec.paths.wav)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert params.nframes == frames * FRAME_SAMPLES == 24_000
    silence = np.zeros(FRAME_SAMPLES, np.int16)
    np.testing.assert_array_equal(samples[:, 0], np.concatenate([silence if c is None else c for c in caller]))
    np.testing.assert_array_equal(samples[:, 1], np.concatenate([silence if b is None else b for b in bot]))
    assert rec.paths.wav.stat().st_size == 44 + frames * FRAME_SAMPLES * 4


def test_header_claims_no_data_until_close(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path, "open", audio=True)
    rec.audio(_tone(440, 0), None)
    header = rec.paths.wav.read_bytes()[:44]
    assert header[:4] == b"RIFF" and header[36:40] == b"data"
    assert int.from_bytes(header[40:44], "little") == 0  # what a crash mid-call leaves
    rec.close()
    assert _read_wav(rec.paths.wav)[0].nframes == FRAME_SAMPLES


def test_audio_never_blocks_on_a_slow_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = records._WavStream.write

    def slow_write(self: records._WavStream, pcm: bytes) -> None:
        time.sleep(0.1)  # a stalled disk: five 20 ms frame periods per write
        real_write(self, pcm)

    monkeypatch.setattr(records._WavStream, "write", slow_write)
    rec = CallRecorder(tmp_path, "slow", audio=True, queue_frames=4)
    frames = 100
    durations: list[float] = []

    def media_thread() -> None:
        for i in range(frames):
            started = time.perf_counter()
            rec.audio(_tone(440, i * FRAME_SAMPLES), _tone(1000, i * FRAME_SAMPLES))
            durations.append(time.perf_counter() - started)

    thread = threading.Thread(target=media_thread)
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive()
    assert max(durations) < 0.05, "audio() waited for the disk"
    assert rec.dropped_frames > 0
    rec.close()
    params, samples = _read_wav(rec.paths.wav)
    assert params.nframes == frames * FRAME_SAMPLES  # dropped frames became silence: still aligned in time
    kept = np.count_nonzero(samples[:, 0].reshape(frames, FRAME_SAMPLES).any(axis=1))
    assert kept == frames - rec.dropped_frames


def test_disk_error_is_logged_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_write(self: records._WavStream, pcm: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records._WavStream, "write", failing_write)
    with CallRecorder(tmp_path, "full-disk", audio=True) as rec:
        for _ in range(10):
            rec.audio(_tone(440, 0), None)
        rec.event("call_end", reason="bye", duration_s=0.2)
    assert load_record(tmp_path, "full-disk")[-1]["kind"] == "call_end"


def test_unwritable_directory_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    rec = CallRecorder(blocker, "x", audio=True)
    rec.event("call_start")
    rec.audio(_tone(440, 0), None)
    rec.close()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "call_id",
    [
        "a84b4c76e66710@pc33.atlanta.example.com",
        "../../etc/passwd",
        "abc/def\\ghi",
        "..",
        ".hidden",
        "",
        "x" * 500,
        "sp ace:colon*star?q<>|\x00nul",
        "ünïcødé@host",
    ],
)
def test_unsafe_call_ids_stay_inside_the_day_folder(tmp_path: Path, call_id: str) -> None:
    name = safe_call_id(call_id)
    assert name and len(name) <= 120 and not name.startswith(".")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    with CallRecorder(tmp_path, call_id, audio=True, clock=lambda: NOW) as rec:
        rec.event("call_start", call_id=call_id)
    for path in (rec.paths.jsonl, rec.paths.wav):
        assert path.parent == tmp_path / "2024-05-20" and path.exists()
    assert load_record(tmp_path, call_id)[0]["call_id"] == call_id


def test_safe_call_id_keeps_plain_ids_and_separates_lookalikes() -> None:
    assert safe_call_id("3c26700b-4b1a@10.0.0.1") != safe_call_id("3c26700b-4b1a/10.0.0.1")
    assert safe_call_id("plain-id_1.2") == "plain-id_1.2"
    assert safe_call_id("a@b") == safe_call_id("a@b")


# --------------------------------------------------------------------------- retention


def _record_on(root: Path, day: str, name: str) -> None:
    folder = root / day
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".jsonl", ".wav"):
        (folder / f"{name}{suffix}").write_text("{}\n")


def test_purge_with_fake_now(tmp_path: Path) -> None:
    _record_on(tmp_path, "2024-04-01", "old")  # 49 days before NOW
    _record_on(tmp_path, "2024-04-19", "boundary")  # ended 30.5 days before NOW
    _record_on(tmp_path, "2024-04-20", "recent")  # its day ends inside the retention
    _record_on(tmp_path, "2024-05-20", "today")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("not ours")
    (tmp_path / "README").write_text("not ours")
    for path in (tmp_path / "2024-04-20").iterdir():  # mtime decides inside a day not wholly expired
        os.utime(path, (NOW, NOW))

    assert purge_records(tmp_path, 30, now=NOW) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2024-04-20", "2024-05-20", "README", "notes"]
    assert purge_records(tmp_path, 30, now=NOW) == 0
    assert purge_records(tmp_path, float("inf"), now=NOW + 1000 * DAY) == 0
    assert purge_records(tmp_path, 1, now=NOW + 2 * DAY) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README", "notes"]


def test_purge_removes_stale_files_in_a_recent_day_by_mtime(tmp_path: Path) -> None:
    _record_on(tmp_path, "2024-05-20", "stale")
    stale = NOW - 2 * DAY  # impossible in practice, but shows the rule: last write before the cutoff
    for path in (tmp_path / "2024-05-20").iterdir():
        os.utime(path, (stale, stale))
    assert purge_records(tmp_path, 1, now=NOW) == 2
    assert (tmp_path / "2024-05-20").is_dir()


def test_purge_rejects_bad_retention_and_tolerates_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        purge_records(tmp_path, -1)
    with pytest.raises(ValueError):
        purge_records(tmp_path, float("nan"))
    assert purge_records(tmp_path / "missing", 30) == 0
