"""Call record events copied to PostgreSQL: never blocking the call, readable from any gateway."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.records import CallRecorder, load_record
from gateway.report import report_main
from gateway.store.call_events import CallEventWriter
from gateway.store.postgres import PostgresStore
from tests.rig.postgres import PASSWORD


def _record_a_call(directory: Path, writer: CallEventWriter, call_id: str) -> None:
    with CallRecorder(directory, call_id, audio=False, sink=writer.put) as recorder:
        recorder.event("call_start", call_id=call_id, direction="inbound", remote="sip:+15551234@pbx", agent="desk")
        recorder.event("caller_speech", start=time.time() - 2, end=time.time() - 1, text="Hello, my name is Ann.")
        recorder.event("turn", turn=1, caller="Hello", bot="Hi Ann", speech_end=time.time() - 1,
                       stages={"turn_decision_ms": 310.0, "first_rtp_ms": 900.5, "llm_first_token_ms": float("nan")})
        recorder.event("call_end", reason="remote_bye", duration_s=3.0)
    recorder.event("late", x=1)  # after close: neither the file nor the database


def test_a_call_recorded_on_one_gateway_is_loaded_from_another(tmp_path: Path, postgres_dsn: str):
    here, elsewhere = tmp_path / "gateway-a", tmp_path / "gateway-b"
    writer = CallEventWriter(lambda: PostgresStore(postgres_dsn), purge_days=30)
    _record_a_call(here, writer, "abc@10.0.0.1")
    writer.close()
    assert (writer.written, writer.dropped, writer.failed) == (4, 0, 0)

    local = load_record(here, "abc@10.0.0.1")
    shared = load_record(elsewhere, "abc@10.0.0.1", postgres_dsn)  # no file there: from the database
    assert shared == local
    assert shared[2]["stages"]["llm_first_token_ms"] is None  # NaN became null, as in the file
    assert load_record(None, "abc@10.0.0.1", postgres_dsn) == local

    out = report_main("abc@10.0.0.1", elsewhere, tmp_path / "report.png", postgres_dsn)
    assert out.stat().st_size > 1000


def test_a_call_in_neither_place_names_both_without_the_password(tmp_path: Path, postgres_dsn: str):
    with pytest.raises(FileNotFoundError) as info:
        load_record(tmp_path, "nope", postgres_dsn)
    message = str(info.value)
    assert str(tmp_path) in message and "in the database postgresql://voicegate:***@" in message
    assert PASSWORD not in message
    with pytest.raises(FileNotFoundError):
        load_record(tmp_path, "nope", str(tmp_path / "memory.db"))  # a SQLite memory: files only


class _StuckStore:
    """A database that hangs: every write waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.rows: list[Any] = []

    def add_call_events(self, rows: list[Any]) -> int:
        self.release.wait(10)
        self.rows.extend(rows)
        return len(rows)

    def purge_call_events(self, days: float) -> int:
        return 0

    def close(self) -> None:
        pass


def test_a_hung_database_never_blocks_the_recorder_it_drops_and_counts(tmp_path: Path):
    stuck = _StuckStore()
    writer = CallEventWriter(lambda: stuck, queue_events=5)  # type: ignore[arg-type,return-value]
    with CallRecorder(tmp_path, "busy", audio=False, sink=writer.put) as recorder:
        t0 = time.monotonic()
        for i in range(200):
            recorder.event("tick", i=i)
        elapsed = time.monotonic() - t0
    assert elapsed < 0.5, f"200 events took {elapsed:.3f} s with the database hung"
    assert len(load_record(tmp_path, "busy")) == 200  # the file has every event
    assert writer.dropped >= 190
    stuck.release.set()
    writer.close()
    assert writer.written + writer.dropped == 200 and writer.written == len(stuck.rows)


def test_an_unreachable_database_is_counted_not_raised(tmp_path: Path):
    dsn = f"postgresql://voicegate:{PASSWORD}@127.0.0.1:1/nowhere"
    writer = CallEventWriter(lambda: PostgresStore(dsn, connect_timeout_s=1))
    with CallRecorder(tmp_path, "offline", audio=False, sink=writer.put) as recorder:
        recorder.event("call_start", call_id="offline")
    writer.close()
    assert writer.written == 0 and writer.failed == 1
    assert [e["kind"] for e in load_record(tmp_path, "offline")] == ["call_start"]
