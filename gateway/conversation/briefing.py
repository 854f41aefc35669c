"""The one sentence a warm transfer's target hears before the caller is put through.

"I have John Smith on the line about an invoice": written by the LLM from what the caller said,
under a short deadline (it runs while the target's phone rings, so it usually costs the caller
nothing), and checked like any model output that reaches a phone line: one sentence, a few
words, no tool syntax. When the model is late, fails or writes something else, a template says
what is known for sure: the caller's name (or number) and their last request, in their words.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
import structlog

from models.base import ChatMessage, Llm, ModelError

if TYPE_CHECKING:
    from gateway.conversation.actions import CallFacts

BRIEF_DEADLINE_S = 4.0  # the LLM's sentence must be complete by then, else the template is said
_MAX_WORDS = 30
_ASKS_FOR_TRANSFER = re.compile(r"\b(transfer|put me through|connect me|speak (to|with)|talk (to|with))\b", re.I)
# Words a briefing may use that are no fact about the call (everything else must come from the caller).
_FRAME_WORDS = frozenset({
    "have", "line", "caller", "calling", "called", "call", "about", "wants", "would", "like", "needs", "need",
    "regarding", "with", "their", "there", "this", "that", "from", "your", "into", "someone", "speak", "talk",
    "transfer", "transferred", "connect", "connected", "put", "through", "question", "questions", "help", "here",
    "they", "them", "asking", "asks", "asked", "hold", "holding", "please", "thank", "thanks", "colleague"
})
_FIRST_PERSON = frozenset({"i", "me", "my", "mine", "we", "us", "our"})
_SYSTEM = ("You are a phone receptionist handing a caller over to a colleague. Write ONE short sentence "
           "(at most 20 words) telling the colleague who is on the line and what they want, for example: "
           "\"I have John Smith on the line about an invoice.\" Use only facts from the caller's words. "
           "No greeting, no quotes, nothing else.")


def template_briefing(facts: CallFacts, target: str) -> str:
    """What is known for sure, when the LLM's sentence is not there in time."""
    who = facts.caller_name or (f"a caller from {_spoken_number(facts.caller_id)}" if facts.caller_id else "a caller")
    lines = [line.strip() for line in facts.transcript().splitlines() if line.strip()]
    request = next((line for line in reversed(lines)  # the reason, not the "put me through to billing"
                    if not _ASKS_FOR_TRANSFER.search(line) and target.lower() not in line.lower()), None)
    if request is None:
        return f"I have {who} on the line for {target}."
    words = request.rstrip(".?!").split()
    return f"I have {who} on the line, who said: {' '.join(words[:14])}."


def grounded(sentence: str, facts: CallFacts, target: str) -> bool:
    """Every word of the sentence that carries a fact is one the caller said (or their name, the
    target's): a 0.5B model copies the prompt's example ("about an invoice") when the caller said
    nothing of the kind, and the target must not be told a reason the caller never gave."""
    known = f"{facts.transcript()} {facts.caller_name or ''} {target}".lower()
    said = {w[:5] for w in re.findall(r"[a-z0-9]+", known)}
    words = re.findall(r"[a-z0-9]+", sentence.lower())
    return all(w[:5] in said for w in words if len(w) >= 4 and w not in _FRAME_WORDS)


def checked_sentence(text: str) -> str | None:
    """The model's text as one speakable sentence, or None (empty, too long, tool syntax, a question)."""
    line = text.strip().splitlines()[0].strip().strip("\"'") if text.strip() else ""
    match = re.match(r"^(.+?[.!])(\s|$)", line)
    sentence = (match.group(1) if match else line).strip()
    words = sentence.split()
    if not 3 <= len(words) <= _MAX_WORDS or re.search(r"[{}<>\[\]()=]|CALL\b", sentence) or sentence.endswith("?"):
        return None
    if _speaks_as_caller(sentence):
        return None
    return sentence if sentence[-1] in ".!" else sentence + "."


class Briefer:
    """Makes a briefing's audio on its own thread; the result is a `Future` (8 kHz int16)."""

    def __init__(self, llm: Llm, speak: Callable[[str], np.ndarray], facts: CallFacts,
                 log: structlog.typing.FilteringBoundLogger, deadline_s: float = BRIEF_DEADLINE_S):
        self._llm = llm
        self._speak = speak
        self._facts = facts
        self._log = log
        self.deadline_s = deadline_s

    def start(self, target: str, stopped: threading.Event) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        threading.Thread(target=self._make, args=(target, stopped, future), daemon=True, name="briefing").start()
        return future

    def text(self, target: str, stopped: threading.Event) -> tuple[str, str]:
        """(sentence, source): the LLM's if it is in time and well-formed, else the template's."""
        late = threading.Event()
        timer = threading.Timer(self.deadline_s, late.set)
        timer.start()
        cancel = _Either(late, stopped)
        prompt = (f"Caller: {self._facts.caller_name or 'name not given'}. Transferring to: {target}.\n"
                  f"What the caller said:\n{self._facts.transcript() or '(nothing yet)'}")
        text = ""
        stream = self._llm.stream_chat([ChatMessage("system", _SYSTEM), ChatMessage("user", prompt)],
                                       max_tokens=48, temperature=0.2, cancel=cancel)
        try:
            with contextlib.closing(stream):  # the engine's lock is let go as soon as we stop reading
                for piece in stream:
                    text += piece
                    if "\n" in text.strip():
                        break
        except ModelError as exc:
            self._log.warning("warm_transfer_briefing_llm_failed", error=str(exc))
            text = ""
        finally:
            timer.cancel()
        sentence = None if late.is_set() else checked_sentence(text)
        if sentence is not None and grounded(sentence, self._facts, target):
            return sentence, "llm"
        reason = "deadline" if late.is_set() else "unusable" if sentence is None else "ungrounded"
        self._log.info("warm_transfer_briefing_fallback", reason=reason, llm_text=text[:120])
        return template_briefing(self._facts, target), "template"

    def _make(self, target: str, stopped: threading.Event, future: Future[np.ndarray]) -> None:
        try:
            sentence, source = self.text(target, stopped)
            self._log.info("warm_transfer_briefing", text=sentence, source=source)
            future.set_result(self._speak(sentence))
        except Exception as exc:  # the target is then connected without a briefing
            self._log.exception("warm_transfer_briefing_failed")
            future.set_exception(exc)


class _Either:
    """A cancel token set when either event is (the deadline passed, or the call ended)."""

    def __init__(self, *events: threading.Event):
        self._events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


def _speaks_as_caller(sentence: str) -> bool:
    """The caller's own words in the first person ("I'd like a quote"): the target would take them
    for ours. Only "I have <caller> on the line" may say I."""
    words = re.findall(r"[a-z']+", sentence.lower())
    if words[:2] == ["i", "have"] and "on the line" in sentence.lower():
        words = words[2:]
    return any(w in _FIRST_PERSON or w.startswith("i'") for w in words)


def _spoken_number(caller_id: str) -> str:
    digits = re.sub(r"\D", "", caller_id)
    return " ".join(digits) if digits else caller_id
