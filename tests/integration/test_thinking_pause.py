"""A caller who stops to think mid-question, through Kamailio with baresip and the real models.

"Hi, I was wondering" ... 1 s of silence ... "what time do you open?": with turns ended on 400 ms
of silence alone the bot answered the half sentence into the pause (issue 12). With the default
turn policy (`turn_model: smart_turn+text`) the pause is held open and the caller gets one answer,
after the whole question. The caller's audio is made by espeak-ng at test time.
"""

from __future__ import annotations

import numpy as np

from tests.integration.test_conversation_call import conversation_gateway
from tests.rig.audio import active_segments, make_speech_wav, read_wav, write_wav

HEAD, REST = "Hi, I was wondering", "what time do you open?"
START_S = 4.5  # after the greeting (~3.5 s)
THINK_S = 1.0
CALL_S = 26.0


def test_a_question_with_a_thinking_pause_gets_one_answer_after_the_whole_question(
        kamailio, gateway_factory, baresip_factory, tmp_wav_dir):
    head, rate = read_wav(make_speech_wav(HEAD, tmp_wav_dir / "head.wav", pad_after_s=0.0))
    rest, rate2 = read_wav(make_speech_wav(REST, tmp_wav_dir / "rest.wav", pad_after_s=0.0))
    assert rate == rate2
    silence = np.zeros(int(THINK_S * rate), dtype=np.float32)
    spoken = np.concatenate([np.zeros(int(START_S * rate), dtype=np.float32), head, silence, rest])
    audio = np.concatenate([spoken, np.zeros(int(CALL_S * rate) - len(spoken), dtype=np.float32)])
    wav = write_wav(tmp_wav_dir / "caller.wav", audio, rate)
    head_end_s = START_S + len(head) / rate
    rest_end_s = len(spoken) / rate

    gw = conversation_gateway(kamailio, gateway_factory)  # the default turn policy
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=CALL_S)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    caller.wait_call_closed(timeout=90)
    _, received_path = caller.recordings()
    received, rate = read_wav(received_path)
    # the bot's answers: what it sent after the greeting (which starts at once, lasts ~3.5 s)
    answers = [s for s in active_segments(received, rate, threshold_dbfs=-35, min_gap_s=1.5) if s[0] > START_S]
    # nothing into the pause or over the rest of the question (the recording starts with the call,
    # as the caller's file does; a few hundred ms of slack for the call set-up either way)
    assert not [s for s in answers if head_end_s - 0.3 < s[0] < rest_end_s], (answers, head_end_s, rest_end_s)
    assert answers, "no answer to the question"
    turns = [t for t in gw.find("turn") if t.get("bot")]
    assert len(turns) == 1, turns  # one answer, to the whole question
    assert "open" in turns[0]["caller"].lower(), turns[0]
    assert not gw.errors()
