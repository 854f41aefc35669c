"""A caller the bot cannot make out is asked to say it again (issue 12, "Hearing the words").

Real gateway with the default models (whisper tiny.en, the agent's vocabulary as its prompt), the
Harbor Dental knowledge, reached through Kamailio by baresip. The caller "mumbles": an espeak-ng
sentence played backwards, which sounds like speech and holds no words. Whisper makes fluent
nonsense of it, which the agent's knowledge cannot answer; before the low-confidence rule the
caller heard "I'm sorry, I don't have that information"; now they must hear the repeat request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.conversation.settings import ConversationSettings
from tests.integration.test_conversation_call import GREETING, INSTRUCTIONS, transcribe
from tests.rig.audio import make_speech_wav, read_wav, write_wav
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config

KNOWLEDGE = Path(__file__).resolve().parents[2] / "configs" / "knowledge" / "harbor-dental.md"
MUMBLED = "I would like to book an appointment for my daughter next week."


@pytest.fixture(scope="module")
def stt():
    from models.whisper import WhisperStt

    return WhisperStt()


def test_a_mumbled_turn_gets_the_repeat_request_not_the_unknown_answer(kamailio, gateway_factory, baresip_factory,
                                                                     tmp_wav_dir, stt):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    agents = {"front-desk": {"type": "conversation", "model_timeout_s": PATIENT_MODEL_TIMEOUT_S,
                             "greeting": GREETING, "instructions": INSTRUCTIONS,
                             "knowledge": [str(KNOWLEDGE)]}}
    gw = gateway_factory(gateway_config(accounts=[account], agents=agents))
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")

    # the greeting plays first (~3.5 s), then the mumble, then 15 s for the answer (generous: a busy machine)
    speech, rate = read_wav(make_speech_wav(MUMBLED, tmp_wav_dir / "m.wav", pad_after_s=0.0))
    total = np.zeros(int(24 * rate), dtype=np.float32)
    start = int(4.5 * rate)
    total[start:start + len(speech)] = speech[::-1]
    wav = write_wav(tmp_wav_dir / "mumble.wav", total, rate)

    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=24)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    asked = gw.wait_log("repeat_request", timeout=60)
    assert asked["hearing"] == "doubtful", asked
    caller.wait_call_closed(timeout=60)

    settings = ConversationSettings()
    turns = gw.find("turn")
    bot_lines = [t["bot"] for t in turns if t["caller"]]
    assert bot_lines and bot_lines[0] == settings.repeat_request, turns
    assert settings.unknown_answer not in bot_lines, turns
    _, received_path = caller.recordings()
    received, rate = read_wav(received_path)
    heard = transcribe(stt, received[int(4.5 * rate) + len(speech):], rate).lower()
    assert "again" in heard or "catch" in heard, heard  # the caller hears it, not just the log
    assert not gw.errors()
