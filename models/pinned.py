"""Run an engine's compute on one long-lived thread.

Why: llama.cpp (system libgomp) and CTranslate2 (its own libgomp) parallelize with OpenMP, and
OpenMP keeps a team of worker threads per *calling* thread. Measured here on 2 cores: Qwen 0.5B
generated at 32 ms/token on the thread that first ran it, but at 52-58 ms/token when the same
model (same prompt, same gate) was then driven from any other thread, for as long as the first
one lived; the idle team of the first caller competes with the new one. Calls come from many
threads in the gateway (a thread per reply, a pool for transcripts), so each engine routes its
compute through one `PinnedThread` instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class PinnedThread:
    def __init__(self, name: str):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident: int | None = None
        self._executor.submit(self._remember).result()

    def _remember(self) -> None:
        self._ident = threading.get_ident()

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on the pinned thread and return its result (or raise its exception)."""
        if threading.get_ident() == self._ident:
            return fn(*args)
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
