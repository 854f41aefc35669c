"""What to do with a caller's turn, decided without audio or threads.

The agent and the quality benchmark both use these functions, so the benchmark measures the
very prompts, retrieval and tool-call checks a caller meets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.conversation.answer_check import FactSentence, best_sentences, fact_reply
from gateway.conversation.confidence import Hearing
from gateway.conversation.intents import (
    asks_for_transfer,
    callback_number,
    is_information_question,
    message_request,
    numbered_lookup,
    transfer_target,
)
from gateway.conversation.skills import AgentSkills
from gateway.conversation.text_turn import TextVerdict, judge_text
from gateway.tools import ToolCall
from models.base import ChatMessage

BYE = re.compile(r"\b(good\s*-?\s*bye|bye(\s*-?\s*bye)?|hang(ing)? up now|that'?s all|that is all|"
                 r"nothing else|nothing more)\b", re.IGNORECASE)


def is_goodbye(text: str) -> bool:
    """The caller ends the call ("okay thanks, bye", "that is all I needed, thank you")."""
    return bool(BYE.search(text)) and len(text.split()) <= 8


@dataclass(frozen=True)
class TurnPlan:
    """Either a fixed line (`say`, maybe with an `action` to run after it) or the LLM's message."""

    say: str | None = None
    action: ToolCall | None = None
    content: str | None = None  # the user message for the LLM (retrieved facts + the caller's words)
    retrieval_ms: float | None = None
    unknown: bool = False  # nothing in the knowledge answers this information question
    best_fact: str | None = None  # the top retrieved fact as a sentence: said if the model's reply is unusable
    sentences: tuple[FactSentence, ...] = ()  # the fact sentences that best answer the turn (answer_check)
    query: str | None = None  # what was looked up: the turn, or a follow-up with the question before it
    loose: bool = False  # looked up loosely: every topic word is known, no chunk covered enough of them


_FOLLOW_UP = re.compile(r"^\W*(and|also|what about|how about|and what about|what if|but)\b|"
                        r"\b(that|it|this|those|them|one)\b", re.IGNORECASE)
LOOSE_WHEN_ALL_KNOWN = True  # measured on the tune split (docs/benchmarks.md): refusal precision up, refusals kept
FOLLOW_UP_MAX_WORDS = 6  # a turn this short is read with the question before it when it finds nothing alone


def plan_turn(skills: AgentSkills, text: str, *, transfer_notice: str, unknown_answer: str,
              history: Sequence[ChatMessage] = (), message_taken: str = "", acknowledgement: str = "") -> TurnPlan:
    """Plain transfer, message and numbered-lookup requests and questions the knowledge cannot answer
    are settled here, without the model: faster, and a small model cannot get them wrong. A message
    is the caller's own words (what the staff want to read); `message_taken` is said for it, and
    `acknowledgement` before a lookup (no such route when the line is empty, or the agent has no
    such tool).

    `history` (the call's messages so far) lets a follow-up ("and for a cat?", "what about
    Sunday?") be looked up together with the caller's question before it, unless it names
    something the facts never mention ("and do you do nails?" is a new question)."""
    target = transfer_target(text, skills.tools.transfer_targets)
    if target is not None:
        return TurnPlan(say=transfer_notice.format(target=target), action=ToolCall("transfer", {"target": target}))
    if message_taken and "take_message" in skills.tools.specs and message_request(text):
        return TurnPlan(say=message_taken, action=take_message_call(text))
    lookup_call = numbered_lookup(text, skills.tools.specs) if acknowledgement else None
    if lookup_call is not None:
        return TurnPlan(say=acknowledgement, action=lookup_call)
    facts, retrieval_ms = skills.facts_for(text)
    lookup = text
    previous = _previous_caller_turn(history)
    if previous and _FOLLOW_UP.search(text) and not skills.topic_words(text):
        # "and how long does that take?" names no topic of its own: it is about the question before
        # it, even when its intent alone ("how long", "take") matches some other fact.
        combined, more_ms = skills.facts_for(f"{previous} {text}")
        retrieval_ms += more_ms
        if combined:
            facts, lookup = combined, f"{previous} {text}"
    if facts is None and previous and _follows_up(text) and not skills.unknown_words(text):
        facts, more_ms = skills.facts_for(f"{previous} {text}")
        retrieval_ms, lookup = retrieval_ms + more_ms, f"{previous} {text}"
    loose = facts is None and LOOSE_WHEN_ALL_KNOWN and not skills.unknown_words(text)
    if loose:
        # Every topic word is in the facts, only no single chunk holds enough of them ("can I buy
        # a gift voucher at the desk?"): the business does say something; let the model see it.
        facts, more_ms = skills.facts_for(text, loose=True)
        retrieval_ms, lookup = retrieval_ms + more_ms, text
    names_a_target = transfer_target(f"transfer {text}", skills.tools.transfer_targets) is not None
    if facts is None and is_information_question(text) and not names_a_target and not asks_for_action(text):
        return TurnPlan(say=unknown_answer, retrieval_ms=retrieval_ms, unknown=True, query=lookup)
    content = text if not facts else f"Facts:\n{facts}\n\nCaller: {text}"
    asked = skills.as_known(text)
    sentences = tuple(best_sentences(facts, asked if lookup == text else f"{asked} {lookup}"))
    if loose:  # no chunk answers the question well: what the model says instead is not backed by a fact
        sentences = tuple(replace(sentence, loose=True) for sentence in sentences)
    best = fact_reply(sentences[0]) if sentences else first_fact(facts)
    return TurnPlan(content=content, retrieval_ms=retrieval_ms, best_fact=best, sentences=sentences, query=lookup,
                    loose=loose)


def take_message_call(text: str) -> ToolCall:
    """The caller's words as the message, with the callback number they said, if any."""
    number = callback_number(text)
    message = " ".join(text.split())
    return ToolCall("take_message", {"message": message, **({"callback_number": number} if number else {})})


def _previous_caller_turn(history: Sequence[ChatMessage]) -> str | None:
    return next((m.content for m in reversed(history) if m.role == "user"), None)


def _follows_up(text: str) -> bool:
    return bool(_FOLLOW_UP.search(text)) or len(text.split()) <= FOLLOW_UP_MAX_WORDS


def asks_again(hearing: Hearing, plan: TurnPlan | None, *, after_repeat_request: bool, repeat_request: str,
               text: str = "", doubted: bool = False) -> bool:
    """Ask the caller to say it again rather than act on what was heard: a doubtful transcript
    before it is planned (`plan` None); one that would otherwise get "I don't have that
    information" when it was not really heard: unsure and not a well-formed question (nonsense for
    the agent: nothing it knows matches the words heard), or `doubted`: Whisper barely believed a
    word that makes it unanswerable (`confidence.doubted_words`). Never right after asking
    (`after_repeat_request`): a caller who was not understood twice gets the normal answer, so the
    bot cannot loop; never when `repeat_request` is empty (the feature is off)."""
    if not repeat_request or after_repeat_request:
        return False
    if plan is None:
        return hearing is Hearing.DOUBTFUL
    if not plan.unknown or hearing not in (Hearing.CLEAR, Hearing.UNSURE):
        return False
    # An unsure transcript that reads as a whole, well-formed question ("Do you repair cars?" at a
    # log-probability of -0.60) was most likely heard right and is simply not this business's: it
    # gets the don't-know answer, unless its unknown words were the ones Whisper doubted.
    return doubted or (hearing is Hearing.UNSURE and judge_text(text) is not TextVerdict.COMPLETE)


def first_fact(facts: str | None) -> str | None:
    """The first bullet of `format_facts` without its heading path: "We are open Monday to Friday..."."""
    if not facts:
        return None
    line = facts.strip().splitlines()[0].removeprefix("- ")
    heading, sep, fact = line.partition(": ")
    return fact.strip() if sep and ">" in heading else line.strip()


# "tell me", "let me know" ask to be told: a question, not a message for someone
_ACTION = re.compile(r"\b(tell(?!\s+(me|us)\b)|let\s+(?!(me|us)\b)\w+\s+know|ask\s+\w+\s+to|pass\s+(it\s+)?on|check|"
                     r"look\s+(it\s+)?up|call\s+me|message|remind)\b|\d{3,}", re.IGNORECASE)
_MESSAGE = re.compile(r"\b(message|tell(?!\s+(me|us)\b)|let\s+(?!(me|us)\b)\w+\s+know|ask\s+\w+\s+to|"
                      r"pass\s+(it\s+)?on|call\s+me(\s+back)?|get\s+back\s+to\s+me|remind)\b", re.IGNORECASE)


def asks_for_action(text: str) -> bool:
    """The caller asks for something done, not told ("tell Sara I'll be late", "check job 4417"):
    a tool's business, never "I don't have that information"."""
    return bool(_ACTION.search(text))


def unasked_tool_call(call: ToolCall, caller_said: str) -> bool:
    """A transfer, hang-up or message the caller's words do not support: a small model sometimes
    "transfers", "hangs up" or "takes a message" on a plain question. Such calls are never executed."""
    if call.name == "transfer":
        return not asks_for_transfer(caller_said, str(call.arguments.get("target", "")))
    if call.name == "hangup":
        return not BYE.search(caller_said)
    if call.name == "take_message":
        return not _MESSAGE.search(caller_said)
    return False


def ungrounded_arguments(call: ToolCall, caller_said: str, builtin: frozenset[str]) -> str | None:
    """An HTTP tool's number-like argument the caller never said ("order 12345" invented for a
    question about opening hours): the lookup must not run. Returns the offending argument."""
    if call.name in builtin:
        return None
    said = re.sub(r"\D", "", caller_said)
    for key, value in call.arguments.items():
        digits = re.sub(r"\D", "", str(value))
        if digits and digits not in said:
            return key
    if not said and call.arguments:
        return next(iter(call.arguments))  # a lookup with arguments, on words that carry no number
    return None


def without_invented_number(call: ToolCall, caller_said: str) -> ToolCall:
    """Drop a take_message callback number the caller never said (the model invents plausible ones)."""
    if call.name != "take_message" or "callback_number" not in call.arguments:
        return call
    digits = re.sub(r"\D", "", str(call.arguments["callback_number"]))
    if digits and digits in re.sub(r"\D", "", caller_said):
        return call
    return ToolCall(call.name, {k: v for k, v in call.arguments.items() if k != "callback_number"})
