"""The bot's outbound audio: 20 ms frames queued for the media clock, with the text they carry.

Why it keeps text with the audio: when the caller barges in, the history must hold only what the
caller actually heard, not what the LLM generated. Each queued piece of speech remembers its
text and how many of its frames went out, so `flush()` can say exactly how much was heard.

Why a gate per turn: replies are prepared speculatively while the caller may still go on; their
audio is queued but only played once the turn is confirmed (`release`), and dropped if not.

`next_frame()` runs on the media clock thread every 20 ms; the other methods run on agent
threads. One small lock protects the queue (held for microseconds).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FRAME = 160  # 20 ms at 8 kHz


@dataclass
class Piece:
    """One stretch of speech (typically a clause) and how much of it has been played."""

    turn: int
    text: str
    frames: int
    played: int = 0
    started_at: float | None = None

    @property
    def heard_text(self) -> str:
        """The words the caller heard: all of them once played out, else a proportional prefix."""
        if self.played >= self.frames:
            return self.text
        words = self.text.split()
        heard = int(len(words) * self.played / max(1, self.frames))
        return " ".join(words[:heard])


@dataclass
class Playout:
    clock: Callable[[], float] = time.monotonic
    _frames: collections.deque[tuple[Piece, np.ndarray]] = field(default_factory=collections.deque)
    _pieces: list[Piece] = field(default_factory=list)
    _released: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _on_first_frame: dict[int, Callable[[float], None]] = field(default_factory=dict)
    speaking_until: float = 0.0  # clock time the last played frame ends (for echo awareness)

    def push(self, turn: int, pcm: np.ndarray, text: str) -> Piece:
        """Queue 8 kHz int16 audio for `turn`, cut into 20 ms frames (the last one padded)."""
        pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
        count = max(1, -(-len(pcm) // FRAME))
        padded = np.zeros(count * FRAME, dtype=np.int16)
        padded[: len(pcm)] = pcm
        piece = Piece(turn, text, count)
        with self._lock:
            self._pieces.append(piece)
            for i in range(count):
                self._frames.append((piece, padded[i * FRAME:(i + 1) * FRAME]))
        return piece

    def release(self, turn: int, on_first_frame: Callable[[float], None] | None = None) -> None:
        """Let `turn`'s audio play; `on_first_frame(t)` is called (media thread) when it starts."""
        with self._lock:
            self._released.add(turn)
            if on_first_frame is not None:
                self._on_first_frame[turn] = on_first_frame

    def next_frame(self) -> np.ndarray | None:
        """The frame to send now (media clock thread), or None for silence."""
        callback = None
        with self._lock:
            if not self._frames:
                return None
            piece, frame = self._frames[0]
            if piece.turn not in self._released:
                return None
            self._frames.popleft()
            now = self.clock()
            if piece.started_at is None:
                piece.started_at = now
            piece.played += 1
            self.speaking_until = now + 0.02
            callback = self._on_first_frame.pop(piece.turn, None)
        if callback is not None:
            callback(now)
        return frame

    def drop_turn(self, turn: int) -> None:
        """Discard a speculative turn that was never released."""
        with self._lock:
            self._frames = collections.deque((p, f) for p, f in self._frames if p.turn != turn)
            self._pieces = [p for p in self._pieces if p.turn != turn]
            self._on_first_frame.pop(turn, None)

    def flush(self) -> dict[int, str]:
        """Stop at once (barge-in): drop every queued frame; return the heard text per turn."""
        with self._lock:
            self._frames.clear()
            heard = self._heard_locked()
            self._pieces = []
            self._on_first_frame.clear()
            self.speaking_until = 0.0
        return heard

    def forget_turn(self, turn: int) -> None:
        """Drop the bookkeeping of a turn whose heard text has been taken into the history."""
        with self._lock:
            self._pieces = [p for p in self._pieces if p.turn != turn]
            self._released.discard(turn)

    def _heard_locked(self) -> dict[int, str]:
        out: dict[int, list[str]] = {}
        for piece in self._pieces:
            text = piece.heard_text
            if text:
                out.setdefault(piece.turn, []).append(text)
        return {turn: " ".join(parts) for turn, parts in out.items()}

    def is_playing(self) -> bool:
        """True while released audio is queued at the head (it is going out tick by tick)."""
        with self._lock:
            return bool(self._frames) and self._frames[0][0].turn in self._released

    def has_audio(self, turn: int) -> bool:
        """Whether any audio of `turn` is still queued (played or not yet released)."""
        with self._lock:
            return any(piece.turn == turn for piece, _ in self._frames)

    def speaking(self, now: float) -> bool:
        """Whether bot audio is on the line now (or a moment ago: its echo may still be coming)."""
        return now < self.speaking_until + 0.3 or self.is_playing()
