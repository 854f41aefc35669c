"""Prefill while the caller speaks (gateway/conversation/prefill.py) and the turn log's LLM split."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from gateway.conversation.history import approx_tokens, fit_history
from gateway.conversation.prefill import NEXT_MESSAGE_TOKENS, Prefiller, conversation_before_turn
from gateway.conversation.reply import ReplyHandle, TurnTimings
from gateway.conversation.turn_log import TurnLog
from models.base import CancelToken, ChatMessage
from models.llama import StreamStats


@dataclass
class RecordingLlm:
    """A PrefillLlm that records what it was asked to prefill; `gate` holds it until set."""

    gate: threading.Event = field(default_factory=threading.Event)
    asked: list[tuple[list[ChatMessage], str | None]] = field(default_factory=list)

    def stream_chat(self, messages: Sequence[ChatMessage], **_: object) -> Iterator[str]:
        yield "ok"

    def warm_up(self, system_prompt: str) -> float:
        return 0.0

    def prefill(self, messages: Sequence[ChatMessage], *, affinity: str | None = None,
                cancel: CancelToken | None = None) -> int:
        self.asked.append((list(messages), affinity))
        self.gate.wait(10)
        return 7


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append((event, fields))

    warning = info


def talk(turns: int) -> list[ChatMessage]:
    history = [ChatMessage("system", "You are the front desk.")]
    for n in range(turns):
        history += [ChatMessage("user", f"Question number {n} about the opening hours?"),
                    ChatMessage("assistant", f"Answer number {n}: we open at eight.")]
    return history


def test_the_conversation_so_far_is_prefilled_on_the_calls_slot() -> None:
    llm, log = RecordingLlm(), Lines()
    prefiller = Prefiller(llm, 1200, "call-1", log, threading.Event())
    assert prefiller.start(talk(2))
    assert not prefiller.start(talk(3))  # one at a time: the newer one is skipped, never queued
    llm.gate.set()
    assert prefiller._running is not None
    prefiller._running.join(10)
    assert llm.asked == [(talk(2), "call-1")]
    assert log.lines[-1][0] == "llm_prefilled" and log.lines[-1][1]["tokens"] == 7
    assert prefiller.start(talk(3))  # the last one is done: the next goes


def test_an_engine_without_a_cache_of_ours_is_left_alone() -> None:
    class ServerLlm:  # stream_chat and warm_up only, like the OpenAI-compatible engine
        def stream_chat(self, messages: Sequence[ChatMessage], **_: object) -> Iterator[str]:
            yield "ok"

        def warm_up(self, system_prompt: str) -> float:
            return 0.0

    assert not Prefiller(ServerLlm(), 1200, "call-1", Lines(), threading.Event()).start(talk(1))
    assert not Prefiller(None, 1200, "call-1", Lines(), threading.Event()).start(talk(1))


def test_a_long_call_is_cut_as_the_turn_will_cut_it() -> None:
    """With a history over budget the prefill starts with what the turn's prompt will start with:
    the same old exchanges dropped for a message of typical size."""
    history = talk(30)
    before = conversation_before_turn(history, 400)
    message = "Facts:\n- Hours: " + "open " * 85 + "\n\nCaller: when?"
    assert approx_tokens(message) == NEXT_MESSAGE_TOKENS  # a turn of the size the prefill expects
    turn = fit_history([*history, ChatMessage("user", message)], 400, approx_tokens)
    assert len(before) < len(history)
    assert before == turn[:-1]
    assert conversation_before_turn(talk(2), 1200) == talk(2)  # within budget: all of it


def test_the_turn_log_splits_the_wait_for_the_first_clause() -> None:
    log = Lines()
    turn_log = TurnLog(log, lambda *a, **k: None, lambda: 10.0)
    reply = ReplyHandle(3, TurnTimings(speech_end=9.0, speculative=True, first_tts_s=0.0625))
    reply.llm_stats = StreamStats(prompt_tokens=250, cached_tokens=200, prefill_s=0.3, first_gate_wait_s=0.02,
                                  decode_s=0.33, decode_steps=10, pieces_to_clause=4)
    reply.cancel()
    turn_log.add(reply)
    turn_log.flush(lambda _turn: False)
    event, fields = log.lines[-1]
    assert event == "turn"
    assert fields["llm_prompt_tokens"] == 250 and fields["llm_cached_tokens"] == 200
    assert fields["llm_prefill_ms"] == 300.0 and fields["llm_gate_wait_ms"] == 20.0
    assert fields["llm_ms_per_token"] == 33.0 and fields["llm_pieces_to_clause"] == 4
    assert fields["first_tts_ms"] == 62.5
