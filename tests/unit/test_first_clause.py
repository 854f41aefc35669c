"""The first clause of a held reply goes as soon as the fact is said (answer_check.AnswerGate.peek)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gateway.conversation.answer_check import AnswerGate, FactSentence
from gateway.conversation.clauses import ClauseSplitter
from gateway.conversation.generate import Clause, Generation, Generator
from gateway.conversation.settings import ConversationSettings
from models.base import ChatMessage

HOURS = (FactSentence("Opening hours: Monday to Friday, 8 am to 5 pm.", 1.0),)
QUESTION = "What time do you close on Friday?"


def test_held_words_go_once_the_words_being_generated_give_the_fact() -> None:
    gate = AnswerGate(HOURS, QUESTION, [])
    assert gate.feed("Based on") == []  # no fact yet: held
    assert gate.peek("the facts provided, the closing time for Friday is") == []
    assert gate.peek("the facts provided, the closing time for Friday is 5") == []  # "5" may become "55"
    assert gate.peek("the facts provided, the closing time for Friday is 5 ") == ["Based on"]
    assert gate.feed("the facts provided, the closing time for Friday is 5 pm.") == [
        "the facts provided, the closing time for Friday is 5 pm."]


def test_a_wrong_number_or_a_parroted_answer_is_not_released() -> None:
    gate = AnswerGate(HOURS, QUESTION, [])
    gate.feed("We close")
    assert gate.peek("at 6 pm on ") == []
    history = [ChatMessage("user", "where are you"), ChatMessage("assistant", "We close at 5 pm on weekdays.")]
    parrot = AnswerGate(HOURS, QUESTION, history)
    parrot.feed("We close")
    assert parrot.peek("at 5 pm on weekdays and ") == []  # the same words said to another question ...
    assert parrot.parroted  # ... are found before the clause ends: the fact is said instead, sooner
    assert parrot.finish() == ["Opening hours: Monday to Friday, 8 am to 5 pm."]
    assert AnswerGate(HOURS, QUESTION, []).peek("at 5 pm ") == []  # nothing held: nothing to release


def test_the_splitter_shows_what_is_not_a_piece_yet() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("Based on") == []
    assert splitter.feed(" the") == ["Based on"]
    assert splitter.pending == " the"


class Tokens:
    """An Llm that streams fixed pieces and counts how many were taken."""

    def __init__(self, pieces: Sequence[str]):
        self.pieces = list(pieces)
        self.taken = 0

    def stream_chat(self, messages: Sequence[ChatMessage], **_: object) -> Iterator[str]:
        for piece in self.pieces:
            self.taken += 1
            yield piece

    def warm_up(self, system_prompt: str) -> float:
        return 0.0


class Quiet:
    def info(self, *_: object, **__: object) -> None: ...

    warning = info


def test_the_first_clause_does_not_wait_for_the_end_of_the_sentence_with_the_fact() -> None:
    pieces = ["Based", " on", " the", " facts", " provided", ",", " the", " closing", " time", " for", " Friday",
              " is", " 5", " pm", ".", " Have", " a", " nice", " day", "."]
    llm = Tokens(pieces)
    out = Generation()
    generator = Generator(llm, {}, ConversationSettings(), Quiet(), lambda: 0.0)
    stream = generator.reply([ChatMessage("system", "s"), ChatMessage("user", QUESTION)], QUESTION, None, out,
                             sentences=HOURS)
    first = next(stream)
    assert first == Clause("Based on")
    assert llm.taken == pieces.index(" pm") + 1  # the word after the fact, not the full stop after it
    assert out.pieces_to_clause == llm.taken
    rest = [item.text for item in stream if isinstance(item, Clause)]
    said = " ".join(["Based on", *rest])
    assert said == "Based on the facts provided, the closing time for Friday is 5 pm. Have a nice day."


def test_the_fact_said_instead_of_a_parroted_reply_starts_with_a_short_piece() -> None:
    """The model repeats its earlier answer: the fact is said instead, cut like a streamed reply
    (a short first piece for TTS, then the rest), and nothing of the parroted words is said."""
    address = (FactSentence("12 Harbor Street, next to the ferry terminal.", 1.0),)
    history = [ChatMessage("system", "s"), ChatMessage("user", "What are your opening hours?"),
               ChatMessage("assistant", "Monday to Friday, 8 am to 5 pm.")]
    pieces = ["Monday", " to", " Friday", ",", " 8", " am", " to", " 5", " pm", "."]
    llm = Tokens(pieces)
    generator = Generator(llm, {}, ConversationSettings(), Quiet(), lambda: 0.0)
    out = Generation()
    said = [item.text for item in generator.reply([*history, ChatMessage("user", "Where is your office?")],
                                                  "Where is your office?", None, out, sentences=address)]
    assert llm.taken < len(pieces)  # the repeat was found before the sentence ended: the model was stopped
    assert said[0] == "12 Harbor Street,"  # cut at its first clause boundary
    assert " ".join(said) == "12 Harbor Street, next to the ferry terminal."
    assert out.pieces_to_clause is not None


def test_a_refused_call_on_misheard_words_asks_again_rather_than_repeat_an_answer() -> None:
    """The model opens with a call no tool admits ("Time done, location closed.", a misheard
    question): the retrieved best fact is said instead, unless the caller was just given that very
    fact for another question; then the caller is asked to say it again."""
    from gateway.tools import load_tools

    specs = load_tools([{"transfer": {"targets": {"billing": "sip:2003@pbx.test"}}}]).specs
    parking = "Parking: the Harbour car park is a two minute walk."
    history = [ChatMessage("system", "s"), ChatMessage("user", "Is there parking nearby?"),
               ChatMessage("assistant", parking)]
    call = ['CALL', ' {"tool": "transfer",', ' "arguments": {"target": "billing"}}']
    settings = ConversationSettings()
    for earlier, expected in ((history, settings.not_understood), (history[:1], parking)):
        llm = Tokens(call)
        generator = Generator(llm, specs, settings, Quiet(), lambda: 0.0)
        out = Generation()
        said = [item.text for item in generator.reply([*earlier, ChatMessage("user", "Time done, location closed.")],
                                                      "Time done, location closed.", parking, out)]
        assert said == [expected], said
        assert out.call is None and out.error
