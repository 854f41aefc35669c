"""Scripted, time-compressed models and a fake clock for turn-taking tests.

The agent runs its real threads; only time is fake. A driver advances the clock 20 ms per tick
(and sleeps a little real time so the agent's threads keep up); the fake models take their
scripted durations in *fake* time. So a test of "the bot stops within 100 ms of the caller's
onset" runs in a fraction of a second, with every stage's delay under the test's control.

The caller's audio encodes what is said: an utterance is noise at a level that names a
question (`QUESTION_LEVELS`), silence is zeros. The fake VAD calls loud audio speech, the fake
STT maps a level back to its question, the fake LLM answers "You asked: <question>".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from models.base import AudioChunk, ChatMessage, ModelError, SttError, Transcript, TtsError

QUESTIONS = {1: "what are your opening hours", 2: "where is the office", 3: "okay thanks bye",
             4: "please transfer me to billing", 5: "do you sell car insurance?", 6: "what is the status of order 42"}
LEVELS = {1: 3000.0, 2: 6000.0, 3: 9000.0, 4: 11000.0, 5: 13000.0, 6: 7500.0}  # noise std: no clipping


class FakeClock:
    """Fake time that only moves when the driver says so, and waits for the threads it wakes."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._lock = threading.Lock()
        self._waiting: dict[object, float] = {}

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def wait_until(self, deadline: float, cancel=None) -> bool:
        """Block (in real time) until fake time reaches `deadline`; False if cancelled first."""
        token = object()
        with self._lock:
            self._waiting[token] = deadline
        try:
            while self.now < deadline:
                if cancel is not None and cancel.is_set():
                    return False
                time.sleep(0.0002)
            return True
        finally:
            with self._lock:
                del self._waiting[token]

    def settle(self, timeout_s: float = 0.2, busy=lambda: False) -> None:
        """Wait (real time) until every model step whose fake deadline has passed has woken up,
        and `busy` (the controller's unhandled events) says no, so a loaded machine slows the
        test down instead of stretching the scripted durations."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                due = any(deadline <= self.now for deadline in self._waiting.values())
            if not due and not busy():
                return
            time.sleep(0.0002)


def speech_frames(question: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + question)
    level = LEVELS[question]
    count = int(round(seconds / 0.02))
    return [np.clip(rng.standard_normal(160) * level, -32767, 32767).astype(np.int16) for _ in range(count)]


def silence_frames(seconds: float) -> list[np.ndarray]:
    return [np.zeros(160, dtype=np.int16) for _ in range(int(round(seconds / 0.02)))]


class FakeVadStream:
    sample_rate = 8000

    def __init__(self, threshold_rms: float):
        self.threshold_rms = threshold_rms

    def process(self, pcm: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
        return 0.95 if rms >= self.threshold_rms else 0.02

    def reset(self) -> None:
        pass


@dataclass
class FakeVad:
    threshold_rms: float = 1000.0

    def new_stream(self, sample_rate: int = 8000) -> FakeVadStream:
        return FakeVadStream(self.threshold_rms)


@dataclass
class FakeStt:
    clock: FakeClock
    seconds: float = 0.1
    sample_rate: int = 16000
    calls: list[str] = field(default_factory=list)
    logprob: dict[str, float] = field(default_factory=dict)  # text -> the avg_logprob it is heard with
    word_probs: dict[str, tuple[float, ...]] = field(default_factory=dict)  # text -> its words' probabilities
    prompts: list[str | None] = field(default_factory=list)
    fail: bool = False  # raise SttError on every request (a transcription server gone)

    def transcribe(self, audio16k: np.ndarray, prompt: str | None = None) -> Transcript:
        if self.fail:
            raise SttError("cannot connect to STT server http://10.0.0.7:8000/v1: scripted failure")
        start = self.clock()
        # each stretch of speech (split at 100 ms of silence) names one question by its level
        frames = audio16k[: len(audio16k) // 320 * 320].reshape(-1, 320)
        levels = np.sqrt(np.mean((frames * 32768.0) ** 2, axis=1))
        words, run, gap = [], [], 0
        for level in [*levels, 0.0, 0.0, 0.0, 0.0, 0.0]:
            if level > 500:
                run.append(level)
                gap = 0
                continue
            gap += 1 if run else 0
            if run and gap >= 5:
                words.append(QUESTIONS[min(LEVELS, key=lambda q: abs(LEVELS[q] - float(np.median(run))))])
                run = []
        text = " ".join(words)
        self.clock.wait_until(start + self.seconds)
        self.calls.append(text)
        self.prompts.append(prompt)
        return Transcript(text=text, duration_s=len(audio16k) / 16000, elapsed_s=self.seconds,
                          avg_logprob=self.logprob.get(text, 0.0), word_probs=self.word_probs.get(text, ()))


@dataclass
class FakeLlm:
    clock: FakeClock
    first_token_s: float = 0.15
    token_s: float = 0.03
    reply_words: int = 8
    prompts: list[list[ChatMessage]] = field(default_factory=list)
    script: dict[str, str] = field(default_factory=dict)  # phrase in the caller's message -> whole reply
    fail: bool = False  # raise ModelError on every request

    def warm_up(self, system_prompt: str) -> float:
        return 0.0

    def stream_chat(self, messages: Sequence[ChatMessage], *, max_tokens: int = 256, temperature: float = 0.7,
                    stop: Sequence[str] = (), cancel=None, affinity=None) -> Iterator[str]:
        self.prompts.append(list(messages))
        if self.fail:
            raise ModelError("llama.cpp generation failed: scripted failure")
        question = messages[-1].content
        scripted = next((reply for key, reply in self.script.items() if key in question), None)
        if scripted is not None:
            words = scripted.split(" ")
        else:
            words = f"You asked: {question}.".split() + [f"word{i}" for i in range(self.reply_words)]
        deadline = self.clock() + self.first_token_s
        for i, word in enumerate(words):
            if not self.clock.wait_until(deadline, cancel):
                return
            yield ("" if i == 0 else " ") + word + ("." if i == len(words) - 1 and scripted is None else "")
            deadline += self.token_s


@dataclass
class FakeTts:
    clock: FakeClock
    seconds: float = 0.05
    word_s: float = 0.25
    sample_rate: int = 22050
    texts: list[str] = field(default_factory=list)
    fail_on: str = ""  # raise TtsError for texts holding this (a speech server gone; cached phrases still play)

    def synthesize(self, text: str, *, cancel=None) -> Iterator[AudioChunk]:
        if self.fail_on and self.fail_on in text:
            raise TtsError("TTS server http://10.0.0.7:8000/v1 request failed: scripted failure")
        start = self.clock()
        self.texts.append(text)
        if not self.clock.wait_until(start + self.seconds, cancel):
            return
        samples = int(self.sample_rate * self.word_s * max(1, len(text.split())))
        t = np.arange(samples) / self.sample_rate
        yield AudioChunk((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), self.sample_rate)


class FakeModels:
    def __init__(self, clock: FakeClock, **kw):
        self.vad = FakeVad()
        self.stt = FakeStt(clock, **kw.get("stt", {}))
        self.llm = FakeLlm(clock, **kw.get("llm", {}))
        self.tts = FakeTts(clock, **kw.get("tts", {}))
        self.executor = ThreadPoolExecutor(max_workers=4)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
