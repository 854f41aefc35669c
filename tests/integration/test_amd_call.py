"""Outbound calls through Kamailio to a baresip callee: a voicemail gets one message after its beep,
a person's "Hello?" is answered at once and never talked over (issue 14).

The gateway (`voicegate call`, a conversation agent with `amd: {on_machine: leave_message}`) calls
extension 2002, a baresip that answers at once and plays a WAV as its side of the call: a
voicemail greeting and a beep, or a person's "Hello?" and then silence. baresip records what it
hears from the gateway, from the answer on (the gateway sends a packet every 20 ms, silence
included), so the bot's speech is timed on the wire against the callee's own script.
"""

from __future__ import annotations

import json
import time

import numpy as np

from tests.rig.audio import active_segments, make_speech_wav, read_wav, tone, write_wav
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config

GREETING = "Hi, this is Harbor Dental calling about your appointment."
MESSAGE = "Hello, this is Harbor Dental. Your cleaning is tomorrow at ten. Please call us if you cannot come. Goodbye."
VOICEMAIL = "Hi, you've reached Anna. I can't take your call right now. Please leave a message after the tone."
BOT_DBFS = -35  # the bot's speech on the callee's recording; silence frames are digital zero


def outbound_gateway(kamailio, gateway_factory, records=None):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    agents = {"front-desk": {"type": "conversation", "model_timeout_s": PATIENT_MODEL_TIMEOUT_S, "greeting": GREETING,
                           "instructions": "You call patients of Harbor Dental to remind them of appointments.",
                           "amd": {"on_machine": "leave_message", "message": MESSAGE}}}
    config = gateway_config(accounts=[account], agents=agents)
    if records is not None:
        config["recording"] = {"directory": str(records)}
    return gateway_factory(config, command="call", extra_args=(kamailio.uri("2002"),), wait=False)


def callee_script(tmp_wav_dir, speech: str, lead_s: float, beep: tuple[float, float] | None, total_s: float):
    """The callee's side: `lead_s` of silence, `speech`, then (if `beep`, (hz, seconds)) a beep 0.5 s
    later; returns (wav path, end of the speech, end of the beep or None), seconds after the answer."""
    words, rate = read_wav(make_speech_wav(speech, tmp_wav_dir / "words.wav", pad_after_s=0.0))
    parts = [np.zeros(int(lead_s * rate), dtype=np.float32), words]
    speech_end = lead_s + len(words) / rate
    beep_end = None
    if beep is not None:
        hz, length = beep
        parts += [np.zeros(int(0.5 * rate), dtype=np.float32), tone(hz, length, rate, amplitude=0.3)]
        beep_end = speech_end + 0.5 + length
    audio = np.concatenate(parts)
    audio = np.concatenate([audio, np.zeros(int(total_s * rate) - len(audio), dtype=np.float32)])
    return write_wav(tmp_wav_dir / "callee.wav", audio, rate), speech_end, beep_end


def bot_speech(callee) -> list[tuple[float, float]]:
    _, received_path = callee.recordings()
    received, rate = read_wav(received_path)
    return active_segments(received, rate, threshold_dbfs=BOT_DBFS)


def test_voicemail_gets_the_message_once_after_the_beep(kamailio, gateway_factory, baresip_factory, tmp_wav_dir,
                                                         tmp_path):
    wav, speech_end, beep_end = callee_script(tmp_wav_dir, VOICEMAIL, lead_s=0.5, beep=(1000.0, 0.6), total_s=40)
    callee = baresip_factory("2002", kamailio=kamailio, answermode="auto", source_wav=wav, call_duration_s=40)
    callee.wait_registered()
    gw = outbound_gateway(kamailio, gateway_factory, records=tmp_path / "records")
    callee.wait_call_established(timeout=120)  # the gateway loads its models before it dials
    verdict = gw.wait_log("amd_verdict", timeout=20)
    assert verdict["verdict"] == "machine", verdict
    ready = gw.wait_log("amd_machine_ready", timeout=30)
    assert ready["why"] == "beep" and abs(ready["beep_hz"] - 1000) <= 50, ready
    callee.wait_call_closed(timeout=40)  # the gateway hangs up once the message has played
    segments = bot_speech(callee)
    assert segments, "the bot said nothing"
    first = segments[0][0]
    print(f"beep ended at {beep_end:.2f} s, the message reached the callee at {first:.2f} s")
    assert first >= beep_end, f"the bot spoke at {first:.2f} s, before the beep ended at {beep_end:.2f} s: {segments}"
    assert first - beep_end < 1.5, f"the message started {first - beep_end:.2f} s after the beep"
    assert [p["why"] for p in gw.find("bot_phrase")] == ["voicemail_message"]  # once, and no greeting
    assert gw.find("call_hangup", reason="goodbye") or gw.find("call_ended", reason="goodbye")
    spoken = sum(end - start for start, end in segments)
    assert spoken > 3.0, f"only {spoken:.1f} s of the message went out: {segments}"
    assert gw.wait_exit(20) == 0
    assert not gw.errors()
    [record] = (tmp_path / "records").rglob("*.jsonl")
    amd = [e for e in map(json.loads, record.read_text().splitlines()) if e["kind"] == "amd"]
    assert amd[0]["verdict"] == "machine" and amd[0]["after_answer_ms"] > 0, amd
    assert amd[1]["ready"] == "beep", amd


def test_person_is_answered_right_after_their_hello(kamailio, gateway_factory, baresip_factory, tmp_wav_dir):
    wav, hello_end, _ = callee_script(tmp_wav_dir, "Hello?", lead_s=0.6, beep=None, total_s=30)
    callee = baresip_factory("2002", kamailio=kamailio, answermode="auto", source_wav=wav, call_duration_s=30)
    callee.wait_registered()
    gw = outbound_gateway(kamailio, gateway_factory)
    callee.wait_call_established(timeout=120)
    verdict = gw.wait_log("amd_verdict", timeout=20)
    assert verdict["verdict"] == "human", verdict
    phrase = gw.wait_log("bot_phrase", timeout=10)
    assert phrase["why"] == "greeting", phrase
    time.sleep(5)  # the greeting plays out
    callee.hangup()
    callee.wait_call_closed(timeout=10)
    segments = bot_speech(callee)
    assert segments, "the bot said nothing"
    first = segments[0][0]
    print(f"Hello? ended at {hello_end:.2f} s, the greeting reached the callee at {first:.2f} s "
          f"(+{(first - hello_end) * 1000:.0f} ms)")
    assert first > hello_end, f"the bot spoke at {first:.2f} s, over the callee's Hello (ended {hello_end:.2f} s)"
    assert first - hello_end <= 1.5, f"the callee waited {first - hello_end:.2f} s after their Hello"
    assert not gw.find("turn"), "the Hello was answered by the LLM too, not only by the greeting"
    assert gw.wait_exit(20) == 0
    assert not gw.errors()
