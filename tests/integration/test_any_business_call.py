"""Issue 13 end to end: businesses asked several different questions on one call through Kamailio by
baresip give as many different right answers.

The businesses are the answer benchmark's (`bench/businesses/`, the benchmark's own agent text and
tools, `Business.agent_yaml`): the held-out bakery with its facts in a knowledge file (two
questions), and two businesses of the tune split asked five questions each, one with its facts only
in a knowledge file (the garage) and one with its facts only in `instructions` (the restaurant).
The questions travel as espeak speech over RTP, whisper hears them, retrieval finds the fact, the
model (or the fact said plainly) answers, piper speaks. What is checked is the bot's words as the
`turn` log has them: each has its fact, and no two answers are the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bench.answer_spec import load_business
from tests.rig.audio import make_speech_wav, read_wav, write_wav
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config

pytestmark = pytest.mark.integration

ASK_AT_S = 4.0  # after the greeting
APART_S = 24.0  # between two questions: the answer before has been said, even on a loaded machine
AFTER_LAST_S = 30.0  # for the last answer
# espeak phrasings whisper tiny.en hears right ("How much is a sourdough loaf?" came back "How much in a
# car, no low.": hearing is test_hearing_call's and bench_listening's business, answering is this test's)
BAKERY = (
    ("Where can I park my car?", r"\bbehind\b"),
    ("What time do you open on Sunday?", r"(?<!\d)(8|eight)(?!\d)"),
)
GARAGE = (  # tune split, facts in the knowledge file
    ("What time do you open on Saturday?", r"(?<!\d)(8|eight)(?!\d)"),
    ("Where are you?", r"\bmill road\b|(?<!\d)48(?!\d)"),
    ("Where can I park?", r"\b(six|6)\b|\bin front\b"),  # "Do you have parking?" came back "You have power, King."
    ("Are you open on Sunday?", r"\bclosed\b|\bnot open\b"),
    ("Can I pay by credit card?", r"\bcredit cards?\b"),
)
RESTAURANT = (  # tune split, facts only in `instructions`
    ("Where are you?", r"\bharbou?r square\b"),
    ("Are you open on Monday?", r"\bclosed\b|\bnot open\b"),
    ("Is there parking nearby?", r"\bcar park\b|\bvalidate\b"),
    # "What time does the kitchen close?" lost its first word in two CI runs (heard "Time done, location,
    # closed.", "Time does the kitchen close."): the onset was found on "time", ~240 ms late, cause not
    # found (docs/benchmarks.md, "Late-night stop"). tiny.en hears this one the same with its first
    # 50-200 ms cut off ("Our children welcome.", "Children, welcome.").
    ("Are children welcome?", r"\bkids?\b|(?<!\d)(9|nine)(?!\d)|children are welcome"),
    ("Can I bring my own wine?", r"(?<!\d)(15|fifteen)(?!\d)|\bcorkage\b"),
)


def ask_in_one_call(kamailio: Any, gateway_factory: Any, baresip_factory: Any, wav_dir: Path, agent: dict[str, Any],
                    questions: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """Register `agent` as 2001, have baresip call it and ask `questions` APART_S apart; the `turn` log
    lines with caller words, once the call has ended."""
    import numpy as np

    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    # patient: the first token took 3-7 s in a run beside other tests, and this test is about the answers
    agent = agent | {"model_timeout_s": PATIENT_MODEL_TIMEOUT_S}
    gw = gateway_factory(gateway_config(accounts=[account], agents={"front-desk": agent}))
    gw.wait_log("sip_registered", timeout=60)
    kamailio.wait_registered("2001")

    parts = [read_wav(make_speech_wav(q, wav_dir / f"q{i}.wav", pad_after_s=0.0)) for i, (q, _) in
             enumerate(questions)]
    rate = parts[0][1]
    call_s = ASK_AT_S + APART_S * (len(questions) - 1) + AFTER_LAST_S
    line = np.zeros(int(call_s * rate), dtype=np.float32)
    for i, (speech, _) in enumerate(parts):
        start = int((ASK_AT_S + i * APART_S) * rate)
        line[start : start + len(speech)] = speech
    wav = write_wav(wav_dir / "questions.wav", line, rate)

    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=call_s)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    caller.wait_call_closed(timeout=call_s + 60)
    assert not gw.errors()
    return [t for t in gw.find("turn") if t.get("caller")]


def assert_right_and_different(questions: tuple[tuple[str, str], ...], turns: list[dict[str, Any]]) -> None:
    assert len(turns) >= len(questions), turns
    answers = [str(t.get("bot") or "") for t in turns[: len(questions)]]
    for (question, expected), turn, answer in zip(questions, turns, answers, strict=False):
        assert re.search(expected, answer.lower()), f"{question!r} heard as {turn['caller']!r} got {answer!r}"
    assert len(set(answers)) == len(answers), answers


def test_a_held_out_business_answers_two_questions_with_two_right_answers(kamailio, gateway_factory,
                                                                           baresip_factory, tmp_wav_dir):
    bakery = load_business("bakery")
    assert bakery.split == "held_out"
    agent = bakery.agent_yaml("knowledge") | {"tools": []}  # as the test asked it before the tools came in
    turns = ask_in_one_call(kamailio, gateway_factory, baresip_factory, tmp_wav_dir, agent, BAKERY)
    assert_right_and_different(BAKERY, turns)


@pytest.mark.parametrize(("name", "variant", "questions"), [("garage", "knowledge", GARAGE),
                                                             ("restaurant", "instructions", RESTAURANT)])
def test_five_questions_get_five_different_right_answers(name, variant, questions, kamailio, gateway_factory,
                                                         baresip_factory, tmp_wav_dir):
    """Issue 13's "Must show": facts only in a knowledge file, or only in `instructions`."""
    business = load_business(name)
    assert business.split == "tune"
    agent = business.agent_yaml(variant)
    assert ("knowledge" in agent) is (variant == "knowledge")
    turns = ask_in_one_call(kamailio, gateway_factory, baresip_factory, tmp_wav_dir, agent, questions)
    assert_right_and_different(questions, turns)
