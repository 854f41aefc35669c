"""The end-of-turn model off the media clock: one thread per process, one queue of verdicts per call.

smart-turn takes 50-120 ms per inference, six media ticks, so the turn policy (media thread) only
posts a question and polls for the answer (semantic_turn.py). `EndOfTurnModel` is the process's
one model session and the one thread that runs it: inferences take turns there (on 2 cores two at
once only slow each other, and `SmartTurn` serialises them anyway), and a burst of pauses from
many calls queues instead of piling threads. It does not take the compute gate: waiting behind a
transcript and an LLM token would cost the verdict more than its 50-120 ms of CPU cost the others.

`CallVerdicts` is one call's end of it. What crosses threads: the `_Request` (a frozen snapshot
of the utterance and an Event the media thread sets when the answer is no longer wanted) goes to
the model thread; the `Verdict` comes back on the call's own queue. The words' verdict (`Words`)
comes back on that same queue from whichever pool thread finished the speculative transcript the
controller started at the pause (`heard`, registered with the call's `Transcriber`): the transcript
is made anyway for the reply, so judging its words costs microseconds and no extra model run.
Nothing else is shared.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from gateway.conversation.events import Utterance
from gateway.conversation.semantic_turn import Verdict, Words
from gateway.conversation.text_turn import TextVerdict, judge_text
from gateway.conversation.utterance_audio import MODEL_RATE, utterance_audio16k

_WINDOW_FRAMES = 8 * 50  # smart-turn hears the last 8 s; 20 ms frames

Judge = Callable[[np.ndarray], float]  # float audio at 16 kHz in [-1, 1] -> P(finished)


@dataclass(frozen=True)
class _Request:
    pause: int
    utterance: Utterance
    answer: queue.SimpleQueue[Verdict]
    unwanted: threading.Event = field(default_factory=threading.Event)


def model_input(utterance: Utterance) -> np.ndarray:
    """The utterance's last 8 s as the model wants it: 16 kHz float in [-1, 1] (the line's own
    16 kHz on a G.722 call, else resampled from 8 kHz int16)."""
    return utterance_audio16k(utterance, last_frames=_WINDOW_FRAMES).astype(np.float32, copy=False)


class EndOfTurnModel:
    """The process's end-of-turn model and the single thread it runs on."""

    def __init__(self, judge: Judge, name: str = "smart_turn"):
        self.name = name
        self._judge = judge
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-model")

    @classmethod
    def load(cls, path: str | None = None) -> EndOfTurnModel:
        """smart-turn v3.2 from the pinned wheel (models/registry.py), one intra-op thread."""
        from models.registry import resolve_turn_model
        from models.smart_turn import SmartTurn

        return cls(SmartTurn(resolve_turn_model(path)).probability)

    def warm_up(self) -> float:
        """One inference on 1 s of quiet noise (ONNX Runtime allocates on the first); its seconds."""
        noise = (np.random.default_rng(0).standard_normal(MODEL_RATE) * 0.01).astype(np.float32)
        start = time.perf_counter()
        self._executor.submit(self._judge, noise).result()
        return time.perf_counter() - start

    def for_call(self) -> CallVerdicts:
        return CallVerdicts(self._submit)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _submit(self, request: _Request) -> None:
        try:
            self._executor.submit(self._run, request)
        except RuntimeError as exc:  # shut down: the gateway is stopping
            request.answer.put(Verdict(request.pause, None, f"end-of-turn model stopped: {exc}"))

    def _run(self, request: _Request) -> None:
        """Model thread: answer one request unless the caller went on while it queued."""
        if request.unwanted.is_set():
            return
        start = time.perf_counter()
        try:
            probability = float(self._judge(model_input(request.utterance)))
        except Exception as exc:  # any failure of the model: the call falls back to silence alone
            request.answer.put(Verdict(request.pause, None, f"{type(exc).__name__}: {exc}",
                                       time.perf_counter() - start))
            return
        request.answer.put(Verdict(request.pause, probability, None, time.perf_counter() - start))


class CallVerdicts:
    """One call's `VerdictSource`: `ask`, `forget` and `poll` on the media thread only; `heard` on
    the controller thread. `submit` None: no audio model (`turn_model: text`), only the words."""

    def __init__(self, submit: Callable[[_Request], None] | None):
        self._submit = submit
        self._answers: queue.SimpleQueue[Verdict | Words] = queue.SimpleQueue()
        self._open: list[_Request] = []  # asked, maybe not answered yet

    def ask(self, pause: int, utterance: Utterance) -> None:
        if self._submit is None:
            return
        request = _Request(pause, utterance, self._answers)
        self._open.append(request)
        self._submit(request)

    def forget(self) -> None:
        for request in self._open:
            request.unwanted.set()
        self._open.clear()

    def poll(self) -> Verdict | Words | None:
        try:
            answer = self._answers.get_nowait()
        except queue.Empty:
            return None
        if isinstance(answer, Verdict):
            self._open = [r for r in self._open if r.pause != answer.pause]
        return answer

    def heard(self, utterance: Utterance, transcript: Future[object]) -> None:
        """Controller thread: a transcript of `utterance` is under way; its words' verdict joins
        the answers when it is done (a failed transcript says nothing: UNSURE)."""
        number, frames, answers = utterance.number, utterance.length, self._answers

        def judged(done: Future[object]) -> None:  # on the thread that finished the transcript
            text = "" if done.cancelled() or done.exception() is not None else _text_of(done.result())
            answers.put(Words(number, frames, judge_text(text) if text else TextVerdict.UNSURE, text))

        transcript.add_done_callback(judged)


def _text_of(result: object) -> str:
    """A transcript's text, whether the transcriber hands out a string or an object with `.text`."""
    return result if isinstance(result, str) else str(getattr(result, "text", "") or "")
