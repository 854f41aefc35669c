"""Prometheus metrics for operators: calls, registrations, turn latency, media health, security.

Each `Metrics` owns its own `CollectorRegistry` rather than the process-global one, so tests and
several gateways in one process never clash over metric names.  The gateway calls the small typed
methods below instead of touching prometheus objects, which keeps metric names and label sets in
one place and bounded: labels only take values the gateway's own code chooses, never caller input.

The methods run on the SIP thread, agent threads and the 20 ms media thread: prometheus_client's
metrics are thread-safe, and label children are created once and cached so a hot-path call is a
dict lookup plus one locked increment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TURN_STAGES = ("transcript_final", "llm_first_token", "first_tts_audio", "first_rtp")
REGISTRATION_STATES = ("registered", "failed", "unregistered")

# Per-stage latency of a reply, measured from the caller's end of speech: 50 ms .. 5 s.
_STAGE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
# Caller stops talking -> caller hears the agent; above ~1.5 s conversations feel broken.
_V2V_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
# How late a 20 ms media tick ran: anything above a few ms eats into the jitter budget.
_LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class Metrics:
    """All gateway metrics, registered in a private registry; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._collectors: list[Callable[[], None]] = []
        r = self.registry
        self._active_calls = Gauge("voicegate_active_calls", "Calls currently up", registry=r)
        self._record_events = Gauge(
            "voicegate_call_record_events", "Call-record events copied to the shared database since start, by outcome",
            ["outcome"], registry=r,
        )
        self._calls = Counter(
            "voicegate_calls", "Calls that ended, by direction and outcome", ["direction", "outcome"], registry=r
        )
        self._registrations = Gauge(
            "voicegate_registrations", "SIP accounts (AORs) per registration state", ["state"], registry=r
        )
        self._turn_stage = Histogram(
            "voicegate_turn_stage_seconds", "Time from the caller's end of speech to each reply stage",
            ["stage"], buckets=_STAGE_BUCKETS, registry=r,
        )
        self._v2v = Histogram(
            "voicegate_voice_to_voice_seconds", "Caller's end of speech to the agent's first audio on the wire",
            buckets=_V2V_BUCKETS, registry=r,
        )
        self._barge_ins = Counter("voicegate_barge_ins", "Times a caller interrupted the agent", registry=r)
        self._jitter_delay = Gauge(
            "voicegate_jitter_buffer_delay_seconds", "Mean jitter-buffer delay last reported by a call", registry=r
        )
        self._packets_lost = Counter("voicegate_rtp_packets_lost", "RTP packets that never arrived", registry=r)
        self._frames_concealed = Counter(
            "voicegate_frames_concealed", "Audio frames filled in by packet-loss concealment", registry=r
        )
        self._packets_late = Counter("voicegate_rtp_packets_late", "RTP packets that came too late to play", registry=r)
        self._clock_lateness = Histogram(
            "voicegate_media_clock_lateness_seconds", "How late each media clock tick ran",
            buckets=_LATENESS_BUCKETS, registry=r,
        )
        self._model_errors = Counter("voicegate_model_errors", "Model failures by role", ["role"], registry=r)
        self._security = Counter(
            "voicegate_security_events", "Rejected or suspicious traffic by kind", ["kind"], registry=r
        )
        self._tool_calls = Counter(
            "voicegate_tool_calls", "Agent tool calls by tool and outcome", ["tool", "outcome"], registry=r
        )
        self._reg_lock = threading.Lock()
        self._reg_state: dict[str, str] = {}
        for state in REGISTRATION_STATES:  # present (at 0) from the start, so alerts see them
            self._registrations.labels(state=state).set(0)
        self._stage_children = {s: self._turn_stage.labels(stage=s) for s in TURN_STAGES}

    # --- calls ---------------------------------------------------------------------------------

    def call_started(self, direction: str) -> None:
        """A call was admitted (`direction` is "inbound" or "outbound")."""
        self._active_calls.inc()

    def call_rejected(self, direction: str, outcome: str) -> None:
        """A call refused before it started (busy, untrusted source, no ports): counted, never active."""
        self._calls.labels(direction=direction, outcome=outcome).inc()

    def call_ended(self, direction: str, outcome: str) -> None:
        """A call left the gateway; `outcome` e.g. completed, transferred, busy, rtp_timeout, failed."""
        self._active_calls.dec()
        self._calls.labels(direction=direction, outcome=outcome).inc()

    # --- registrations ---------------------------------------------------------------------------

    def registration_state(self, aor: str, state: str) -> None:
        """Move `aor` to `state`; the per-state gauges count accounts, so an AOR is in one state only."""
        with self._reg_lock:
            previous = self._reg_state.get(aor)
            if previous == state:
                return
            self._reg_state[aor] = state
            if previous is not None:
                self._registrations.labels(state=previous).dec()
            self._registrations.labels(state=state).inc()

    def record_events(self, written: int, dropped: int, failed: int) -> None:
        """The shared database's copy of call records: written, dropped (queue full), failed (batch lost)."""
        for outcome, value in (("written", written), ("dropped", dropped), ("failed", failed)):
            self._record_events.labels(outcome=outcome).set(value)

    # --- conversation ---------------------------------------------------------------------------

    def turn(self, stages: Mapping[str, float | None]) -> None:
        """Record one reply's stage latencies, given in milliseconds after the caller stopped.

        Keys may carry the `_ms` suffix `TurnTimings.as_ms()` uses; stages that did not happen
        (None) and stages outside `TURN_STAGES` are skipped, which keeps the label set bounded.
        """
        for key, value in stages.items():
            if value is None:
                continue
            child = self._stage_children.get(key.removesuffix("_ms"))
            if child is not None:
                child.observe(max(0.0, value) / 1000.0)

    def voice_to_voice(self, seconds: float) -> None:
        """Caller's end of speech to the first RTP packet of the agent's answer."""
        self._v2v.observe(max(0.0, seconds))

    def barge_in(self) -> None:
        self._barge_ins.inc()

    def model_error(self, role: str) -> None:
        """A model (`role` e.g. stt, llm, tts, vad) failed or timed out."""
        self._model_errors.labels(role=role).inc()

    def tool_call(self, tool: str, ok: bool) -> None:
        self._tool_calls.labels(tool=tool, outcome="ok" if ok else "error").inc()

    # --- media ----------------------------------------------------------------------------------

    def jitter(self, delay_ms: float, lost: int, concealed: int, late: int) -> None:
        """Report jitter-buffer health: the current mean delay, and *increments* since the last report.

        Counters only go up, so the caller passes deltas (e.g. a call's final totals once at
        teardown); negative values are ignored rather than raising on the media thread.
        """
        self._jitter_delay.set(max(0.0, delay_ms) / 1000.0)
        if lost > 0:
            self._packets_lost.inc(lost)
        if concealed > 0:
            self._frames_concealed.inc(concealed)
        if late > 0:
            self._packets_late.inc(late)

    def clock_lateness(self, ms: float) -> None:
        """How late a media clock tick ran, in milliseconds."""
        self._clock_lateness.observe(max(0.0, ms) / 1000.0)

    # --- security -------------------------------------------------------------------------------

    def security_event(self, kind: str, count: int = 1) -> None:
        """Rejected traffic (e.g. foreign RTP source, SRTP that fails authentication, flood) by a code-chosen `kind`."""
        if count > 0:
            self._security.labels(kind=kind).inc(count)

    # --- exposition -----------------------------------------------------------------------------

    def on_collect(self, callback: Callable[[], None]) -> None:
        """Run `callback` before every scrape (to refresh gauges read from elsewhere, e.g. registrations)."""
        self._collectors.append(callback)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this registry and its Content-Type, for `GET /metrics`."""
        for collect in list(self._collectors):
            collect()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
