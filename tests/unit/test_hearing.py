"""Hearing the words (issue 12): the agent's vocabulary for Whisper, the low-confidence verdict,
asking the caller to repeat (once, never in a loop), and Whisper's repeated-phrase collapse."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.conversation.confidence import ConfidenceRule, Hearing, doubted_words, judge
from gateway.conversation.planner import TurnPlan, asks_again
from gateway.conversation.settings import ConversationSettings, fixed_phrases
from gateway.conversation.vocabulary import agent_vocabulary, ranked_terms
from gateway.tools import load_tools
from models.base import Transcript
from models.whisper import collapse_repeats
from tests.unit.conversation_fakes import QUESTIONS, silence_frames, speech_frames
from tests.unit.test_conversation_skills import SETTINGS, phrases, skills

INSTRUCTIONS = """You are the receptionist of Harbor Dental, answering the phone. Keep every answer short.
Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends.
- Address: 12 Harbor Street, next to the ferry terminal.
- Dr. Smith and Dr. Patel are the dentists.
If you do not know something, say so and offer to take a message."""


# -- vocabulary --------------------------------------------------------------------------------


def test_names_and_labels_come_from_the_instructions_not_sentence_openers():
    terms = agent_vocabulary(INSTRUCTIONS).terms
    for term in ("Harbor Dental", "Harbor Street", "Dr. Smith", "Dr. Patel", "Monday", "Friday", "Opening hours"):
        assert term in terms
    for word in ("You", "Keep", "If", "Facts", "Closed", "Address: 12"):
        assert word not in terms


def test_knowledge_headings_and_names_join_the_vocabulary(tmp_path: Path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "prices.md").write_text("# Sourdough Corner\n\n## Birthday cakes\n\n"
                                               "Ask Mrs. Okafor about a Black Forest gateau.\n")
    (tmp_path / "kb" / ".hidden.md").write_text("# Secret Term\n")
    terms = agent_vocabulary("Be brief.", [tmp_path / "kb"]).terms
    assert {"Sourdough Corner", "Birthday cakes", "Mrs. Okafor", "Black Forest"} <= set(terms)
    assert "Secret Term" not in terms


def test_explicit_hotwords_come_first_then_targets_and_tools():
    tools = load_tools([{"transfer": {"targets": {"billing": "sip:1@x", "Dr. Patel": "sip:2@x"}}},
                        {"http": {"name": "order_status", "description": "Look up an order", "method": "GET",
                                  "url": "http://127.0.0.1:9/{order_id}",
                                  "parameters": {"order_id": {"type": "string", "description": "order"}}}}])
    vocab = agent_vocabulary(INSTRUCTIONS, tools=tools, explicit=["sourdough", "Okafor"])
    assert vocab.terms[:4] == ("sourdough", "Okafor", "billing", "Dr. Patel")
    assert "order status" in vocab.terms
    assert vocab.terms.count("Dr. Patel") == 1  # deduplicated, case-insensitively
    assert vocab.prompt is not None and vocab.prompt.startswith("sourdough, Okafor, billing,") \
        and vocab.prompt.endswith(".")


def test_the_term_cap_and_zero_keeps_only_the_explicit_terms():
    assert len(agent_vocabulary(INSTRUCTIONS, max_terms=3).terms) == 3
    assert agent_vocabulary(INSTRUCTIONS, explicit=["Okafor"], max_terms=0).terms == ("Okafor",)
    assert agent_vocabulary("be brief.", max_terms=10).prompt is None


def test_a_shorter_term_inside_a_longer_one_is_dropped():
    terms = ranked_terms(["We are Harbor Dental. Harbor Dental is near Harbor Street."])
    vocab = agent_vocabulary("", explicit=["Harbor", *terms])
    assert "Harbor" not in vocab.terms and "Harbor Dental" in vocab.terms


def test_stt_hotwords_and_vocabulary_are_read_from_yaml(tmp_path: Path):
    def config(extra: str) -> Path:
        path = tmp_path / "c.yaml"
        path.write_text('sip: {listen: "127.0.0.1:5080"}\nagents:\n  desk:\n    type: conversation\n'
                        f'    instructions: "Be brief."\n{extra}')
        return path

    cfg = load_config(config('    stt_hotwords: ["sourdough loaf", Okafor]\n    stt_vocabulary: 0\n'
                             '    repeat_request: "Pardon?"\n'))
    settings = cfg.agents["desk"].conversation
    assert settings.stt_hotwords == ("sourdough loaf", "Okafor") and settings.stt_vocabulary == 0
    assert "Pardon?" in fixed_phrases(cfg.agents["desk"])
    with pytest.raises(ConfigError, match=r"agents\.desk\.stt_hotwords.*list"):
        load_config(config("    stt_hotwords: sourdough\n"))
    with pytest.raises(ConfigError, match=r"agents\.desk\.stt_vocabulary"):
        load_config(config("    stt_vocabulary: -1\n"))


# -- the verdict on a transcript -----------------------------------------------------------------


def heard(text: str, logprob: float = -0.2, no_speech: float = 0.05) -> Transcript:
    return Transcript(text, duration_s=2.0, elapsed_s=0.1, no_speech_prob=no_speech, avg_logprob=logprob)


@pytest.mark.parametrize(("transcript", "verdict"), [
    (heard("What are your opening hours?"), Hearing.CLEAR),
    (heard(""), Hearing.NOTHING),
    (heard("Uh,", -3.0), Hearing.NOTHING),
    (heard("You'll treat all of you.", -1.3), Hearing.DOUBTFUL),  # low log-probability
    (heard("Thank you.", -0.9, no_speech=0.85), Hearing.DOUBTFUL),  # Whisper's favourite words for noise
    (heard("How much do I know that cleaning cart?", -0.8), Hearing.UNSURE),
    (heard("time time time time time time time time time time time time", -0.3), Hearing.DOUBTFUL),  # a loop
    (heard("Yes.", -1.1), Hearing.CLEAR),  # a short answer scores low although right
    (heard("Four two seven one.", -1.2), Hearing.CLEAR),
    (heard("Okay.", -2.3, no_speech=0.93), Hearing.DOUBTFUL),  # but not a cough heard as "Okay."
])
def test_judge(transcript: Transcript, verdict: Hearing):
    assert judge(transcript) is verdict


def test_a_transcript_of_the_prompt_s_own_words_is_doubtful():
    prompt = "Harbor Dental, Dr. Smith, Dr. Patel."
    assert judge(heard("Harbor Dental.", -0.3), prompt) is Hearing.DOUBTFUL
    assert judge(heard("Is Dr. Patel in today?", -0.3), prompt) is Hearing.CLEAR


def test_the_thresholds_are_the_rule_s():
    strict = ConfidenceRule(doubtful_logprob=-0.5, unsure_logprob=-0.3)
    assert judge(heard("Where is your office?", -0.6), rule=strict) is Hearing.DOUBTFUL
    assert judge(heard("Where is your office?", -0.6)) is Hearing.CLEAR


def test_asks_again_on_doubt_and_on_unsure_nonsense_but_never_twice_running():
    unknown, known = TurnPlan(say="I don't know.", unknown=True), TurnPlan(content="Facts: ...")
    phrase = "Sorry, I didn't catch that, could you say it again?"
    assert asks_again(Hearing.DOUBTFUL, None, after_repeat_request=False, repeat_request=phrase)
    assert not asks_again(Hearing.UNSURE, None, after_repeat_request=False, repeat_request=phrase)
    assert asks_again(Hearing.UNSURE, unknown, after_repeat_request=False, repeat_request=phrase)
    assert not asks_again(Hearing.UNSURE, known, after_repeat_request=False, repeat_request=phrase)
    assert not asks_again(Hearing.CLEAR, unknown, after_repeat_request=False, repeat_request=phrase)
    assert not asks_again(Hearing.DOUBTFUL, None, after_repeat_request=True, repeat_request=phrase)
    assert not asks_again(Hearing.DOUBTFUL, None, after_repeat_request=False, repeat_request="")


def words_heard(text: str, *probs: float, logprob: float = -0.3) -> Transcript:
    return Transcript(text, duration_s=2.0, elapsed_s=0.1, avg_logprob=logprob, word_probs=probs)


def test_doubted_words_are_the_unknown_ones_whisper_barely_believed():
    # tune split, CLEAR at -0.3: "filling costs" heard as "feel in cars", both barely believed
    garble = words_heard("Could you tell me how much I feel in cars?",
                         0.40, 0.99, 0.99, 0.99, 0.87, 0.99, 0.94, 0.32, 0.90, 0.28)
    assert doubted_words(garble, ("feel", "cars"))
    # a fair question the business cannot answer: its unknown word heard with confidence
    fair = words_heard("Can I bring my child along?", 0.75, 0.96, 0.96, 0.90, 0.85, 0.21)
    assert not doubted_words(fair, ("child",))
    assert not doubted_words(fair, ())  # no unknown word: nothing to doubt ("along" at 0.21 is known)
    assert not doubted_words(fair, ("kids",))  # none of them in the text
    assert not doubted_words(words_heard("Can I bring my child along?"), ("child",))  # no word probabilities
    assert not doubted_words(words_heard("Can I bring my child?", 0.1, 0.1), ("child",))  # not one per word
    assert doubted_words(fair, ("child",), ConfidenceRule(unknown_word_prob=0.9))


def test_doubted_words_ask_again_only_on_the_don_t_know_path():
    unknown, known = TurnPlan(say="I don't know.", unknown=True), TurnPlan(content="Facts: ...")
    phrase = "Sorry, I didn't catch that, could you say it again?"
    question = "Can I bring my feel in the long?"  # a whole question: unsure alone would not ask
    assert not asks_again(Hearing.CLEAR, unknown, after_repeat_request=False, repeat_request=phrase, text=question)
    assert not asks_again(Hearing.UNSURE, unknown, after_repeat_request=False, repeat_request=phrase, text=question)
    for hearing in (Hearing.CLEAR, Hearing.UNSURE):
        assert asks_again(hearing, unknown, after_repeat_request=False, repeat_request=phrase, text=question,
                          doubted=True)
    assert not asks_again(Hearing.CLEAR, known, after_repeat_request=False, repeat_request=phrase, doubted=True)
    assert not asks_again(Hearing.CLEAR, unknown, after_repeat_request=True, repeat_request=phrase, doubted=True)
    assert not asks_again(Hearing.CLEAR, unknown, after_repeat_request=False, repeat_request="", doubted=True)


# -- the agent: repeat request on a fake clock --------------------------------------------------------


def test_a_doubtful_turn_gets_the_repeat_request_and_the_next_one_an_answer(harness, tmp_path):
    """Question 5 is one the knowledge cannot answer: heard with low confidence the caller is asked
    to say it again, not told "I don't have that information"; heard so again right after, it gets
    the normal answer (no loop), and a later doubtful turn may be asked again."""
    h = harness(settings=SETTINGS, skills=skills(tmp_path), stt={"logprob": {QUESTIONS[5]: -1.5}})
    h.run(silence_frames(2.0))
    for _ in range(3):
        h.run(speech_frames(5, 1.5))
        h.run(silence_frames(5.0))
    said = phrases(h)
    assert said[1:] == [SETTINGS.repeat_request, SETTINGS.unknown_answer, SETTINGS.repeat_request], said
    assert any(event == "repeat_request" for event, _ in h.log.events)


def test_an_unsure_turn_the_agent_can_answer_is_answered(harness, tmp_path):
    h = harness(settings=SETTINGS, skills=skills(tmp_path), stt={"logprob": {QUESTIONS[1]: -0.8,
                                                                              QUESTIONS[5]: -0.8}})
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(5.0))
    assert h.models.llm.prompts  # answered from the knowledge by the model
    h.run(speech_frames(5, 1.5))
    h.run(silence_frames(5.0))
    # unknown to the agent but a well-formed question ("do you sell car insurance?"): heard, and
    # answered as not this business's (a garble that reads as no question is asked again: above)
    assert phrases(h)[-1] == SETTINGS.unknown_answer


def test_a_clear_question_with_a_doubted_unknown_word_is_asked_again(harness, tmp_path):
    """Heard CLEAR, nothing in the knowledge: with every word believed, the don't-know answer; with
    "car" barely believed, the repeat request instead. A known question with a doubted word is
    answered all the same."""
    h = harness(settings=SETTINGS, skills=skills(tmp_path),
                stt={"word_probs": {QUESTIONS[5]: (0.9, 0.9, 0.9, 0.9, 0.9), QUESTIONS[1]: (0.9, 0.1, 0.9, 0.9, 0.9)}})
    h.run(silence_frames(2.0))
    h.run(speech_frames(5, 1.5))
    h.run(silence_frames(5.0))
    assert phrases(h)[-1] == SETTINGS.unknown_answer
    h.models.stt.word_probs[QUESTIONS[5]] = (0.9, 0.9, 0.9, 0.2, 0.9)
    h.run(speech_frames(5, 1.5))
    h.run(silence_frames(5.0))
    assert phrases(h)[-1] == SETTINGS.repeat_request
    assert [f.get("doubted_words") for e, f in h.log.events if e == "repeat_request"] == [True]
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(5.0))
    assert h.models.llm.prompts  # answered from the knowledge by the model


def test_an_empty_repeat_request_turns_it_off(harness, tmp_path):
    settings = replace(SETTINGS, repeat_request="")
    h = harness(settings=settings, skills=skills(tmp_path), stt={"logprob": {QUESTIONS[5]: -1.5}})
    h.run(silence_frames(2.0))
    h.run(speech_frames(5, 1.5))
    h.run(silence_frames(5.0))
    assert phrases(h)[-1] == SETTINGS.unknown_answer


def test_whisper_is_prompted_with_the_agent_s_vocabulary(harness, tmp_path):
    agent_skills = replace(skills(tmp_path), stt_prompt="Harbor Dental, billing.")
    h = harness(settings=SETTINGS, skills=agent_skills)
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(3.0))
    assert h.models.stt.prompts and set(h.models.stt.prompts) == {"Harbor Dental, billing."}


def test_default_settings_ask_politely():
    assert ConversationSettings().repeat_request == "Sorry, I didn't catch that, could you say it again?"


# -- Whisper's repeated phrase --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "once"), [
    ("Where in your office? Where in your office?", "Where in your office?"),
    ("Can I bring my son along? Can I bring my son along? Can I bring my son along?", "Can I bring my son along?"),
    ("In the background, in the background.", "In the background"),
    ("No. No.", "No. No."),  # one word twice: a caller says that
    ("we're in the air, we're in the air and more", "we're in the air, we're in the air and more"),
    ("Hello there", "Hello there"),
])
def test_collapse_repeats(text: str, once: str):
    assert collapse_repeats(text) == once


def test_an_unsure_but_well_formed_question_gets_the_dont_know_answer_not_a_repeat_request():
    """'Do you repair cars?' came back at a log-probability of -0.60 (unsure) and the dental clinic
    has nothing on cars: the caller was heard, the business just does not do it."""
    phrase = "Sorry, could you say it again?"
    unknown = TurnPlan(say="I'm sorry, I don't have that information.", unknown=True)
    assert not asks_again(Hearing.UNSURE, unknown, after_repeat_request=False, repeat_request=phrase,
                          text="Do you repair cars?")
    assert asks_again(Hearing.UNSURE, unknown, after_repeat_request=False, repeat_request=phrase,
                      text="You have power, King.")
