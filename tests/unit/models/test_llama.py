"""llama-cpp-python engine with the tiny SmolLM2-135M: streaming, cancellation, KV-cache reuse, serialization."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import pytest

from models.base import ChatMessage, LlmError
from models.llama import LlamaCppLlm
from tests.unit.models.conftest import SYSTEM_PROMPT


def convo(user: str, system: str = SYSTEM_PROMPT) -> list[ChatMessage]:
    return [ChatMessage("system", system), ChatMessage("user", user)]


def test_streams_text_pieces(smol: LlamaCppLlm) -> None:
    pieces = list(smol.stream_chat(convo("Say hello."), max_tokens=24, temperature=0.0))
    assert len(pieces) >= 3
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip()
    assert smol.last_stats.completion_pieces == len(pieces) <= 24
    assert "<|im_end|>" not in "".join(pieces)


def test_template_is_the_models_own(smol: LlamaCppLlm) -> None:
    prompt = smol.format_prompt(convo("Hi"))
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_cancel_stops_within_one_token(smol: LlamaCppLlm) -> None:
    cancel = threading.Event()
    got = []
    for piece in smol.stream_chat(convo("Tell me a long story about teeth."), max_tokens=200, cancel=cancel):
        got.append(piece)
        if len(got) == 3:
            cancel.set()  # what the barge-in handler does
    assert len(got) == 3
    assert smol.last_stats.cancelled


def test_cancel_from_another_thread(smol: LlamaCppLlm) -> None:
    cancel = threading.Event()
    times: list[float] = []
    timer: threading.Timer | None = None
    for _ in smol.stream_chat(convo("Count from one to one hundred."), max_tokens=300, temperature=0.0, cancel=cancel):
        times.append(time.perf_counter())
        if timer is None:
            timer = threading.Timer(0.1, cancel.set)
            timer.start()
    assert timer is not None
    timer.join()
    set_at = times[0] + 0.1
    after = [t for t in times if t > set_at + 0.002]
    assert len(after) <= 2, f"{len(after)} pieces after cancel"
    assert len(times) < 100


def test_kv_cache_is_reused_by_the_next_call(smol: LlamaCppLlm) -> None:
    """A system prompt never seen before costs a full prefill once; the next call reuses its KV cache.
    (What that saves in time is a figure for bench/bench_models.py: timed here, it failed on a loaded
    machine, cold 8.9 s against warm 7.9 s.)"""
    system = f"Call {uuid.uuid4()}. " + SYSTEM_PROMPT  # unique first tokens: nothing cached
    prefix = len(smol.system_prefix_tokens(system))
    assert prefix > 200
    list(smol.stream_chat(convo("Where are you?", system), max_tokens=4, temperature=0.0))
    cold = smol.last_stats
    list(smol.stream_chat(convo("When do you open on Saturday?", system), max_tokens=4, temperature=0.0))
    warm = smol.last_stats
    assert cold.cached_tokens < 10
    assert warm.cached_tokens >= prefix
    assert warm.prompt_tokens - warm.cached_tokens < cold.prompt_tokens - cold.cached_tokens  # less to prefill


def test_warm_up_caches_system_prefix(smol: LlamaCppLlm) -> None:
    system = f"Agent {uuid.uuid4()}. " + SYSTEM_PROMPT
    first = smol.warm_up(system)
    again = smol.warm_up(system)
    assert again < first / 5  # already cached: nothing to evaluate
    list(smol.stream_chat(convo("Hello?", system), max_tokens=2, temperature=0.0))
    assert smol.last_stats.cached_tokens >= len(smol.system_prefix_tokens(system))


def test_two_concurrent_streams_are_serialized(smol: LlamaCppLlm) -> None:
    """One slot: the second stream's first piece comes after the first stream's last piece."""
    smol.warm_up(SYSTEM_PROMPT)
    spans: dict[str, tuple[float, float, int]] = {}
    barrier = threading.Barrier(2)

    def run(name: str, question: str) -> None:
        barrier.wait()
        times = [time.perf_counter() for _ in smol.stream_chat(convo(question), max_tokens=20, temperature=0.0)]
        spans[name] = (times[0], times[-1], len(times))

    threads = [threading.Thread(target=run, args=(n, q)) for n, q in [("a", "Where are you?"), ("b", "Price?")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)  # a hang guard, sized for a loaded machine
    (a0, a1, _), (b0, b1, _) = spans["a"], spans["b"]
    assert a1 <= b0 or b1 <= a0, spans


def test_cancel_while_waiting_for_the_slot(smol: LlamaCppLlm) -> None:
    holder = smol.stream_chat(convo("Tell me a story."), max_tokens=50)
    with contextlib.closing(holder):
        next(holder)  # slot now busy until holder is closed
        cancel = threading.Event()
        threading.Timer(0.05, cancel.set).start()
        t = time.perf_counter()
        assert list(smol.stream_chat(convo("Hi"), cancel=cancel)) == []
        assert time.perf_counter() - t < 1.0
    # closing the holder released the slot
    assert list(smol.stream_chat(convo("Hi"), max_tokens=2, temperature=0.0))


def test_prompt_longer_than_context_is_a_clear_error(smol: LlamaCppLlm) -> None:
    with pytest.raises(LlmError, match="context"):
        list(smol.stream_chat(convo("word " * 3000)))


def test_a_grammar_holds_the_reply_to_its_alternatives(smol: LlamaCppLlm) -> None:
    """Whatever the model would say, the reply is one the grammar allows (a closed choice here)."""
    from models.base import ConstrainedLlm

    assert isinstance(smol, ConstrainedLlm)
    grammar = 'root ::= "NONE" | "CALL " ("red" | "blue")\n'
    for question in ("What colour is the sky?", "Tell me a long story about dragons."):
        assert smol.constrained_chat(convo(question), grammar) in ("NONE", "CALL red", "CALL blue")
    free = "".join(smol.stream_chat(convo("What colour is the sky?"), max_tokens=8, temperature=0.0))
    assert free not in ("NONE", "CALL red", "CALL blue")  # the same engine, unconstrained, talks


def test_a_grammar_that_does_not_compile_is_a_clear_error_and_frees_the_slot(smol: LlamaCppLlm) -> None:
    with pytest.raises(LlmError, match="grammar"):
        smol.constrained_chat(convo("Hi"), 'root ::= "unclosed\n')
    assert list(smol.stream_chat(convo("Hi"), max_tokens=2, temperature=0.0))


def _history(system: str) -> list[ChatMessage]:
    return [ChatMessage("system", system), ChatMessage("user", "Where is your office?"),
            ChatMessage("assistant", "At 12 Harbor Street, next to the ferry terminal.")]


def test_prefill_caches_the_conversation_before_the_next_turn(smol: LlamaCppLlm) -> None:
    """What the caller's next turn shares with the call so far is evaluated before it is asked:
    the turn then evaluates only its own message (and the stream reports the split)."""
    system = f"Call {uuid.uuid4()}. " + SYSTEM_PROMPT
    call = str(uuid.uuid4())
    history = _history(system)
    prefix = smol.next_turn_prefix(history)
    assert len(prefix) - 10 < smol.prefill(history, affinity=call) <= len(prefix)  # "<|im_start|>system" was there
    assert smol.prefill(history, affinity=call) == 0  # already there
    list(smol.stream_chat([*history, ChatMessage("user", "Facts: open 8 to 5.\n\nCaller: When do you open?")],
                          max_tokens=3, temperature=0.0, affinity=call))
    stats = smol.last_stats
    assert stats.cached_tokens == len(prefix)
    assert stats.prefill_s > 0 and stats.decode_steps >= 1 and stats.decode_s > 0


def test_prefill_gives_way_and_never_waits(smol: LlamaCppLlm) -> None:
    """A prefill never waits for a busy slot, and a request that waits for its slot stops it
    within one chunk (the request evaluates the rest itself)."""
    call = str(uuid.uuid4())
    holder = smol.stream_chat(convo("Tell me a story."), max_tokens=50, affinity=call)
    with contextlib.closing(holder):
        next(holder)  # the call's slot is busy
        t = time.perf_counter()
        assert smol.prefill(_history(SYSTEM_PROMPT), affinity=call) == 0
        assert time.perf_counter() - t < 1.0
    system = f"Call {uuid.uuid4()}. " + SYSTEM_PROMPT  # ~250 uncached tokens: many chunks
    done: list[int] = []
    prefill = threading.Thread(target=lambda: done.append(smol.prefill(_history(system), affinity=call)))
    prefill.start()
    time.sleep(0.05)
    pieces = list(smol.stream_chat(convo("Hi", system), max_tokens=2, temperature=0.0, affinity=call))
    prefill.join(120)
    assert pieces
    assert done and done[0] < len(smol.next_turn_prefix(_history(system)))
