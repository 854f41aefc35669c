"""What a call leaves behind: its record file, the metrics that come from it, its last log line.

Kept apart from the call manager so that admission and signalling read without the bookkeeping.
All of it runs on the SIP thread except `record`, which agents call from their own threads
(the recorder queues, the metrics are thread-safe).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.agents.base import RecordKind
from gateway.calls.outcome import CallOutcome
from gateway.config import RecordingConfig
from gateway.metrics import Metrics
from gateway.records import CallRecorder

if TYPE_CHECKING:
    from gateway.calls.active import ActiveCall
    from gateway.store.call_events import CallEventWriter

EndedCallback = Callable[["ActiveCall", int, str], None]
# (call_id, kind, fields): what an agent recorded, for observers such as the console's live feed.
# Runs on the agent's thread: it must return at once (queue, never wait).
RecordObserver = Callable[[str, RecordKind, dict[str, object]], None]


class AnsweredBy:
    """Who answered an outbound call (the AMD verdict: "human", "machine", "unknown"), set on the
    call's controller thread as the agent records it and read on the SIP thread when the call has
    ended (a campaign retries a machine differently). The latest verdict wins: a beep after a
    "human" makes it a machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdict: str | None = None

    def set(self, verdict: str) -> None:
        with self._lock:
            self._verdict = verdict

    @property
    def verdict(self) -> str | None:
        with self._lock:
            return self._verdict


class CallReporting:
    def __init__(self, recording: RecordingConfig, metrics: Metrics, call_events: CallEventWriter | None):
        self.recording = recording
        self.metrics = metrics
        self.call_events = call_events  # a shared copy of every call's record events (PostgreSQL), or None
        self._ended: list[EndedCallback] = []
        self._observers: list[RecordObserver] = []

    def on_ended(self, callback: EndedCallback) -> None:
        self._ended.append(callback)

    def on_record(self, observer: RecordObserver) -> None:
        """Also hand every recorded event to `observer` (set up before calls start)."""
        self._observers.append(observer)

    def recorder(self, call_id: str, direction: str, remote: str, agent: str) -> CallRecorder | None:
        if self.recording.directory is None:
            return None
        sink = self.call_events.put if self.call_events is not None else None
        recorder = CallRecorder(Path(self.recording.directory), call_id, self.recording.audio, sink=sink)
        recorder.event("call_start", call_id=call_id, direction=direction, remote=remote, agent=agent)
        return recorder

    def record_to(self, recorder: CallRecorder | None, call_id: str = "",
                  answered_by: AnsweredBy | None = None) -> Callable[..., None]:
        """The agent's `record`: the call's record file, the metrics that come from turns, the
        observers, and `answered_by` (the call's answering-machine verdict, for campaigns)."""
        metrics = self.metrics
        observers = self._observers

        def record(kind: RecordKind, **fields: object) -> None:
            if recorder is not None:
                recorder.event(str(kind), **fields)
            match kind:
                case RecordKind.AMD if answered_by is not None and isinstance(fields.get("verdict"), str):
                    answered_by.set(fields["verdict"])
                case RecordKind.TURN if isinstance(fields.get("stages"), dict) and not fields.get("cancelled"):
                    stages = fields["stages"]
                    metrics.turn(stages)
                    if stages.get("first_rtp_ms") is not None:
                        metrics.voice_to_voice(stages["first_rtp_ms"] / 1000)
                case RecordKind.BARGE_IN:
                    metrics.barge_in()
                case RecordKind.TOOL_CALL:
                    metrics.tool_call(str(fields.get("tool")), bool(fields.get("ok")))
                case RecordKind.MODEL_ERROR:
                    metrics.model_error(str(fields.get("role", "unknown")))
            for observe in observers:
                try:
                    observe(call_id, kind, fields)
                except Exception:  # an observer's bug must never cost the call
                    structlog.get_logger("calls").exception("record_observer_failed", call_id=call_id)

        return record

    def call_ended(self, call: ActiveCall, code: int, reason: str) -> None:
        """Metrics, the `call_ended` line, the record's last event, then the registered callbacks."""
        stats = call.session.snapshot()
        duration_s = round(time.monotonic() - call.created_at, 2)
        outcome = CallOutcome.of(reason).value
        self.metrics.call_ended(call.direction, outcome)
        jitter = stats.jitter or {}
        self.metrics.jitter(float(jitter.get("target_delay_ms", 0.0)), int(jitter.get("lost", 0)),
                            int(jitter.get("concealed", 0)), int(jitter.get("late", 0)))
        self.metrics.security_event("srtp_rejected", stats.srtp_rejected)  # forged or replayed media
        call.log.info(
            "call_ended", code=code, reason=reason, outcome=outcome, answered=call.confirmed, duration_s=duration_s,
            rtp_sent=stats.packets_sent, rtp_received=stats.packets_received, malformed=stats.malformed,
            foreign_dropped=stats.foreign_dropped, srtp_rejected=stats.srtp_rejected, jitter=stats.jitter,
            reception=stats.reception, rtp_wideband_sent=stats.wideband_sent,
        )
        if call.recorder is not None:
            call.recorder.event("call_end", reason=reason, outcome=outcome, code=code, answered=call.confirmed,
                                duration_s=duration_s)
            call.recorder.close()
        for callback in self._ended:
            try:
                callback(call, code, reason)
            except Exception:
                call.log.exception("call_end_callback_failed")
