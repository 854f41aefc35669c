"""Local LLM through llama-cpp-python, streaming tokens and reusing the system prompt's KV cache.

Latency is dominated by prompt evaluation, not generation: on 2 cores the Qwen2.5 0.5B
model evaluates a ~240-token system prompt in ~1.3-2 s, but once those tokens sit in the
KV cache the first answer token comes after ~0.09 s (then ~30 tokens/s).  So this engine:

* keeps one long-lived ``Llama`` per *slot* (``LlamaConfig.instances``, default 1) and
  never resets it between calls: ``Llama.generate`` keeps the KV cache of the longest
  common token prefix between the previous and the new prompt and evaluates only the rest;
* renders the model's own chat template (the GGUF's ``tokenizer.chat_template``, with
  llama-cpp-python's ``Jinja2ChatFormatter``, as ``create_chat_completion`` would) and
  tokenizes it *itself*, then calls ``create_completion`` with the token list.  Having the
  tokens before taking a slot lets :meth:`_acquire` give a request the free slot whose
  cache shares the longest prefix with it (a call keeps "its" slot between turns);
* :meth:`warm_up` evaluates exactly the token prefix that every conversation with that
  system prompt shares (found by rendering two conversations that differ only after it),
  on every slot, so the first caller does not pay the 2 s.

Why not llama-cpp-python's ``LlamaRAMCache`` (``Llama.set_cache``): its ``save_state``
copies ``Llama._scores``, an ``n_batch x n_vocab`` float32 array: 512 x 151,936 x 4 bytes =
311 MB for Qwen, on every completion.  Plain prefix reuse costs nothing.

Serialization: a ``Llama`` has one KV cache and is not thread-safe, so each slot is used
by one stream at a time (a busy flag per slot under one condition variable), from the
moment its first token is requested until the iterator is exhausted, closed or cancelled.
With one slot, a second concurrent call waits for the first answer to finish (measured:
its first token arrives after the first stream's last one), then pays only its own new
tokens if it shares the system prompt.  Always close the iterator (``contextlib.closing``,
or let it run out): an abandoned but referenced generator keeps the slot busy.  ``cancel``
is also checked while waiting for a slot.  More slots give real concurrency: with the process's
:class:`models.gate.ComputeGate` two streams interleave token by token (measured: second
stream's first token after ~0.3 s instead of ~1.2 s), at ~590 MB more RSS per slot for
Qwen 0.5B at n_ctx 2048 (measured; the weights are not shared between contexts).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import structlog

from models.base import CancelToken, ChatMessage, LlmError, is_cancelled
from models.gate import ComputeGate, Priority, gated
from models.pinned import PinnedThread
from models.registry import resolve_llm

__all__ = ["LlamaConfig", "LlamaCppLlm", "StreamStats"]

_GRAMMARS_KEPT = 32  # compiled grammars remembered (one per agent's tool set, in practice)

log = structlog.get_logger("models")

_SLOT_WAIT_POLL_S = 0.02  # how often a waiting request re-checks its cancel token
_AFFINITY_WAIT_S = 0.3  # longest wait for a call's own busy slot
_AFFINITY_KEPT = 256  # calls remembered
# Tokens evaluated per gate hold by `prefill`: ~5-6 ms a token on 2 cores, so a transcript or a
# sentence that arrives meanwhile waits at most ~0.1 s, and a reply that wants the slot at most that.
_PREFILL_CHUNK = 16


@dataclass(frozen=True, slots=True)
class LlamaConfig:
    """Settings for :class:`LlamaCppLlm`."""

    model_path: str | None = None  # None: default Qwen2.5-Coder-0.5B Q4_K_M assembled by models.registry
    n_ctx: int = 2048
    n_threads: int = 2
    n_threads_batch: int | None = None  # prompt evaluation threads; None = n_threads
    n_batch: int = 512
    instances: int = 1
    seed: int = 0
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.0
    cache_dir: str | None = None


@dataclass(slots=True)
class StreamStats:
    """What the last :meth:`LlamaCppLlm.stream_chat` did (for logs, tests and the bench)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens found in the slot's KV cache (not re-evaluated)
    completion_pieces: int = 0
    wait_s: float = 0.0  # time spent waiting for a free slot
    ttft_s: float = 0.0  # from the call to the first piece, including wait_s
    total_s: float = 0.0
    prefill_s: float = 0.0  # the first step (evaluating the uncached prompt tokens + one token), gate wait excluded
    gate_wait_s: float = 0.0  # time the steps waited for the compute gate (whisper or piper held it)
    first_gate_wait_s: float = 0.0  # of which before the first step: on the way to the first token
    decode_s: float = 0.0  # the later steps (one token each), gate wait excluded
    decode_steps: int = 0
    pieces_to_clause: int | None = None  # pieces generated when the first speakable clause was cut (generate.py)
    slot: int = -1
    cancelled: bool = False


def _count_step(stats: StreamStats, first: bool, waited: float, ran: float) -> None:
    """Add one gated step to the stream's figures (the turn log's prefill / per-token split)."""
    stats.gate_wait_s += waited
    if first:
        stats.first_gate_wait_s = waited
        stats.prefill_s = ran
    else:
        stats.decode_s += ran
        stats.decode_steps += 1


@dataclass(eq=False)
class _Slot:
    index: int
    llama: Any  # llama_cpp.Llama (typed loosely: llama_cpp ships no type information for mypy)
    busy: bool = False

    def cached_prefix(self, tokens: Sequence[int]) -> int:
        n = int(self.llama.n_tokens)
        cached = self.llama.input_ids[:n]
        limit = min(n, len(tokens))
        i = 0
        while i < limit and int(cached[i]) == tokens[i]:
            i += 1
        return i


@dataclass(eq=False)
class LlamaCppLlm:
    """:class:`models.base.Llm` over llama-cpp-python (GGUF models, CPU)."""

    config: LlamaConfig = field(default_factory=LlamaConfig)
    gate: ComputeGate | None = None
    model_path: Path = field(init=False)
    last_stats: StreamStats = field(init=False, default_factory=StreamStats)
    _local: threading.local = field(init=False, default_factory=threading.local, repr=False)
    load_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        from llama_cpp import Llama  # heavy import, only when a local LLM is actually used
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        cfg = self.config
        if cfg.instances < 1:
            raise ValueError("instances must be >= 1")
        cache = Path(cfg.cache_dir) if cfg.cache_dir else None
        self.model_path = resolve_llm(cfg.model_path, cache_dir=cache)
        t0 = time.perf_counter()
        self._slots = [
            _Slot(
                i,
                Llama(
                    model_path=str(self.model_path),
                    n_ctx=cfg.n_ctx,
                    n_threads=cfg.n_threads,
                    n_threads_batch=cfg.n_threads_batch or cfg.n_threads,
                    n_batch=cfg.n_batch,
                    seed=cfg.seed,
                    verbose=False,
                ),
            )
            for i in range(cfg.instances)
        ]
        self.load_s = time.perf_counter() - t0
        llama = self._slots[0].llama
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise LlmError(f"{self.model_path} has no tokenizer.chat_template; cannot format chat messages")
        eos_id = llama.token_eos()
        bos_id = llama.token_bos()
        self._eos_text = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos_text = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=self._eos_text, bos_token=bos_text)
        self._cond = threading.Condition()
        self.n_ctx = cfg.n_ctx
        self._pinned = PinnedThread("llama")  # every llama.cpp compute call runs there (see models/pinned.py)
        self._affinity: OrderedDict[str, _Slot] = OrderedDict()  # call id -> the slot holding its history
        self._grammars: OrderedDict[str, Any] = OrderedDict()  # GBNF text -> checked LlamaGrammar
        self._wanted = 0  # requests waiting in `_acquire` (under self._cond): a prefill stops for them

    # ------------------------------------------------------------------ prompt

    def format_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The model's own chat template applied to ``messages`` plus the assistant generation prompt."""
        return str(self._formatter(messages=cast(Any, [m.as_dict() for m in messages])).prompt)

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of :meth:`format_prompt` (special tokens parsed, no extra BOS: the template has it)."""
        text = self.format_prompt(messages)
        return list(self._slots[0].llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def system_prefix_tokens(self, system_prompt: str) -> list[int]:
        """Tokens every conversation starting with ``system_prompt`` shares (what :meth:`warm_up` caches)."""
        return self.next_turn_prefix([ChatMessage("system", system_prompt)])

    def next_turn_prefix(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Tokens every prompt ``[*messages, <the next user message>]`` starts with: the conversation so
        far and the next message's opening role marker (two renderings that differ only in it)."""
        a = self.tokenize_chat([*messages, ChatMessage("user", "a")])
        b = self.tokenize_chat([*messages, ChatMessage("user", "b")])
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return a[:n]

    # ------------------------------------------------------------------ slots

    def _acquire(self, tokens: Sequence[int], cancel: CancelToken | None, affinity: str | None = None) -> _Slot | None:
        """Take the free slot with the longest cached prefix of ``tokens``; None if cancelled while waiting.

        ``affinity`` (a call's id) keeps a conversation on one slot: its KV cache holds that call's
        history. When that slot is still busy (the call's speculative reply being cancelled, which
        takes at most one token) it is worth waiting for: another slot would re-evaluate the whole
        history, measured at 1.1-1.6 s instead of ~0.15 s.
        """
        own = self._affinity.get(affinity) if affinity is not None else None
        patience = time.monotonic() + _AFFINITY_WAIT_S
        with self._cond:
            self._wanted += 1  # a prefill holding a slot gives way (see `prefill`)
            try:
                return self._wait_for_slot(tokens, cancel, affinity, own, patience)
            finally:
                self._wanted -= 1

    def _wait_for_slot(self, tokens: Sequence[int], cancel: CancelToken | None, affinity: str | None,
                       own: _Slot | None, patience: float) -> _Slot | None:
        """`_acquire`'s wait, under ``self._cond``."""
        while True:
            if own is not None and own.busy and time.monotonic() < patience and not is_cancelled(cancel):
                self._cond.wait(0.005)
                continue
            free = [s for s in self._slots if not s.busy]
            if free:
                return self._claim(own if own is not None and not own.busy else self._closest(free, tokens), affinity)
            if is_cancelled(cancel):
                return None
            self._cond.wait(_SLOT_WAIT_POLL_S if cancel is not None else None)

    def _take_idle(self, tokens: Sequence[int], affinity: str | None) -> _Slot | None:
        """The call's own slot if it is free (or, for a call with none yet, the free slot sharing the
        most of ``tokens``); None at once when that is busy: a prefill never waits."""
        with self._cond:
            own = self._affinity.get(affinity) if affinity is not None else None
            if own is not None:
                return None if own.busy else self._claim(own, affinity)
            free = [s for s in self._slots if not s.busy]
            return self._claim(self._closest(free, tokens), affinity) if free else None

    @staticmethod
    def _closest(free: list[_Slot], tokens: Sequence[int]) -> _Slot:
        """The free slot whose KV cache shares the most of ``tokens`` (the lowest index on a tie)."""
        return max(free, key=lambda s: (s.cached_prefix(tokens), -s.index))

    def _claim(self, slot: _Slot, affinity: str | None) -> _Slot:
        """Mark ``slot`` busy and remember it as the call's (under ``self._cond``)."""
        slot.busy = True
        if affinity is not None:
            self._affinity[affinity] = slot
            self._affinity.move_to_end(affinity)
            while len(self._affinity) > _AFFINITY_KEPT:
                self._affinity.popitem(last=False)
        return slot

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            slot.busy = False
            self._cond.notify()

    # ------------------------------------------------------------------ public

    def warm_up(self, system_prompt: str) -> float:
        """Evaluate the shared system-prompt prefix on every slot; return seconds spent.

        A slot whose cache already holds the prefix costs nothing, so calling this again (e.g.
        on every new call) is cheap.  The first run also pages the mmap'ed weights in, which on a
        cold page cache is most of the "first call is slow" effect.
        """
        prefix = self.system_prefix_tokens(system_prompt)
        t0 = time.perf_counter()
        for slot in list(self._slots):
            with self._cond:
                while slot.busy:
                    self._cond.wait()
                slot.busy = True
            try:
                have = slot.cached_prefix(prefix)
                if have < len(prefix):
                    with gated(self.gate, Priority.LLM):
                        slot.llama.n_tokens = have
                        # eval() first drops KV cells from n_tokens on
                        self._pinned.call(slot.llama.eval, prefix[have:])
            finally:
                self._release(slot)
        return time.perf_counter() - t0

    def prefill(self, messages: Sequence[ChatMessage], *, affinity: str | None = None,
                cancel: CancelToken | None = None) -> int:
        """:class:`models.base.PrefillLlm`: evaluate the call's conversation so far on its slot.

        Called while the caller speaks (gateway/conversation/prefill.py): the turn's prompt is this
        conversation plus the new message, and its first token otherwise waited for the whole
        uncached part (the previous question and answer too) at ~5-6 ms a token. Evaluated in small
        gated chunks; stops at once when a request waits for a slot (that request evaluates the rest
        itself: nothing is lost but the chunk under way) or ``cancel`` is set, and does nothing when
        the call's slot is busy. Returns the tokens evaluated."""
        tokens = self.next_turn_prefix(messages)
        if len(tokens) + 8 > self.n_ctx:
            return 0
        slot = self._take_idle(tokens, affinity)
        if slot is None:
            return 0
        done = 0
        try:
            have = slot.cached_prefix(tokens)
            while have < len(tokens) and not self._wanted and not is_cancelled(cancel):
                chunk = tokens[have:have + _PREFILL_CHUNK]
                with gated(self.gate, Priority.LLM):
                    if self._wanted or is_cancelled(cancel):
                        break
                    slot.llama.n_tokens = have
                    # eval() first drops KV cells from n_tokens on
                    self._pinned.call(slot.llama.eval, chunk)
                have += len(chunk)
                done += len(chunk)
        except Exception as e:  # llama_cpp raises RuntimeError/ValueError on decode failures
            raise LlmError(f"llama.cpp prefill failed: {e}") from e
        finally:
            self._release(slot)
        return done

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: Sequence[str] = (),
        cancel: CancelToken | None = None,
        affinity: str | None = None,
        grammar: str | None = None,
    ) -> Generator[str, None, None]:
        """Yield the answer's text pieces (about one token each) as they are generated.

        Stops within one token after ``cancel`` is set (the token being computed when it is
        set is discarded).  Raises :class:`LlmError` if the prompt does not fit the context,
        or if ``grammar`` (GBNF, root rule ``root``) does not compile.
        """
        t0 = time.perf_counter()
        tokens = self.tokenize_chat(messages)
        room = self.n_ctx - len(tokens)
        if room < 8:
            raise LlmError(
                f"prompt is {len(tokens)} tokens, context is {self.n_ctx}: drop old turns before calling the LLM"
            )
        max_tokens = min(max_tokens, room)
        stats = StreamStats(prompt_tokens=len(tokens))
        self.last_stats = self._local.stats = stats
        slot = self._acquire(tokens, cancel, affinity)
        stats.wait_s = time.perf_counter() - t0
        if slot is None:
            stats.cancelled = True
            return
        stats.slot = slot.index
        stats.cached_tokens = slot.cached_prefix(tokens)
        stream: Any = None  # llama_cpp's completion generator
        try:
            constraint = self._grammar(grammar) if grammar is not None else None
            if is_cancelled(cancel):
                stats.cancelled = True
                return
            stream = iter(
                slot.llama.create_completion(
                    tokens,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    top_p=self.config.top_p,
                    top_k=self.config.top_k,
                    repeat_penalty=self.config.repeat_penalty,
                    stop=[*stop, self._eos_text] if self._eos_text else list(stop),
                    stream=True,
                    grammar=constraint,
                )
            )
            first = True
            while True:
                # One token per gate hold (the first one includes evaluating the new prompt tokens).
                asked = time.perf_counter()
                with gated(self.gate, Priority.LLM):
                    entered = time.perf_counter()
                    chunk = self._pinned.call(next, stream, None)
                _count_step(stats, first, entered - asked, time.perf_counter() - entered)
                first = False
                if chunk is None:
                    break
                if is_cancelled(cancel):
                    stats.cancelled = True
                    break
                text = chunk["choices"][0]["text"]
                if not text:
                    continue
                if stats.completion_pieces == 0:
                    stats.ttft_s = time.perf_counter() - t0
                stats.completion_pieces += 1
                yield text
                if is_cancelled(cancel):
                    stats.cancelled = True
                    break
        except LlmError:
            raise
        except Exception as e:  # llama_cpp raises RuntimeError/ValueError on decode failures
            raise LlmError(f"llama.cpp generation failed: {e}") from e
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    self._pinned.call(stream.close)
            stats.total_s = time.perf_counter() - t0
            self._release(slot)

    def constrained_chat(
        self,
        messages: Sequence[ChatMessage],
        grammar: str,
        *,
        max_tokens: int = 64,
        cancel: CancelToken | None = None,
        affinity: str | None = None,
    ) -> str:
        """:class:`models.base.ConstrainedLlm`: the greedy reply the grammar allows, in one piece.

        Same slot, cache and gate as :meth:`stream_chat` (a call's constrained step and its answer
        share the KV cache of the conversation so far)."""
        with contextlib.closing(self.stream_chat(messages, max_tokens=max_tokens, temperature=0.0, cancel=cancel,
                                                 affinity=affinity, grammar=grammar)) as pieces:
            return "".join(pieces)

    def _grammar(self, text: str) -> Any:
        """``LlamaGrammar`` for ``text``, checked once and kept by its text.

        llama-cpp-python hands the text to llama.cpp's sampler as is, and a grammar that does not
        parse gives a null sampler there (a crash, not an error), so it is compiled here first
        against the model's vocabulary: LlmError if it does not."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        with self._cond:
            if text in self._grammars:
                self._grammars.move_to_end(text)
                return self._grammars[text]
        vocab = self._slots[0].llama._model.vocab
        probe = llama_cpp.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        if not probe:
            raise LlmError("the grammar does not compile (GBNF with a 'root' rule expected)")
        llama_cpp.llama_sampler_free(probe)
        grammar = LlamaGrammar.from_string(text, verbose=False)
        with self._cond:
            self._grammars[text] = grammar
            while len(self._grammars) > _GRAMMARS_KEPT:
                self._grammars.popitem(last=False)
        return grammar

    @property
    def thread_stats(self) -> StreamStats | None:
        """Stats of the last stream consumed on the calling thread (`last_stats` is any thread's)."""
        return getattr(self._local, "stats", None)

    @property
    def instances(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        """Free the llama.cpp contexts and model (the object is unusable afterwards)."""
        for slot in self._slots:
            with contextlib.suppress(Exception):
                slot.llama.close()
        self._pinned.close()

