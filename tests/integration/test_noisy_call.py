"""A caller in a noisy office talks to the conversation agent through Kamailio (issue 12).

Office babble (four other espeak-ng voices talking at once, made with espeak-ng and sox at test
time) plays under the caller for the whole call, the greeting included, 15 dB below the caller's
speech. Before the line levels (line_levels.py), babble like this cut the greeting 100 ms in and
then never let a turn end: the bot answered none of the questions. Here every question must get
its answer, and most of the greeting must play. What whisper makes of words in babble is the listening
benchmark's business, not this test's.
"""

from __future__ import annotations

import numpy as np

from tests.integration.test_conversation_call import conversation_gateway
from tests.rig.audio import active_segments, make_speech_wav, read_wav, write_wav

QUESTIONS = ("What time do you open?", "Where is your office?", "How much does a cleaning cost?")
ASK_AT_S = (6.0, 20.0, 34.0)  # each answer has ~10 s (a busy machine answers late)
CALL_S = 48.0
BABBLE = (("en-us+m2", "Is the pharmacy still open today?"), ("en-gb+f1", "I sent the report to accounting."),
          ("en-029+Alex", "We need more paper for the printer."), ("en-us+f5", "The meeting moved to three."))
SNR_DB = 15.0


def _active_rms(x: np.ndarray) -> float:
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    levels = np.sqrt(np.mean(frames ** 2, axis=1))
    return float(np.sqrt(np.mean(levels[levels > 10 ** (-40 / 20)] ** 2)))


def noisy_caller_wav(folder) -> tuple:  # noqa: ANN001 - a Path
    n = int(CALL_S * 8000)
    caller = np.zeros(n)
    ends = []
    for i, (text, at) in enumerate(zip(QUESTIONS, ASK_AT_S, strict=True)):
        speech, _ = read_wav(make_speech_wav(text, folder / f"q{i}.wav", pad_after_s=0.0))
        start = int(at * 8000)
        caller[start:start + len(speech)] += speech
        ends.append(at + len(speech) / 8000)
    babble = np.zeros(n)
    for i, (voice, text) in enumerate(BABBLE):
        said, _ = read_wav(make_speech_wav(text, folder / f"b{i}.wav", voice=voice, pad_after_s=0.3))
        babble += np.roll(np.resize(said, n), i * 2371)
    babble *= _active_rms(caller) / np.sqrt(np.mean(babble ** 2)) * 10 ** (-SNR_DB / 20)
    path = write_wav(folder / "noisy_caller.wav", np.clip(caller + babble, -0.99, 0.99))
    return path, ends


def test_a_call_with_background_babble_gets_every_question_answered(kamailio, gateway_factory, baresip_factory,
                                                                    tmp_wav_dir):
    gw = conversation_gateway(kamailio, gateway_factory)
    wav, ends = noisy_caller_wav(tmp_wav_dir)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=CALL_S)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    caller.wait_call_closed(timeout=CALL_S + 40)
    _, received_path = caller.recordings()
    received, rate = read_wav(received_path)
    segments = active_segments(received, rate, threshold_dbfs=-35)
    assert segments and segments[0][0] < 1.0, f"no greeting at once: {segments}"
    greeting_s = sum(e - s for s, e in segments if s < ASK_AT_S[0])
    assert greeting_s > 2.0, f"the greeting was cut short by the babble: {segments}"
    for question, end, next_ask in zip(QUESTIONS, ends, (*ASK_AT_S[1:], CALL_S), strict=True):
        answered = [s for s, e in segments if end < s < next_ask and e - s > 0.3]
        assert answered, f"no answer to {question!r} between {end:.1f} s and {next_ask:.1f} s: {segments}"
    # No assertion that nothing barged in: this babble (four voices, so single voices stand out of
    # it more than the listening corpus's five) was once confirmed as an interruption at the
    # greeting's last word, and the next question then rightly cut the answer to the babble's words
    # (see docs/benchmarks.md); what this test holds the gateway to is that every question is answered.
    turns = [t for t in gw.find("turn") if t["caller"] and t["bot"]]
    assert len(turns) >= len(QUESTIONS), turns
    assert not gw.errors()
