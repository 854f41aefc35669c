"""A G.722 call through Kamailio: baresip offers wideband, the gateway takes it, and hears the caller.

baresip (with its g722 module, offering only G.722) calls the gateway's extension with an espeak-ng
question recorded at 16 kHz. The call must negotiate G.722 (the gateway's `call_media` log line),
the gateway's whisper must hear the question (the call record's `turn` entry, written from the
16 kHz utterance), and the bot's voice (greeting and answer) must reach baresip as wideband audio:
synthesized by piper at 22.05 kHz and resampled once to 16 kHz, it has real energy at 4-7 kHz,
where a voice that passed through 8 kHz has next to none (docs/benchmarks.md, "The bot's voice in wideband").
"""

from __future__ import annotations

import json

from tests.rig.audio import active_audio, active_segments, band_share, make_speech_wav, read_wav
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config

INSTRUCTIONS = """You are the receptionist of Harbor Dental, answering the phone. Answer in one short sentence.
Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends.
- Address: 12 Harbor Street, next to the ferry terminal."""
GREETING = "Harbor Dental, how can I help?"
# Share of the bot's energy at 4-7 kHz. The piper voice has little up there (~0.1 %, against 84 % below
# 1 kHz), but through 8 kHz it has none: ~0.007 % over G.722 (the codec's band-split leakage).
HIGH_BAND_MIN = 0.0004


def test_g722_call_is_negotiated_and_the_caller_is_transcribed(kamailio, gateway_factory, baresip_factory,
                                                                tmp_wav_dir, tmp_path):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    agents = {"front-desk": {"type": "conversation", "model_timeout_s": PATIENT_MODEL_TIMEOUT_S,
                             "greeting": GREETING, "instructions": INSTRUCTIONS}}
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
    ended = gw.wait_log("call_ended", timeout=30)
    assert ended["rtp_wideband_sent"] > 50, ended  # greeting and answer sent from their own 16 kHz audio
    turns = [json.loads(line) for path in records.rglob("*.jsonl") for line in path.read_text().splitlines()]
    turns = [t for t in turns if t.get("kind") == "turn" and t.get("caller")]
    assert turns, "no caller turn in the call record"
    heard = turns[0]["caller"].lower()
    assert "open" in heard and "monday" in heard, heard
    _, received_path = caller.recordings()
    received, rate = read_wav(received_path)
    assert rate == 16000  # baresip decoded what the gateway sent as G.722
    assert active_segments(received, rate, threshold_dbfs=-35), "the bot said nothing the caller heard"
    voice = active_audio(received, rate, threshold_dbfs=-35)
    high = band_share(voice, rate, 4000, 7000)
    print(f"bot voice at the caller: {len(voice) / rate:.1f} s, {100 * high:.2f} % of its energy at 4-7 kHz")
    assert high > HIGH_BAND_MIN, f"the bot's voice reached the caller narrowband ({100 * high:.3f} % at 4-7 kHz)"
    assert not gw.errors()
