"""Transcribe stage: the caller's utterance to text, on the models' thread pool.

Whole-utterance transcripts, not pieces cut at pauses: Whisper needs the context (pieces split at
60 ms pauses came back as "How much you're not" + "cleaning cart?"), and on this machine tiny.en
takes ~85 ms for 1 s and ~125 ms for 3 s, so redoing the start at every pause is cheap. A pause
that adds no new speech reuses the transcript already under way. Owned by the controller thread.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future

import numpy as np

from gateway.conversation.events import Utterance
from models.base import Stt
from rtp.resample import int16_to_float, resample

STT_RATE = 16000
_REUSE_FRAMES = 5  # a transcript covering all but the last 100 ms (trailing silence) is reused


class Transcriber:
    def __init__(self, stt: Stt, executor: Executor, prompt: str | None = None):
        self.stt = stt
        self.executor = executor
        self.prompt = prompt
        self._utterance = 0
        self._transcripts: list[tuple[int, Future[str]]] = []  # (frames covered, transcript) of that utterance
        # told of every transcript started (the turn policy reads its words: semantic_turn.py)
        self.listeners: list[Callable[[Utterance, Future[str]], None]] = []

    def transcribe(self, utterance: Utterance) -> Future[str]:
        """The transcript of `utterance` as it stands (started now, or one under way reused)."""
        if utterance.number != self._utterance:
            self._utterance, self._transcripts = utterance.number, []
        if self._transcripts and self._transcripts[-1][0] >= utterance.length - _REUSE_FRAMES:
            future = self._transcripts[-1][1]
        else:
            future = self.executor.submit(self._run, np.concatenate(utterance.frames))
            self._transcripts.append((utterance.length, future))
        for listener in self.listeners:
            listener(utterance, future)
        return future

    def forget(self) -> None:
        """A new utterance began: what was transcribed of the last one is no use any more."""
        self._utterance, self._transcripts = 0, []

    def _run(self, pcm8k: np.ndarray) -> str:
        audio16k = int16_to_float(resample(pcm8k, 8000, STT_RATE))
        return self.stt.transcribe(audio16k, prompt=self.prompt).text.strip()
