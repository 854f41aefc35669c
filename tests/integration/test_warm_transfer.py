"""Warm transfer through Kamailio with the real models: baresip callers and baresip targets.

The caller (baresip 2002) asks for billing; the gateway puts it on hold with music, calls the
billing extension over a second leg, briefs it, and connects the two: REFER with Replaces if the
caller's phone takes it (baresip does), else a bridge in the gateway (SIPp as a phone that refuses
the REFER, with the scripted RTP peer as its audio). Audio is checked at both phones: each one
plays a tone of its own (the caller's starts after the transfer, so the bot never hears it), and
each must hear the other's. A target that does not answer gets the caller back from hold, told
`transfer_failed`, and the conversation goes on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tests.integration.test_barge_in_echo import start_call
from tests.rig.audio import band_share, make_speech_wav, read_wav, rms_dbfs, tone, write_wav
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config
from tests.rig.ports import free_port_pair
from tests.rig.rtp_peer import RtpPeer

CALLER_TONE_HZ = 1100.0
TARGET_TONE_HZ = 700.0
HOLD_TONE_HZ = 500.0
RATE = 8000


def tone_seconds(path: Path, freq: float) -> int:
    """One-second windows of a recording that are mostly `freq` (+-60 Hz) and clearly audible."""
    x, rate = read_wav(path)
    count = 0
    for start in range(0, len(x) - rate + 1, rate):
        window = x[start:start + rate]
        if rms_dbfs(window) > -40 and band_share(window, rate, freq - 60, freq + 60) > 0.5:
            count += 1
    return count


def wait_tone(phone, freq: float, seconds: int, timeout: float) -> int:
    """Poll the phone's latest received recording until it holds `seconds` of the tone."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        _, received = phone.recordings()
        found = tone_seconds(received, freq)
        if found >= seconds:
            return found
        time.sleep(1.0)
    return found


def caller_wav(path: Path, lines: list[tuple[float, str]], tone_from_s: float | None, total_s: float) -> Path:
    """The caller's side: `lines` spoken at their times, then (optionally) its tone to the end."""
    out = np.zeros(int(total_s * RATE))
    for at, text in lines:
        speech, _ = read_wav(make_speech_wav(text, path.with_name(f"{path.stem}-{int(at)}.wav"), pad_after_s=0.0))
        start = int(at * RATE)
        out[start:start + len(speech)] = speech[:len(out) - start]
    if tone_from_s is not None:
        start = int(tone_from_s * RATE)
        out[start:] = tone(CALLER_TONE_HZ, total_s - tone_from_s, RATE, amplitude=0.3)[:len(out) - start]
    return write_wav(path, out, RATE)


def warm_gateway(kamailio, gateway_factory, target: str, **transfer):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    tools = [{"transfer": {"mode": "warm", "targets": {"billing": f"sip:{target}@{kamailio.hostport}"}, **transfer}},
             "hangup"]
    agent = {"type": "conversation", "greeting": "Harbor Dental, how can I help?",
             "instructions": "You are the receptionist of Harbor Dental. Answer in one short sentence.",
             "transfer_notice": "Please hold while I connect you to {target}.", "temperature": 0,
             "reprompt_after_s": 60, "hangup_after_s": 120, "model_timeout_s": PATIENT_MODEL_TIMEOUT_S,
             "tools": tools}
    gw = gateway_factory(gateway_config(accounts=[account], agents={"front-desk": agent},
                                        rtp={"inactivity_timeout_s": 60}))
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")
    return gw


def test_warm_transfer_briefs_the_target_and_connects_the_caller(kamailio, gateway_factory, baresip_factory,
                                                                 tmp_wav_dir):
    target_wav = write_wav(tmp_wav_dir / "billing.wav", tone(TARGET_TONE_HZ, 80.0, RATE, amplitude=0.3), RATE)
    billing = baresip_factory("2003", kamailio=kamailio, source_wav=target_wav, call_duration_s=80)
    billing.wait_registered()
    gw = warm_gateway(kamailio, gateway_factory, "2003", ring_timeout_s=30)
    wav = caller_wav(tmp_wav_dir / "caller.wav", [(4.5, "Please transfer me to billing.")], 16.0, 80.0)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=80)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)

    started = gw.wait_log("warm_transfer_started", timeout=40)
    assert started["target"] == "billing"
    assert gw.find("bot_phrase", why="greeting")
    gw.wait_log("warm_transfer_hold", timeout=10)
    billing.wait_call_established(timeout=20)  # our second leg
    gw.wait_log("warm_transfer_answered", timeout=20)
    briefing = gw.wait_log("warm_transfer_briefing", timeout=30)
    assert briefing["text"].startswith("I have") or briefing["source"] == "llm", briefing
    gw.wait_log("warm_transfer_briefed", timeout=40)
    result = gw.wait_log("warm_transfer_result", timeout=40)
    assert result["ok"] and result["outcome"] in ("referred", "bridged"), result
    # each phone hears the other's tone: caller -> target and target -> caller
    assert wait_tone(billing, CALLER_TONE_HZ, 3, timeout=45) >= 3, "the target never heard the caller"
    assert wait_tone(caller, TARGET_TONE_HZ, 3, timeout=20) >= 3, "the caller never heard the target"
    assert gw.wait_log("tool_outcome", timeout=10, tool="transfer")["ok"]
    if result["outcome"] == "referred":  # the caller's phone called the target: both our legs are gone
        ended = {e["call_id"]: e for e in gw.find("call_ended")}
        assert ended[result["call_id"]]["reason"].startswith("transferred"), ended
        assert result["target_call_id"] in ended, ended
    caller.hangup()
    if result["outcome"] == "bridged":  # the gateway ends the target's leg when the caller leaves
        gw.wait_log("warm_transfer_bridge_ended", timeout=15)
        assert len(gw.find("call_ended")) == 2
    print(f"warm transfer path with baresip: {result['outcome']} ({result['detail']}), "
          f"{result['seconds']} s from the request; briefing: {briefing['source']}: {briefing['text']!r}")
    assert not gw.errors()


def test_a_target_that_does_not_answer_gives_the_caller_back(kamailio, gateway_factory, baresip_factory,
                                                            tmp_wav_dir):
    hold = write_wav(tmp_wav_dir / "hold.wav", tone(HOLD_TONE_HZ, 2.0, 16000, amplitude=0.2), 16000)
    nobody = baresip_factory("2003", kamailio=kamailio, answermode="manual", call_duration_s=60)
    nobody.wait_registered()
    gw = warm_gateway(kamailio, gateway_factory, "2003", ring_timeout_s=6, hold_music=str(hold))
    wav = caller_wav(tmp_wav_dir / "caller.wav", [(4.5, "Please transfer me to billing."),
                                                   (30.0, "What time do you open tomorrow?")], None, 60.0)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=60)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)

    gw.wait_log("warm_transfer_hold", timeout=40)
    nobody.wait_event("CALL_INCOMING", timeout=20)  # it rings, nobody picks up
    result = gw.wait_log("warm_transfer_result", timeout=30)
    assert result["outcome"] == "no_answer" and not result["ok"], result
    gw.wait_log("warm_transfer_unhold", timeout=5)
    failed = gw.wait_log("bot_phrase", timeout=20, why="transfer_failed")
    assert failed
    # the conversation goes on: the caller's next question gets an answer
    deadline = time.monotonic() + 60
    later = []
    while time.monotonic() < deadline and not later:
        later = [t for t in gw.find("turn") if "open" in (t.get("caller") or "").lower() and t.get("bot")]
        time.sleep(0.5)
    assert later, [t for t in gw.find("turn")]
    _, received = caller.recordings()
    assert tone_seconds(received, HOLD_TONE_HZ) >= 3, "the caller heard no hold music"
    caller.hangup()
    gw.wait_log("call_ended", timeout=15)
    assert not gw.errors()


def test_a_caller_that_refuses_the_refer_is_bridged_to_the_target(kamailio, gateway_factory, baresip_factory,
                                                                  tmp_wav_dir, tmp_path):
    """SIPp as the caller's phone answers the REFER with 405: the gateway relays the two legs' audio."""
    target_wav = write_wav(tmp_wav_dir / "billing.wav", tone(TARGET_TONE_HZ, 80.0, RATE, amplitude=0.3), RATE)
    billing = baresip_factory("2003", kamailio=kamailio, source_wav=target_wav, call_duration_s=80)
    billing.wait_registered()
    gw = warm_gateway(kamailio, gateway_factory, "2003", ring_timeout_s=30)
    peer = RtpPeer(free_port_pair())
    request, _ = read_wav(make_speech_wav("Please transfer me to billing.", tmp_wav_dir / "ask.wav", pad_after_s=0.0))
    peer.play_at(225, np.round(request * 32767).astype(np.int16))  # 4.5 s: after the greeting
    caller_tone = np.round(tone(CALLER_TONE_HZ, 60.0, RATE, amplitude=0.3) * 32767).astype(np.int16)
    call = start_call(gw, tmp_path, peer, seconds=12.0, scenario_name="refuse_refer.xml", timeout_s=150)
    result = gw.wait_log("warm_transfer_result", timeout=90)
    assert result["ok"] and result["outcome"] == "bridged" and "405" in result["detail"], result
    bridged_tick = len(peer.received_audio()) // 160  # the tick the peer has reached by now
    peer.play_at(bridged_tick + 25, caller_tone)  # the caller talks only once it is with the target
    assert wait_tone(billing, CALLER_TONE_HZ, 3, timeout=30) >= 3, "the target never heard the caller"
    call.join(60)  # SIPp hangs up 12 s after the REFER
    peer.stop()
    assert call.result["sipp"].ok, call.result["sipp"].describe()
    heard = peer.received_audio()[bridged_tick * 160:].astype(np.float64) / 32768
    seconds = sum(1 for s in range(0, len(heard) - RATE + 1, RATE)
                  if rms_dbfs(heard[s:s + RATE]) > -40 and band_share(heard[s:s + RATE], RATE, 640, 760) > 0.5)
    assert seconds >= 3, f"the caller heard the target's tone for {seconds} s"
    gw.wait_log("warm_transfer_bridge_ended", timeout=15)
    billing.wait_call_closed(timeout=15)  # the gateway hung up the target's leg when the caller left
    assert len(gw.find("call_ended")) == 2
    assert not gw.errors()
