"""A G.722 call through Kamailio: baresip offers wideband, the gateway takes it, and hears the caller.

baresip (with its g722 module, offering only G.722) calls the gateway's extension with an espeak-ng
question recorded at 16 kHz. The call must negotiate G.722 (the gateway's `call_media` log line),
the gateway's whisper must hear the question (the call record's `turn` entry, written from the
16 kHz utterance), and the bot's answer must reach baresip as wideband audio it can decode.
"""

from __future__ import annotations

import json

from tests.rig.audio import active_segments, make_speech_wav, read_wav
from tests.rig.gateway import gateway_config

INSTRUCTIONS = """You are the receptionist of Harbor Dental, answering the phone. Answer in one short sentence.
Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends.
- Address: 12 Harbor Street, next to the ferry terminal."""
GREETING = "Harbor Dental, how can I help?"


def test_g722_call_is_negotiated_and_the_caller_is_transcribed(kamailio, gateway_factory, baresip_factory,
                                                                tmp_wav_dir, tmp_path):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    agents = {"front-desk": {"type": "conversation", "greeting": GREETING, "instructions": INSTRUCTIONS}}
    config = gateway_config(accounts=[account], agents=agents)
    records = tmp_path / "records"
    config["recording"] = {"directory": str(records)}
    gw = gateway_factory(config)  # rtp.codecs by default: G722 first
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")
    # 20 s: greeting (~2.5 s), the question at 4 s, and room for a slow reply on a busy machine
    wav = make_speech_wav("What time do you open on Monday?", tmp_wav_dir / "q16k.wav", rate=16000,
                          pad_before_s=4.0, total_s=20.0)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=20,
                             audio_codecs="G722/16000/1", modules=("g722.so",),
                             extra_config="ausrc_srate 16000\nauplay_srate 16000")
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    media = gw.wait_log("call_media", timeout=10)
    assert media["codec"] == "G722", media
    caller.wait_call_closed(timeout=60)
    gw.wait_log("call_ended", timeout=30)
    turns = [json.loads(line) for path in records.rglob("*.jsonl") for line in path.read_text().splitlines()]
    turns = [t for t in turns if t.get("kind") == "turn" and t.get("caller")]
    assert turns, "no caller turn in the call record"
    heard = turns[0]["caller"].lower()
    assert "open" in heard and "monday" in heard, heard
    _, received_path = caller.recordings()
    received, rate = read_wav(received_path)
    assert rate == 16000  # baresip decoded what the gateway sent as G.722
    assert active_segments(received, rate, threshold_dbfs=-35), "the bot said nothing the caller heard"
    assert not gw.errors()
