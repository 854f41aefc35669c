"""Transcribe stage: the caller's utterance to text and how well it was heard, on the models' pool.

Whole-utterance transcripts, not pieces cut at pauses: Whisper needs the context (pieces split at
60 ms pauses came back as "How much you're not" + "cleaning cart?"), and on this machine tiny.en
takes ~85 ms for 1 s and ~125 ms for 3 s, so redoing the start at every pause is cheap. A pause
that adds no new speech reuses the transcript already under way. Owned by the controller thread.

The result is a `Heard`: the Stt's whole `Transcript` (its log-probability and no-speech
probability included) and the verdict of `confidence.judge` on it, made on the pool thread so the
reply thread only reads it. The prompt is the agent's vocabulary (`vocabulary.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from gateway.conversation.confidence import ConfidenceRule, Hearing, judge
from gateway.conversation.events import Utterance
from gateway.conversation.utterance_audio import MODEL_RATE, utterance_audio16k
from models.base import Stt, Transcript

STT_RATE = MODEL_RATE
_REUSE_FRAMES = 5  # a transcript covering all but the last 100 ms (trailing silence) is reused


@dataclass(frozen=True)
class Heard:
    """One utterance as the bot heard it: the transcript and whether to trust it."""

    transcript: Transcript
    hearing: Hearing

    @property
    def text(self) -> str:
        return self.transcript.text.strip()


class Transcriber:
    def __init__(self, stt: Stt, executor: Executor, prompt: str | None = None, rule: ConfidenceRule | None = None):
        self.stt = stt
        self.executor = executor
        self.prompt = prompt
        self.rule = rule or ConfidenceRule()
        self._utterance = 0
        self._transcripts: list[tuple[int, Future[Heard]]] = []  # (frames covered, transcript) of that utterance
        # told of every transcript handed out (the turn policy reads its words: semantic_turn.py)
        self.listeners: list[Callable[[Utterance, Future[Heard]], None]] = []

    def transcribe(self, utterance: Utterance) -> Future[Heard]:
        """The transcript of `utterance` as it stands (started now, or one under way reused)."""
        if utterance.number != self._utterance:
            self._utterance, self._transcripts = utterance.number, []
        if self._transcripts and self._transcripts[-1][0] >= utterance.length - _REUSE_FRAMES:
            future = self._transcripts[-1][1]
        else:
            future = self.executor.submit(self._run, utterance)
            self._transcripts.append((utterance.length, future))
        for listener in self.listeners:
            listener(utterance, future)
        return future

    def forget(self) -> None:
        """A new utterance began: what was transcribed of the last one is no use any more."""
        self._utterance, self._transcripts = 0, []

    def _run(self, utterance: Utterance) -> Heard:
        audio16k = utterance_audio16k(utterance)  # wideband as received on a G.722 call, else 8 kHz resampled
        transcript = self.stt.transcribe(audio16k, prompt=self.prompt)
        return Heard(transcript, judge(transcript, self.prompt, self.rule))
