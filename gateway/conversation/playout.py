"""The bot's outbound audio: 20 ms frames queued for the media clock, with the text they carry.

Why it keeps text with the audio: when the caller barges in, the history must hold only what the
caller actually heard, not what the LLM generated. Each queued piece of speech remembers its
text and how many of its frames went out, so `flush()` can say exactly how much was heard.

Why a gate per turn: replies are prepared speculatively while the caller may still go on; their
audio is queued but only played once the turn is confirmed (`release`), and dropped if not.

Why it tells a listener (the turn's `ReplyHandle`) when the turn's first frame goes out and when
its last queued frame has: that is how a reply knows it is playing and has been heard, without
anyone polling the queue.

Why each frame may carry a 16 kHz copy: on a wideband (G.722) line the caller hears the voice as
the TTS made it (bot_audio.py); the media thread says which kind of line this is (`line_wideband`),
so speech synthesized for a narrowband call is not resampled twice.

`next_frame()` runs on the media clock thread every 20 ms; the other methods run on agent
threads. One small lock protects the queue (held for microseconds); listeners are called
outside it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gateway.conversation.bot_audio import BotAudio
from rtp.outbound import OutboundFrame


@dataclass
class Piece:
    """One stretch of speech (typically a clause) and how much of it has been played."""

    turn: int
    text: str
    frames: int
    played: int = 0

    @property
    def heard_text(self) -> str:
        """The words the caller heard: all of them once played out, else a proportional prefix."""
        if self.played >= self.frames:
            return self.text
        words = self.text.split()
        heard = int(len(words) * self.played / max(1, self.frames))
        return " ".join(words[:heard])


class PlayoutListener(Protocol):
    def started_playing(self, at: float) -> None: ...

    def drained(self) -> None: ...


@dataclass
class Playout:
    clock: Callable[[], float] = time.monotonic
    _frames: collections.deque[tuple[Piece, OutboundFrame]] = field(default_factory=collections.deque)
    _pieces: list[Piece] = field(default_factory=list)
    _released: set[int] = field(default_factory=set)
    _cut: set[int] = field(default_factory=set)  # flushed at a barge-in: later audio of them is dropped
    _queued: collections.Counter[int] = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: dict[int, PlayoutListener] = field(default_factory=dict)
    _started: set[int] = field(default_factory=set)
    speaking_until: float = 0.0  # clock time the last played frame ends (for echo awareness)
    _held: bool = False  # something started over the bot: frames wait (not dropped) until `resume`
    # Set (media thread) while the call's line is wideband: speech made for it then gets a 16 kHz copy.
    line_wideband: threading.Event = field(default_factory=threading.Event)

    def push(self, turn: int, audio: BotAudio | np.ndarray, text: str) -> Piece:
        """Queue speech for `turn` (a bare array is 8 kHz int16 only), cut into 20 ms frames (the last
        one padded)."""
        if not isinstance(audio, BotAudio):
            audio = BotAudio(np.asarray(audio, dtype=np.int16).reshape(-1))
        frames = audio.frames()
        piece = Piece(turn, text, len(frames))
        with self._lock:
            if turn in self._cut:
                return piece  # the caller interrupted this turn: nothing more of it plays
            self._pieces.append(piece)
            self._queued[turn] += len(frames)
            self._frames.extend((piece, frame) for frame in frames)
        return piece

    def release(self, turn: int, listener: PlayoutListener | None = None) -> None:
        """Let `turn`'s audio play; `listener` hears (media thread) when it starts and drains."""
        with self._lock:
            self._released.add(turn)
            if listener is not None:
                self._listeners[turn] = listener

    def next_frame(self) -> OutboundFrame | None:
        """The frame to send now (media clock thread), or None for silence."""
        with self._lock:
            if not self._frames:
                return None
            piece, frame = self._frames[0]
            turn = piece.turn
            if turn not in self._released or self._held:
                return None
            self._frames.popleft()
            now = self.clock()
            piece.played += 1
            self.speaking_until = now + 0.02
            self._queued[turn] -= 1
            drained = self._queued[turn] <= 0
            if drained:
                del self._queued[turn]
            first = turn not in self._started
            self._started.add(turn)
            listener = self._listeners.get(turn)
        if listener is not None:
            if first:
                listener.started_playing(now)
            if drained:
                listener.drained()
        return frame

    def hold(self) -> None:
        """Stop sending at once, keeping every queued frame (media thread, at an onset over the bot:
        see turns.py). The caller has heard nothing past the last frame out, so `resume` goes on
        from exactly there and a `flush` counts only what went out."""
        with self._lock:
            self._held = True

    def resume(self) -> None:
        """Go on where `hold` stopped (the onset was no interruption)."""
        with self._lock:
            self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def drop_turn(self, turn: int) -> None:
        """Discard a speculative turn that was never released."""
        with self._lock:
            self._frames = collections.deque((p, f) for p, f in self._frames if p.turn != turn)
            self._pieces = [p for p in self._pieces if p.turn != turn]
            self._queued.pop(turn, None)
            self._listeners.pop(turn, None)

    def flush(self) -> dict[int, str]:
        """Stop at once (barge-in): drop every queued frame, and any audio still to come for the
        turns that were playing; return the heard text per turn."""
        with self._lock:
            self._frames.clear()
            self._held = False
            heard = self._heard_locked()
            self._pieces = []
            self._cut |= self._released
            self._released.clear()
            self._queued.clear()
            listeners = list(self._listeners.values())
            self._listeners.clear()
            self.speaking_until = 0.0
        for listener in listeners:
            listener.drained()  # nothing of it is queued any more
        return heard

    def forget_turn(self, turn: int) -> None:
        """Drop the bookkeeping of a turn whose heard text has been taken into the history."""
        with self._lock:
            self._pieces = [p for p in self._pieces if p.turn != turn]
            self._released.discard(turn)
            self._cut.discard(turn)
            self._started.discard(turn)
            self._listeners.pop(turn, None)

    def _heard_locked(self) -> dict[int, str]:
        out: dict[int, list[str]] = {}
        for piece in self._pieces:
            text = piece.heard_text
            if text:
                out.setdefault(piece.turn, []).append(text)
        return {turn: " ".join(parts) for turn, parts in out.items()}

    def is_playing(self) -> bool:
        """True while released audio is queued at the head (it is going out tick by tick, or is
        held: the bot is still mid-sentence, only paused)."""
        with self._lock:
            return bool(self._frames) and self._frames[0][0].turn in self._released

    def has_audio(self, turn: int) -> bool:
        """Whether any audio of `turn` is still queued (played or not yet released)."""
        with self._lock:
            return self._queued[turn] > 0

    def speaking(self, now: float) -> bool:
        """Whether bot audio is on the line now (or a moment ago: its echo may still be coming)."""
        return now < self.speaking_until + 0.3 or self.is_playing()
