"""Prefill: the call's conversation so far into the LLM's cache while the caller speaks.

A turn's prompt is the conversation so far plus the new user message (the retrieved facts and
what the caller said). The call's KV cache holds the *previous* prompt, whose last user message
carried that turn's facts; the history keeps only the caller's words, so the cache and the new
prompt part at the previous question, and the first token waited for the previous question, the
previous answer and the new message: 46-136 tokens at ~5-6 ms each on 2 cores (tune split).

When the caller starts speaking, everything before their new message is known: it is evaluated
then, on the call's slot, in small chunks that give way to any request (models/llama.py). At the
turn's end only the new message is left to evaluate. The work runs on a short thread of its own
(never the controller's); an engine without a cache of ours (a server) does not declare
`PrefillLlm` and nothing happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from gateway.conversation.history import approx_tokens, fit_history
from models.base import CancelToken, ChatMessage, Llm, ModelError, PrefillLlm

# The turn's own message is not known yet: `fit_history` is asked with one of this many (estimated)
# tokens in its place, the size of a typical facts block and question (the uncached part of the
# tune split's prompts was 30-136 tokens), so a long call mostly drops the same old exchanges as the
# turn will; when it does not, the prefill was wasted and the turn evaluates its prompt as before.
NEXT_MESSAGE_TOKENS = 120


def conversation_before_turn(history: Sequence[ChatMessage], history_tokens: int) -> list[ChatMessage]:
    """The messages the next turn's prompt will start with (pipeline.generate cuts the same way)."""
    placeholder = ChatMessage("user", "x " * int(NEXT_MESSAGE_TOKENS * 0.75))
    return fit_history([*history, placeholder], history_tokens, approx_tokens)[:-1]


class Prefiller:
    """One call's prefills: at most one under way; a newer one waits for none (it is skipped)."""

    def __init__(self, llm: Llm | None, history_tokens: int, affinity: str, log: Any, stop: CancelToken):
        self.llm = llm if isinstance(llm, PrefillLlm) else None
        self.history_tokens = history_tokens
        self.affinity = affinity
        self.log = log
        self.stop = stop
        self._running: threading.Thread | None = None

    def start(self, history: Sequence[ChatMessage]) -> bool:
        """Begin evaluating `history` (a snapshot: the thread reads nothing else); False if skipped."""
        if self.llm is None or (self._running is not None and self._running.is_alive()):
            return False
        messages = conversation_before_turn(history, self.history_tokens)
        self._running = threading.Thread(target=self._run, args=(self.llm, messages), daemon=True,
                                         name=f"prefill-{self.affinity}")
        self._running.start()
        return True

    def _run(self, llm: PrefillLlm, messages: list[ChatMessage]) -> None:
        started = time.perf_counter()
        try:
            tokens = llm.prefill(messages, affinity=self.affinity, cancel=self.stop)
        except ModelError as exc:  # the turn itself will meet (and report) a broken engine
            self.log.warning("llm_prefill_failed", error=str(exc))
            return
        if tokens:
            self.log.info("llm_prefilled", tokens=tokens, ms=round((time.perf_counter() - started) * 1000, 1))
