"""What a call leaves behind: its record file, the metrics that come from it, its last log line.

Kept apart from the call manager so that admission and signalling read without the bookkeeping.
All of it runs on the SIP thread except `record`, which agents call from their own threads
(the recorder queues, the metrics are thread-safe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.agents.base import RecordKind
from gateway.calls.outcome import CallOutcome
from gateway.config import RecordingConfig
from gateway.metrics import Metrics
from gateway.records import CallRecorder

if TYPE_CHECKING:
    from gateway.calls.active import ActiveCall
    from gateway.store.call_events import CallEventWriter

EndedCallback = Callable[["ActiveCall", int, str], None]


class CallReporting:
    def __init__(self, recording: RecordingConfig, metrics: Metrics, call_events: CallEventWriter | None):
        self.recording = recording
        self.metrics = metrics
        self.call_events = call_events  # a shared copy of every call's record events (PostgreSQL), or None
        self._ended: list[EndedCallback] = []

    def on_ended(self, callback: EndedCallback) -> None:
        self._ended.append(callback)

    def recorder(self, call_id: str, direction: str, remote: str, agent: str) -> CallRecorder | None:
        if self.recording.directory is None:
            return None
        sink = self.call_events.put if self.call_events is not None else None
        recorder = CallRecorder(Path(self.recording.directory), call_id, self.recording.audio, sink=sink)
        recorder.event("call_start", call_id=call_id, direction=direction, remote=remote, agent=agent)
        return recorder

    def record_to(self, recorder: CallRecorder | None) -> Callable[..., None]:
        """The agent's `record`: the call's record file, and the metrics that come from turns."""
        metrics = self.metrics

        def record(kind: RecordKind, **fields: object) -> None:
            if recorder is not None:
                recorder.event(str(kind), **fields)
            match kind:
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

        return record

    def call_ended(self, call: ActiveCall, code: int, reason: str) -> None:
        """Metrics, the `call_ended` line, the record's last event, then the registered callbacks."""
        stats = call.session.snapshot()
        duration_s = round(time.monotonic() - call.created_at, 2)
        self.metrics.call_ended(call.direction, CallOutcome.of(reason).value)
        jitter = stats.jitter or {}
        self.metrics.jitter(float(jitter.get("target_delay_ms", 0.0)), int(jitter.get("lost", 0)),
                            int(jitter.get("concealed", 0)), int(jitter.get("late", 0)))
        self.metrics.security_event("srtp_rejected", stats.srtp_rejected)  # forged or replayed media
        call.log.info(
            "call_ended", code=code, reason=reason, duration_s=duration_s,
            rtp_sent=stats.packets_sent, rtp_received=stats.packets_received, malformed=stats.malformed,
            foreign_dropped=stats.foreign_dropped, srtp_rejected=stats.srtp_rejected, jitter=stats.jitter,
            reception=stats.reception, rtp_wideband_sent=stats.wideband_sent,
        )
        if call.recorder is not None:
            call.recorder.event("call_end", reason=reason, code=code, duration_s=duration_s)
            call.recorder.close()
        for callback in self._ended:
            try:
                callback(call, code, reason)
            except Exception:
                call.log.exception("call_end_callback_failed")
