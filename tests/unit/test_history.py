"""Fitting a call's history to the LLM budget: keep the persona and the current turn, drop whole exchanges."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.conversation.history import (
    MESSAGE_OVERHEAD_TOKENS,
    SUMMARY_MAX_TOKENS,
    SUMMARY_PREFIX,
    approx_tokens,
    fit_history,
)
from models.base import ChatMessage

SYSTEM = ChatMessage("system", "You are the receptionist of Acme Plumbing. Be brief and friendly.")


def words(text: str) -> int:
    """A simple exact tokenizer for tests: one token per word."""
    return len(text.split())


def cost(messages: list[ChatMessage], count=words) -> int:
    return sum(count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def call(turns: int) -> list[ChatMessage]:
    """A system prompt, a greeting, ``turns`` exchanges and the caller's current turn."""
    messages = [SYSTEM, ChatMessage("assistant", "Acme Plumbing, how can I help?")]
    for i in range(turns):
        messages.append(ChatMessage("user", f"caller utterance number {i} with a few more words in it"))
        messages.append(ChatMessage("assistant", f"agent answer number {i} which is also several words long"))
    messages.append(ChatMessage("user", "and what time do you open tomorrow"))
    return messages


def test_approx_tokens():
    assert approx_tokens("") == 0
    assert approx_tokens("hello") == 2  # 5 chars / 4 -> 2; 1 word / 0.75 -> 2
    assert approx_tokens("x" * 400) == 100  # character estimate wins for long words
    assert approx_tokens("a b c d e f") == 8  # word estimate wins for short words (6 / 0.75)
    assert approx_tokens("The quick brown fox jumps over the lazy dog.") in range(10, 16)


def test_under_budget_is_unchanged():
    messages = call(3)
    assert fit_history(messages, cost(messages), words) == messages
    assert fit_history(messages, 10_000) == messages  # default estimator


def test_drops_oldest_exchanges_first_and_summarizes():
    messages = call(10)
    budget = cost(messages) // 2
    fitted = fit_history(messages, budget, words)

    assert fitted[0] == SYSTEM
    assert fitted[-1] == messages[-1]
    assert fitted[1].role == "system" and fitted[1].content.startswith(SUMMARY_PREFIX)
    assert cost(fitted) <= budget
    kept = fitted[2:-1]
    assert kept == messages[len(messages) - 1 - len(kept) : -1]  # a suffix of the history: newest kept
    assert kept[0].role == "user"  # whole exchanges only
    assert "caller utterance number 0" in fitted[1].content  # the oldest dropped words are summarized
    assert words(fitted[1].content) <= SUMMARY_MAX_TOKENS


def test_summary_carries_name_and_reason():
    messages = [
        SYSTEM,
        ChatMessage("assistant", "Acme Plumbing, how can I help?"),
        ChatMessage("user", "Hi, this is Maria Lopez. I'm calling about a leak under my kitchen sink."),
        ChatMessage("assistant", "Sorry to hear that. Is water still leaking right now?"),
        ChatMessage("user", "yes it is dripping quite a lot into the cabinet"),
        ChatMessage("assistant", "Please turn off the valve under the sink. Can someone come today?"),
    ]
    for i in range(8):
        messages += [ChatMessage("user", f"filler turn {i} " * 5), ChatMessage("assistant", f"reply {i} " * 5)]
    messages.append(ChatMessage("user", "so when can the plumber be here"))
    fitted = fit_history(messages, 150, approx_tokens)
    summary = fitted[1].content
    assert summary.startswith(SUMMARY_PREFIX)
    assert "Maria Lopez" in summary and "a leak under my kitchen sink" in summary
    assert approx_tokens(summary) <= SUMMARY_MAX_TOKENS
    assert cost(fitted, approx_tokens) <= 150


def test_only_greeting_dropped_still_says_so():
    messages = [SYSTEM, ChatMessage("assistant", "Hello " * 30), ChatMessage("user", "hi")]
    fitted = fit_history(messages, cost([SYSTEM, messages[-1]]) + 20, words)
    assert [m.role for m in fitted] == ["system", "system", "user"]
    assert fitted[1].content.startswith(SUMMARY_PREFIX)


def test_short_utterances_are_not_quoted():
    messages = [SYSTEM]
    for answer in ["yes", "okay", "no thanks"]:
        messages += [ChatMessage("assistant", "question " * 20), ChatMessage("user", answer)]
    messages += [ChatMessage("assistant", "anything else?"), ChatMessage("user", "no that is all")]
    fitted = fit_history(messages, cost([SYSTEM, messages[-1]]) + 30, words)
    assert fitted[1].content.startswith(SUMMARY_PREFIX)
    assert '"yes"' not in fitted[1].content


def test_always_kept_messages_survive_even_over_budget():
    messages = call(5)
    fitted = fit_history(messages, 5, words)
    assert fitted == [SYSTEM, messages[-1]]  # no room for a summary either


def test_without_system_message():
    messages = call(6)[1:]
    fitted = fit_history(messages, cost(messages) // 2, words)
    assert fitted[0].role == "system" and fitted[0].content.startswith(SUMMARY_PREFIX)
    assert fitted[-1] == messages[-1]
    assert fitted[1].role == "user"


def test_trivial_inputs():
    assert fit_history([], 10) == []
    assert fit_history([SYSTEM], 0) == [SYSTEM]


def test_fast_on_a_long_call():
    messages = call(300)
    start = time.perf_counter()
    fitted = fit_history(messages, 500)
    assert time.perf_counter() - start < 0.25
    assert cost(fitted, approx_tokens) <= 500


_utterance = st.text(alphabet="abc xyz", min_size=0, max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    turns=st.lists(st.tuples(_utterance, st.lists(_utterance, min_size=0, max_size=2)), max_size=12),
    greeting=st.booleans(),
    budget=st.integers(min_value=0, max_value=400),
)
def test_invariants(turns: list[tuple[str, list[str]]], greeting: bool, budget: int):
    messages = [SYSTEM] + ([ChatMessage("assistant", "hello")] if greeting else [])
    for user, replies in turns:
        messages.append(ChatMessage("user", user))
        messages += [ChatMessage("assistant", r) for r in replies]
    messages.append(ChatMessage("user", "current turn"))

    fitted = fit_history(messages, budget, approx_tokens)

    assert fitted[0] == SYSTEM and fitted[-1] == messages[-1]
    summarized = len(fitted) > 1 and fitted[1].role == "system"
    body = fitted[2 if summarized else 1 : -1]
    assert body == messages[len(messages) - 1 - len(body) : -1]  # whole newest exchanges, in order
    if body:
        start = len(messages) - 1 - len(body)
        assert body[0].role == "user" or start == 1  # never an answer without its question
    dropped = len(messages) - 2 - len(body)
    if not dropped:
        assert fitted == messages
    elif not summarized:  # only when no summary fits; then the next older exchange did not fit either
        start = len(messages) - 1 - len(body)
        older = max((i for i in range(1, start) if messages[i].role == "user"), default=1)
        assert cost(fitted, approx_tokens) + cost(messages[older:start], approx_tokens) > budget
    if summarized:
        assert fitted[1].content.startswith(SUMMARY_PREFIX)
        assert approx_tokens(fitted[1].content) <= SUMMARY_MAX_TOKENS
    if cost(fitted, approx_tokens) > budget:  # only the always-kept messages may exceed it
        assert body == [] and not summarized
