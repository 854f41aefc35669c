"""The constrained tool step (gateway/conversation/tool_choice.py) as the generate stage takes it: which
turns take it, what a chosen call does, and that engines without grammars keep the old path.

The engine here is scripted (the step's decisions are the model's; what is tested is what the agent
does with them); the grammar itself is checked against llama.cpp's sampler in test_tool_parse.py and
the engine's constrained sampling in tests/unit/models/test_llama.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import structlog

from gateway.conversation.generate import Generation, Generator, Phrase
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.tool_choice import CHOICE_NOTE, admissible, asks_for_tool
from gateway.tools import TOOL_CHOICE_NONE, ToolCall, load_tools, tool_choice_grammar
from models.base import ChatMessage, ConstrainedLlm

SPECS = load_tools([{"transfer": {"targets": {"kim": "sip:kim@127.0.0.1"}}}, "hangup", "take_message",
                    {"http": {"name": "repair_status", "description": "Look up a repair by job number",
                              "method": "GET", "url": "https://jobs.example.invalid/jobs/{job_number}",
                              "parameters": {"job_number": {"type": "string"}}}}]).specs
SETTINGS = ConversationSettings(greeting="Hi.", instructions="x")


class ScriptedEngine:
    """Streams `reply`; with `choice` set it is also a ConstrainedLlm whose constrained step returns it."""

    def __init__(self, reply: str, choice: str | None = None) -> None:
        self.reply, self.choice = reply, choice
        self.streamed: list[list[ChatMessage]] = []
        self.constrained: list[tuple[list[ChatMessage], str]] = []
        if choice is not None:
            self.constrained_chat = self._constrained  # the capability is there only when scripted

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: object) -> Iterator[str]:
        self.streamed.append(list(messages))
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            yield ("" if i == 0 else " ") + word

    def warm_up(self, system_prompt: str) -> float:
        return 0.0

    def _constrained(self, messages: Sequence[ChatMessage], grammar: str, **kwargs: object) -> str:
        self.constrained.append((list(messages), grammar))
        assert self.choice is not None
        return self.choice


def run(engine: ScriptedEngine, said: str) -> tuple[list[object], Generation, list[ChatMessage]]:
    messages = [ChatMessage("system", "You answer the phone."), ChatMessage("user", said)]
    out = Generation()
    generator = Generator(engine, SPECS, SETTINGS, structlog.get_logger("test"), lambda: 0.0)  # type: ignore[arg-type]
    return list(generator.reply(messages, said, None, out)), out, messages


@pytest.mark.parametrize("said", ["please let kim know that anna will be late tomorrow",
                                  "could you check on my car the job number is 4417",
                                  "can i talk to the manger", "alright that is everything from me thanks bye"])
def test_requests_take_the_step_and_questions_do_not(said: str) -> None:
    assert asks_for_tool(said)


@pytest.mark.parametrize("said", ["how much is a haircut for a man", "are you open on saturdays",
                                  "where exactly are you", "do i get a loan car while it's in the shop"])
def test_plain_questions_pay_nothing(said: str) -> None:
    assert not asks_for_tool(said)
    engine = ScriptedEngine("We are open from 9.", choice=TOOL_CHOICE_NONE)
    items, out, _ = run(engine, said)
    assert engine.constrained == [] and len(engine.streamed) == 1 and out.choice_s == 0.0


def test_a_chosen_call_is_taken_without_a_free_reply() -> None:
    said = "please let kim know that anna will be late tomorrow"
    choice = f'CALL {{"tool": "take_message", "arguments": {{"message": "{said}"}}}}'
    engine = ScriptedEngine("Sure, I will let her know!", choice=choice)
    items, out, messages = run(engine, said)
    assert out.call == out.chosen == ToolCall("take_message", {"message": said})
    assert engine.streamed == []
    assert [type(i) for i in items] == [Phrase] and items[0].text == SETTINGS.message_taken  # type: ignore[attr-defined]
    (prompt, grammar), = engine.constrained
    assert prompt == [*messages, ChatMessage("user", CHOICE_NOTE)]  # the conversation's prefix, then the note
    assert grammar == tool_choice_grammar(admissible(SPECS, said))


def test_none_goes_on_to_the_answer() -> None:
    engine = ScriptedEngine("I can check that for you, what is the job number?", choice=TOOL_CHOICE_NONE)
    items, out, messages = run(engine, "can you check on my car, my phone number is 555 0173")
    assert out.call is None and out.chosen is None
    assert engine.streamed == [messages] and len(engine.constrained) == 1
    assert "job number" in " ".join(i.text for i in items)  # type: ignore[attr-defined]


def test_a_chosen_call_the_caller_did_not_ask_for_is_refused_and_the_answer_follows() -> None:
    """The step cannot invent a job number (ungrounded) nor hang up on a request: the same checks as a
    call in a free reply, and the caller gets an answer instead."""
    engine = ScriptedEngine("Could you give me the job number?",
                            choice='CALL {"tool": "repair_status", "arguments": {"job_number": "1234"}}')
    items, out, _ = run(engine, "could you check on my car please")
    assert out.call is None and out.chosen is None and len(engine.streamed) == 1
    assert "job number" in " ".join(i.text for i in items)  # type: ignore[attr-defined]


def test_an_engine_without_grammars_keeps_the_free_reply_and_its_call_line() -> None:
    engine = ScriptedEngine('One moment please.\nCALL {"tool": "repair_status", "arguments": {"job_number": "4417"}}')
    assert not isinstance(engine, ConstrainedLlm)
    items, out, _ = run(engine, "could you check on my car the job number is 4417")
    assert out.call == ToolCall("repair_status", {"job_number": "4417"}) and out.chosen is None
    assert len(engine.streamed) == 1


def test_only_tools_the_callers_words_could_support_are_offered():
    """The grammar's alternatives are the calls the generate stage would accept: no hang-up on a
    message, no lookup without a number, a transfer only to a target asked for."""
    assert set(admissible(SPECS, "please let anna know i will be late")) == {"take_message"}
    assert set(admissible(SPECS, "could you check on my car the job number is 4417")) == {"repair_status"}
    assert set(admissible(SPECS, "can you check on my car")) == set()
    assert set(admissible(SPECS, "ok that is all thanks bye")) == {"hangup"}
    narrowed = admissible(SPECS, "tell kim i called")
    assert narrowed["transfer"].parameters["target"]["enum"] == ["kim"] and "take_message" in narrowed
    assert "transfer" not in admissible(SPECS, "tell anna i called")
    assert "transfer" not in admissible(SPECS, "can i pay by bank transfer")  # a verb alone names no one
    assert SPECS["transfer"].parameters["target"]["enum"] == ["kim"]  # the shared spec is not changed
    said = 'please tell bob   "the boiler" is fixed'
    message = admissible(SPECS, said)["take_message"].parameters["message"]
    assert message["enum"] == ['please tell bob "the boiler" is fixed']
    assert "enum" not in SPECS["take_message"].parameters["message"]


def test_with_nothing_admissible_no_step_is_taken():
    engine = ScriptedEngine("I can look that up if you give me the job number.",
                            choice='CALL {"tool": "hangup", "arguments": {}}')
    items, out, _ = run(engine, "can you check on my car")
    assert engine.constrained == [] and out.call is None and len(engine.streamed) == 1
