"""Metrics: names and labels operators alert on, private registries, thread safety."""

from __future__ import annotations

import threading

import pytest

from gateway.metrics import Metrics


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_calls_active_gauge_and_outcome_counter() -> None:
    m = Metrics()
    m.call_started("inbound")
    m.call_started("outbound")
    m.call_ended("inbound", "completed")
    assert value(m, "voicegate_active_calls") == 1
    assert value(m, "voicegate_calls_total", direction="inbound", outcome="completed") == 1
    assert value(m, "voicegate_calls_total", direction="outbound", outcome="completed") is None


def test_registration_state_moves_accounts_between_states() -> None:
    m = Metrics()
    assert value(m, "voicegate_registrations", state="registered") == 0  # present before any account
    m.registration_state("sip:2001@pbx", "registered")
    m.registration_state("sip:2002@pbx", "registered")
    m.registration_state("sip:2001@pbx", "failed")
    m.registration_state("sip:2001@pbx", "failed")  # repeated: no double count
    assert value(m, "voicegate_registrations", state="registered") == 1
    assert value(m, "voicegate_registrations", state="failed") == 1
    assert value(m, "voicegate_registrations", state="unregistered") == 0


def test_turn_stages_in_ms_become_seconds_and_skip_none_and_unknown() -> None:
    m = Metrics()
    m.turn({"transcript_final_ms": 120.0, "llm_first_token": 400.0, "first_rtp_ms": None, "made_up": 5.0})
    assert value(m, "voicegate_turn_stage_seconds_count", stage="transcript_final") == 1
    assert value(m, "voicegate_turn_stage_seconds_sum", stage="transcript_final") == pytest.approx(0.12)
    assert value(m, "voicegate_turn_stage_seconds_sum", stage="llm_first_token") == pytest.approx(0.4)
    assert value(m, "voicegate_turn_stage_seconds_count", stage="first_rtp") == 0
    assert value(m, "voicegate_turn_stage_seconds_count", stage="made_up") is None
    m.voice_to_voice(0.9)
    assert value(m, "voicegate_voice_to_voice_seconds_bucket", le="1.0") == 1


def test_media_security_and_tool_metrics() -> None:
    m = Metrics()
    m.jitter(delay_ms=60.0, lost=3, concealed=2, late=1)
    m.jitter(delay_ms=40.0, lost=-1, concealed=0, late=0)  # negatives ignored, not raised
    m.clock_lateness(3.0)
    m.barge_in()
    m.model_error("llm")
    m.security_event("foreign_rtp_source")
    m.security_event("srtp_rejected", 3)
    m.security_event("srtp_rejected", 0)
    m.tool_call("transfer", ok=True)
    m.tool_call("http", ok=False)
    assert value(m, "voicegate_jitter_buffer_delay_seconds") == pytest.approx(0.04)
    assert value(m, "voicegate_rtp_packets_lost_total") == 3
    assert value(m, "voicegate_frames_concealed_total") == 2
    assert value(m, "voicegate_rtp_packets_late_total") == 1
    assert value(m, "voicegate_media_clock_lateness_seconds_sum") == pytest.approx(0.003)
    assert value(m, "voicegate_barge_ins_total") == 1
    assert value(m, "voicegate_model_errors_total", role="llm") == 1
    assert value(m, "voicegate_security_events_total", kind="foreign_rtp_source") == 1
    assert value(m, "voicegate_security_events_total", kind="srtp_rejected") == 3
    assert value(m, "voicegate_tool_calls_total", tool="http", outcome="error") == 1


def test_render_exposition_text_with_names() -> None:
    m = Metrics()
    m.call_started("inbound")
    m.call_ended("inbound", "rtp_timeout")
    m.turn({"first_tts_audio": 300.0})
    text, content_type = m.render()
    assert content_type.startswith("text/plain")
    for name in ("voicegate_active_calls", "voicegate_calls_total", "voicegate_registrations",
                 "voicegate_turn_stage_seconds_bucket", "voicegate_voice_to_voice_seconds",
                 "voicegate_media_clock_lateness_seconds", "voicegate_security_events_total"):
        assert name.encode() in text
    assert b'outcome="rtp_timeout"' in text


def test_instances_do_not_clash_and_counts_are_thread_safe() -> None:
    a, b = Metrics(), Metrics()

    def work() -> None:
        for _ in range(1000):
            a.call_started("inbound")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert value(a, "voicegate_active_calls") == 4000
    assert value(b, "voicegate_active_calls") == 0


def test_record_events_copied_to_the_database_are_exported():
    m = Metrics()
    m.record_events(written=10, dropped=2, failed=1)
    m.record_events(written=12, dropped=2, failed=1)
    assert value(m, "voicegate_call_record_events", outcome="written") == 12
    assert value(m, "voicegate_call_record_events", outcome="dropped") == 2
