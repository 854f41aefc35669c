"""Generate stage: the LLM's streamed reply, cut into speakable clauses, with its tool call checked.

Input: the prompt messages and what the caller said. Output: an iterator of `Clause` (to
synthesize) and `Phrase` (a fixed line from the phrase cache), plus a `Generation` that holds,
once the iterator is exhausted, the accepted tool call (if any) and what was refused. No audio,
no threads: the agent consumes it on a reply thread, `bench/bench_quality.py` on its own loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.conversation.answer_check import AnswerGate, FactSentence, parrots
from gateway.conversation.clauses import ClauseSplitter
from gateway.conversation.headings import HeadingFilter, fact_headings
from gateway.conversation.planner import unasked_tool_call, ungrounded_arguments, without_invented_number
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.tool_choice import admissible, choose_tool
from gateway.tools import BUILTIN_TOOLS, ToolCall, ToolCallDetector, ToolSpec, parse_tool_call
from models.base import CancelToken, ChatMessage, Llm


@dataclass(frozen=True)
class Clause:
    text: str  # words from the model, to synthesize


@dataclass(frozen=True)
class Phrase:
    text: str  # a fixed line, spoken from the phrase cache (no TTS run)


Speech = Clause | Phrase


@dataclass
class Generation:
    """What came of one stream besides its speech (read once the iterator is exhausted)."""

    call: ToolCall | None = None  # accepted: run it once the reply is released
    rejected: ToolCall | None = None
    error: str | None = None  # a malformed CALL line
    acknowledged: bool = False  # "one moment" already said for the call
    first_token_at: float | None = None
    stats: object | None = None  # the engine's stream statistics, if it keeps any
    fell_back: bool = False  # a follow-up's answer was unusable: the fallback line was said
    fact_said: bool = False  # the model's reply lacked the fact (or parroted): the fact itself was said
    regenerated: bool = False  # the reply parroted an earlier answer and no fact was at hand: asked again
    declined: bool = False  # the reply lacked a fact that only loosely matched the turn: the don't-know line
    chosen: ToolCall | None = None  # the constrained tool step's call (tool_choice.py), taken instead of a reply
    choice_s: float = 0.0  # time the tool step took (before the answer's own first token)
    pieces_to_clause: int | None = None  # model pieces streamed when the first clause could be spoken


class Generator:
    def __init__(self, llm: Llm, specs: dict[str, ToolSpec], settings: ConversationSettings, log: Any,
                 clock: Callable[[], float]):
        self.llm = llm
        self.specs = specs
        self.settings = settings
        self.log = log
        self.clock = clock

    def reply(self, messages: list[ChatMessage], caller_said: str, best_fact: str | None, out: Generation,
              cancel: CancelToken | None = None, affinity: str | None = None,
              sentences: Sequence[FactSentence] = ()) -> Iterator[Speech]:
        """LLM -> clauses as they complete; a tool call at the end is checked into `out.call`.

        The clauses pass an `AnswerGate` (answer_check.py): given the fact `sentences` that answer
        the turn, clauses are held until one carries the fact, and if none does the fact itself is
        said; a reply that repeats an earlier answer to another question is cut and replaced by the
        fact, or, with no fact, generated once more from the history without the bot's answers.

        A turn that asks for something done first takes the constrained tool step (tool_choice.py):
        a call it chooses that the caller's words support is taken without a free reply."""
        started = self.clock()
        chosen = choose_tool(self.llm, messages, self.specs, caller_said, cancel=cancel, affinity=affinity)
        out.choice_s = self.clock() - started
        if chosen is not None:
            refusal = self._refusal(chosen, caller_said)
            self.log.info("tool_chosen", tool=chosen.name, refused=refusal, ms=round(out.choice_s * 1000))
            if refusal is None:
                out.chosen = chosen
                out.first_token_at = self.clock()  # the choice is the model's first output
                out.stats = getattr(self.llm, "thread_stats", None)
                yield from self._accept(chosen, caller_said, False, best_fact, out, messages[:-1])
                return
        if cancel is not None and cancel.is_set():
            return
        gate = AnswerGate(sentences, caller_said, messages[:-1])
        yield from self._gated(messages, caller_said, best_fact, out, cancel, affinity, gate)
        if gate.parroted and not sentences and not (cancel is not None and cancel.is_set()):
            out.regenerated = True
            self.log.info("reply_parroted", regenerate=True)
            questions_only = [m for m in messages if m.role != "assistant"]
            yield from self._gated(questions_only, caller_said, best_fact, out, cancel, affinity,
                                   AnswerGate((), caller_said, ()))
        elif gate.declined:
            out.declined = True
            self.log.info("reply_declined", parroted=gate.parroted)
        elif gate.unheard:
            self.log.info("fact_already_said", parroted=gate.parroted)
        elif gate.replaced:
            out.fact_said = True
            self.log.info("reply_replaced_by_fact", parroted=gate.parroted)

    def _gated(self, messages: list[ChatMessage], caller_said: str, best_fact: str | None, out: Generation,
               cancel: CancelToken | None, affinity: str | None, gate: AnswerGate) -> Iterator[Speech]:
        s = self.settings
        splitter = ClauseSplitter()
        detector = ToolCallDetector(self.specs) if self.specs else None
        labels = HeadingFilter(fact_headings(messages[-1].content))  # "Prices > Bread:" is not said
        said = 0  # items yielded so far
        pieces = 0
        for pieces, piece in enumerate(self._pieces(messages, out, cancel, affinity), start=1):
            if cancel is not None and cancel.is_set():
                return
            speech = labels.feed(detector.feed(piece) if detector is not None else piece)
            if detector is not None and detector.holding and not out.acknowledged and not said \
                    and not speech.strip():
                if not admissible(self.specs, caller_said):
                    # A tool call on words no call could pass (a plain question: the 0.5B model
                    # "looks up" opening hours): the checks would refuse it after the whole JSON,
                    # and "one moment, please" said meanwhile would promise what never comes. Stop
                    # the model now and answer with the fact.
                    out.error = "a tool call on words that ask for none"
                    self.log.warning("tool_call_rejected", error=out.error, early=True)
                    _note_first_clause(out, pieces)
                    yield self._instead_of_call(best_fact, caller_said, messages[:-1])
                    return
                # The model opened with a tool call: say "one moment" now, not after the whole JSON
                # (~25 tokens, 0.7 s) has been generated and parsed.
                out.acknowledged = True
                said += 1
                yield Phrase(s.acknowledgement)
            for clause in [*(c for fed in splitter.feed(speech) for c in gate.feed(fed)), *gate.peek(splitter.pending)]:
                said += 1
                _note_first_clause(out, pieces)
                yield Clause(clause)
            if gate.parroted or gate.gave_up:
                break  # the rest of the stream is not needed (closing it stops the model)
        if cancel is not None and cancel.is_set():
            return
        if detector is not None and not gate.parroted and not gate.gave_up:
            parsed = detector.finish()
            for clause in (c for fed in splitter.feed(labels.feed(parsed.unspoken)) for c in gate.feed(fed)):
                said += 1
                _note_first_clause(out, pieces)
                yield Clause(clause)
            if parsed.call is not None:
                held = [*splitter.feed(labels.flush()), *splitter.flush()]
                for clause in [*gate.flush(), *held]:  # words said with a call go with it
                    said += 1
                    _note_first_clause(out, pieces)
                    yield Clause(clause)
                yield from self._accept(parsed.call, caller_said, said > 0 or bool(parsed.speech.strip()), best_fact,
                                        out, messages[:-1])
                return
            if parsed.error:
                out.error = parsed.error
                self.log.warning("tool_call_rejected", error=parsed.error)
                if not said and not parsed.speech.strip() and not gate.sentences:
                    yield self._instead_of_call(best_fact, caller_said, messages[:-1])  # never silence
                    return
        if not gate.parroted and not gate.gave_up:
            for clause in (c for fed in [*splitter.feed(labels.flush()), *splitter.flush()] for c in gate.feed(fed)):
                _note_first_clause(out, pieces)
                yield Clause(clause)
        for clause in _speakable(gate.finish(), first=out.pieces_to_clause is None):
            _note_first_clause(out, pieces)
            yield Clause(clause)
        if gate.declined:
            yield Phrase(s.unknown_answer)
        elif gate.unheard:
            yield Phrase(s.not_understood)

    def checked_follow_up(self, messages: list[ChatMessage], fallback: str, out: Generation,
                          cancel: CancelToken | None = None) -> Iterator[Speech]:
        """Tell a tool's result. The whole answer is generated before any of it is spoken and kept
        only if it is plain speech that mentions the result (the 0.5B model sometimes said "one
        moment please" again and called the tool a second time); otherwise `fallback` is said.
        The caller has waited for the tool anyway; one more second buys a right answer."""
        text = ""
        for piece in self.llm.stream_chat(messages, max_tokens=self.settings.max_reply_tokens,
                                          temperature=self.settings.temperature, cancel=cancel):
            if out.first_token_at is None:
                out.first_token_at = self.clock()
            text += piece
        if cancel is not None and cancel.is_set():
            return
        parsed = parse_tool_call(text, self.specs)
        facts = re.findall(r"[a-z0-9]{3,}", fallback.split(": ", 1)[-1].lower())
        words = set(re.findall(r"[a-z0-9]{3,}", parsed.speech.lower()))
        if parsed.call is None and parsed.error is None and parsed.speech.strip() and words & set(facts):
            splitter = ClauseSplitter()
            for clause in [*splitter.feed(parsed.speech), *splitter.flush()]:
                yield Clause(clause)
        else:
            self.log.info("follow_up_fallback", model_said=text[:200])
            out.fell_back = True
            yield Clause(fallback)

    def _pieces(self, messages: list[ChatMessage], out: Generation, cancel: CancelToken | None,
                affinity: str | None) -> Iterator[str]:
        """The model's reply, streamed; an empty one is asked again once, then a fixed line.
        (A shared llama.cpp server answered one of two concurrent requests with nothing, right
        after another client had dropped its stream.)"""
        for attempt in range(2):
            got = False
            for piece in self.llm.stream_chat(messages, max_tokens=self.settings.max_reply_tokens,
                                              temperature=self.settings.temperature, cancel=cancel,
                                              affinity=affinity):
                if out.first_token_at is None:
                    out.first_token_at = self.clock()
                    out.stats = getattr(self.llm, "thread_stats", None)
                got = True
                yield piece
            if got or (cancel is not None and cancel.is_set()):
                return
            self.log.warning("llm_empty_reply", attempt=attempt + 1)
        yield self.settings.not_understood

    def _instead_of_call(self, best_fact: str | None, caller_said: str, history: Sequence[ChatMessage]) -> Speech:
        """The model answered a question with a tool call we refused: give the best retrieved fact
        (the 0.5B model often "looks up an order" when asked for the opening hours), or ask again.

        Not a fact the caller was already given for another question: retrieval's best guess on
        misheard words ("Time done, location closed." found the parking line the caller had just
        heard) says nothing new, and the same answer twice tells the caller they were not heard."""
        if best_fact and not parrots(best_fact, caller_said, history):
            return Clause(best_fact)
        if best_fact:
            self.log.info("fact_already_said", fact=best_fact[:80])
        return Phrase(self.settings.not_understood)

    @staticmethod
    def _refusal(call: ToolCall, said: str) -> str | None:
        """Why the caller's words do not support `call` (None: they do)."""
        ungrounded = ungrounded_arguments(call, said, frozenset(BUILTIN_TOOLS))
        if ungrounded is not None:
            return f"argument {ungrounded!r} is not in what the caller said"
        return "the caller did not ask" if unasked_tool_call(call, said) else None

    def _accept(self, call: ToolCall, said: str, spoke: bool, best_fact: str | None,
                out: Generation, history: Sequence[ChatMessage]) -> Iterator[Speech]:
        """Keep a valid call only if the caller's words support it: a small model sometimes
        "transfers" or "hangs up" on a question. Whatever happens, the caller hears something."""
        s = self.settings
        refusal = self._refusal(call, said)
        if refusal is not None:
            self.log.warning("tool_call_rejected", tool=call.name, error=refusal)
            out.rejected = call
            if not spoke or out.acknowledged:
                yield self._instead_of_call(best_fact, said, history)
            return
        call = out.call = without_invented_number(call, said)
        self.log.info("tool_call_accepted", tool=call.name, arguments=call.arguments)
        if call.name == "transfer":
            yield Phrase(s.transfer_notice.format(target=call.arguments["target"]))
        elif call.name == "take_message":
            yield Phrase(s.message_taken)
        elif not spoke and not out.acknowledged and call.name != "hangup":
            yield Phrase(s.acknowledgement)


def _speakable(lines: list[str], first: bool) -> list[str]:
    """`lines` as TTS pieces. When they are the first words of the reply (the fact said instead of a
    reply that lacked it or parroted), they are cut like a streamed reply's first clause: a whole
    sentence took piper 180-250 ms before the caller heard anything, its first two words ~50-100."""
    if not first:
        return lines
    splitter = ClauseSplitter()
    return [piece for line in lines for piece in splitter.feed(line + " ")] + splitter.flush()


def _note_first_clause(out: Generation, pieces: int) -> None:
    """How many model pieces the first spoken clause took (the turn log's `llm_pieces_to_clause`):
    with the answer gate holding a reply until it gives the fact, this, not the first token, is
    what the caller waits for. Also written on the engine's stream statistics when they keep it."""
    if out.pieces_to_clause is not None:
        return
    out.pieces_to_clause = pieces
    if out.stats is not None and hasattr(out.stats, "pieces_to_clause"):
        setattr(out.stats, "pieces_to_clause", pieces)  # noqa: B010 (typed loosely: any engine's stats)
