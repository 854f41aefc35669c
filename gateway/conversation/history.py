"""Keep a call's chat history within the LLM's context budget.

A long call would otherwise grow the prompt until the model's context overflows, and every
extra token also adds prompt-evaluation time before the first reply token, which the caller
hears as silence.  So before each LLM request the history is cut to a token budget:

* the first system message (persona, business facts) and the last message (the caller's
  current turn) are always kept;
* the oldest exchanges go first, a whole exchange at a time (a user turn together with the
  assistant replies to it), so the model never sees an answer without its question;
* what was dropped is replaced by one short system line, "Earlier in this call: ...", built
  from the caller's own words (their name and reason when :mod:`caller_facts` finds them, then
  their utterances, shortened).  It is extractive on purpose: an LLM summary would cost a model
  call (hundreds of milliseconds) on the critical path of every turn.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.conversation.caller_facts import call_reason, caller_name
from models.base import ChatMessage

__all__ = ["SUMMARY_PREFIX", "HistoryShape", "approx_tokens", "fit_history", "shape_history"]

SUMMARY_PREFIX = "Earlier in this call:"
# Chat templates wrap every message in role markers (ChatML: "<|im_start|>user\n...<|im_end|>\n"),
# about four tokens each; counting them keeps a long history of short turns within budget.
MESSAGE_OVERHEAD_TOKENS = 4
SUMMARY_MAX_TOKENS = 40
_UTTERANCE_MAX_WORDS = 10
_UTTERANCE_MIN_WORDS = 3  # "yes", "okay thanks": meaningless without the question they answered


def approx_tokens(text: str) -> int:
    """A cheap token-count estimate for when no tokenizer is at hand.

    English text averages about 4 characters, or 0.75 words, per BPE token.  The larger of the
    two estimates is returned because each one underestimates a different kind of text (digits
    and short words tokenize worse than prose), and overestimating only trims a little early.
    """
    if not text:
        return 0
    return max(math.ceil(len(text) / 4), math.ceil(len(text.split()) / 0.75))


def fit_history(
    messages: Sequence[ChatMessage],
    budget_tokens: int,
    count_tokens: Callable[[str], int] = approx_tokens,
    *,
    summary_max_tokens: int = SUMMARY_MAX_TOKENS,
) -> list[ChatMessage]:
    """``messages`` cut to ``budget_tokens`` (see the module docstring for the rules).

    Each message costs ``count_tokens(content)`` plus :data:`MESSAGE_OVERHEAD_TOKENS`.  The
    result keeps the original order, with the first system message moved to the front and the
    summary line right after it.  The messages that are always kept are returned even if they
    alone exceed the budget (shortening the persona or the caller's words is not this function's
    call); the summary line is then left out.
    """
    if budget_tokens < 0:
        raise ValueError(f"budget_tokens must be >= 0, got {budget_tokens}")
    if len(messages) <= 1:
        return list(messages)

    def cost(items: Sequence[ChatMessage]) -> int:
        return sum(count_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in items)

    if cost(messages) <= budget_tokens:
        return list(messages)

    last = messages[-1]
    system_index = next((i for i, m in enumerate(messages[:-1]) if m.role == "system"), None)
    head = [messages[system_index]] if system_index is not None else []
    middle = [m for i, m in enumerate(messages[:-1]) if i != system_index]
    exchanges = _exchanges(middle)

    fixed = cost(head) + cost([last])
    costs = [cost(x) for x in exchanges]
    remaining = sum(costs)
    dropped = _Dropped()
    for n, exchange in enumerate(exchanges, start=1):  # drop the n oldest exchanges
        remaining -= costs[n - 1]
        dropped.add(exchange)
        if fixed + remaining + MESSAGE_OVERHEAD_TOKENS > budget_tokens:
            continue  # cannot fit yet whatever the summary says: do not build one
        summary = ChatMessage("system", dropped.summary(count_tokens, summary_max_tokens))
        if fixed + cost([summary]) + remaining <= budget_tokens:
            return head + [summary] + [m for x in exchanges[n:] for m in x] + [last]
    # Not even the summary fits next to the messages always kept: keep whatever newest exchanges
    # still fit without one (usually none).
    keep, total = len(exchanges), fixed
    while keep > 0 and total + costs[keep - 1] <= budget_tokens:
        keep -= 1
        total += costs[keep]
    return head + [m for x in exchanges[keep:] for m in x] + [last]


def _exchanges(messages: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """Group turns into units that are dropped together: a user turn and everything up to the next.

    Messages before the first user turn (the bot's greeting) form a unit of their own.
    """
    units: list[list[ChatMessage]] = []
    for m in messages:
        if m.role == "user" or not units:
            units.append([m])
        else:
            units[-1].append(m)
    return units


def _shorten(text: str) -> str | None:
    words = text.split()
    if len(words) < _UTTERANCE_MIN_WORDS:
        return None
    short = " ".join(words[:_UTTERANCE_MAX_WORDS])
    return short + "..." if len(words) > _UTTERANCE_MAX_WORDS else short


@dataclass
class _Dropped:
    """What the dropped turns said, accumulated as turns are dropped so each is read only once."""

    messages: int = 0
    name: str | None = None
    reason: str | None = None
    quotes: list[str] = field(default_factory=list)

    def add(self, exchange: Sequence[ChatMessage]) -> None:
        self.messages += len(exchange)
        for m in exchange:
            if m.role != "user":
                continue
            self.name = self.name or caller_name(m.content)
            self.reason = self.reason or call_reason(m.content)
            if short := _shorten(m.content):
                self.quotes.append(f'"{short}"')

    def summary(self, count_tokens: Callable[[str], int], max_tokens: int) -> str:
        """One line from the caller's words, at most ``max_tokens``.

        Facts first (name, reason: what the agent most needs to keep), then the caller's
        utterances oldest first (the opening usually says what the call is about) until the
        budget is spent.  Answers to questions the model no longer sees are still context, so
        only very short utterances ("yes", "okay thanks") are skipped.
        """

        def render(items: Sequence[str]) -> str:
            return f"{SUMMARY_PREFIX} {'; '.join(items)}."

        parts: list[str] = []
        if self.name:
            parts.append(f"the caller's name is {self.name}")
        if self.reason:
            parts.append(f"they called about: {self.reason}")
        # Greedy, oldest first, stopping at the first quote that does not fit: the work per call is
        # bounded by what fits in the line, not by how long the call has been.
        for i, quote in enumerate(self.quotes):
            candidate = [*parts, ("the caller said " if i == 0 else "") + quote]
            if parts and count_tokens(render(candidate)) > max_tokens:
                break
            parts = candidate
        if not parts:
            parts.append(f"{self.messages} earlier message(s) omitted")
        while len(parts) > 1 and count_tokens(render(parts)) > max_tokens:
            parts.pop()  # the facts alone are too long: the reason goes, the name stays
        text = render(parts)
        if count_tokens(text) > max_tokens:  # one long part: cut words until it fits
            words = text.split()
            while len(words) > 4 and count_tokens(" ".join(words) + "...") > max_tokens:
                words.pop()
            text = " ".join(words) + "..."
        return text


class HistoryShape(enum.Enum):
    """What of the bot's earlier answers the model sees (the 0.5B model copies its last answer).

    Only FULL is used by the agent today; the others are there to be measured with
    ``bench/bench_answers.py --history-shape`` (docs/benchmarks.md) before one is made the default.
    """

    FULL = "full"  # every answer as it was said
    QUESTIONS = "questions"  # the caller's turns only: nothing to copy, but no "what did you just say?"
    CLIPPED = "clipped"  # each answer cut to its first few words: the thread stays, the facts do not


CLIPPED_WORDS = 6


def shape_history(messages: Sequence[ChatMessage], shape: HistoryShape) -> list[ChatMessage]:
    """`messages` with the bot's answers kept, dropped or clipped (the last message is never touched)."""
    if shape is HistoryShape.FULL or not messages:
        return list(messages)
    shaped: list[ChatMessage] = []
    for message in messages[:-1]:
        if message.role != "assistant":
            shaped.append(message)
        elif shape is HistoryShape.CLIPPED:
            words = message.content.split()
            clipped = " ".join(words[:CLIPPED_WORDS]) + (" ..." if len(words) > CLIPPED_WORDS else "")
            shaped.append(ChatMessage("assistant", clipped))
    return [*shaped, messages[-1]]
