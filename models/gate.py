"""``ComputeGate``: lets one CPU-heavy inference step run at a time, fairly, by priority.

Why: on 2 cores every engine wants both cores (llama.cpp and CTranslate2 through OpenMP,
Piper through ONNX Runtime), and when two run at once they do not share nicely.  Measured
here with Qwen 0.5B (n_threads=2, llama.cpp built with OpenMP) streaming while Piper or
Whisper run in a loop on another thread: generation fell from ~33 tokens/s to 0.3-6
tokens/s, with multi-second stalls, because llama.cpp's worker threads spin-wait at every
barrier for a thread the OS has descheduled.  (llama.cpp links the system libgomp,
CTranslate2 ships its own copy: two OpenMP runtimes, each with spinning pools.
``OMP_WAIT_POLICY=PASSIVE`` avoids the collapse but halves llama's speed even when alone;
``GOMP_SPINCOUNT`` tuning was erratic.)

So the engines take this gate around each *step*: one LLM token (the first step includes
the prompt evaluation), one Piper sentence, one Whisper call.  Steps are short (30 ms per
token, 50-300 ms per sentence or transcript), so a waiting step starts soon, and every step
runs at full speed.  Waiters are served earliest deadline first, the deadline being the
arrival time plus a slack per kind of step (then first come, first served):

* ``STT`` and ``TTS``: no slack.  The end-of-turn transcript is on the critical path to
  the answer, and a late sentence is an audible gap;
* ``LLM``: 50 ms of slack, so a transcript or a sentence that arrives while a token waits
  goes first, but a stream of STT/TTS requests cannot starve the LLM (strict priorities
  did: a back-to-back Whisper loop stopped generation completely).  One token per turn,
  so two streams (two calls with ``LlamaConfig.instances=2``) interleave token by token
  instead of one waiting for the other's whole answer.

The VAD never takes the gate: it runs on the media clock, must never wait, and costs
~0.1 ms on one thread.  A gate is per process (``ModelSet`` creates one and hands it to the
engines); engines built without one (``gate=None``) behave as before.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["ComputeGate", "GateStats", "Priority", "gated"]


class Priority(IntEnum):
    STT = 0
    TTS = 1
    LLM = 2


# Seconds added to a waiter's arrival time to order the queue (earliest deadline first).
SLACK_S: dict[Priority, float] = {Priority.STT: 0.0, Priority.TTS: 0.0, Priority.LLM: 0.05}


@dataclass(slots=True)
class GateStats:
    """Counters for logs/bench: how often and how long steps waited."""

    steps: int = 0
    waited: int = 0
    wait_s: float = 0.0
    max_wait_s: float = 0.0


@dataclass(eq=False)
class ComputeGate:
    """A fair priority mutex: ``with gate.hold(Priority.TTS): run_one_step()``."""

    stats: GateStats = field(default_factory=GateStats)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _busy: bool = field(default=False, repr=False)
    _waiting: list[tuple[float, int]] = field(default_factory=list, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    @contextlib.contextmanager
    def hold(self, priority: Priority) -> Iterator[None]:
        with self._cond:
            self.stats.steps += 1
            if not self._busy and not self._waiting:
                self._busy = True
            else:
                t0 = time.perf_counter()
                ticket = (t0 + SLACK_S[priority], next(self._seq))
                heapq.heappush(self._waiting, ticket)
                while self._busy or self._waiting[0] != ticket:
                    self._cond.wait()
                heapq.heappop(self._waiting)
                self._busy = True
                waited = time.perf_counter() - t0
                self.stats.waited += 1
                self.stats.wait_s += waited
                self.stats.max_wait_s = max(self.stats.max_wait_s, waited)
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


def gated(gate: ComputeGate | None, priority: Priority) -> contextlib.AbstractContextManager[None]:
    """``gate.hold(priority)``, or a no-op when the engine runs without a gate."""
    return gate.hold(priority) if gate is not None else contextlib.nullcontext()
