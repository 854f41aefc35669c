"""A scripted caller's turns on a `CallerLine`: speak, wait for the bot's reply, time it.

Voice-to-voice latency of a turn = first voiced packet of the bot's reply to arrive (the onset:
ONSET_FRAMES voiced packets in a row, so a click is not a reply) minus the moment the caller's
last voiced frame was sent. A reply is over once the bot has been quiet for END_SILENCE_S;
its audio (every packet from its onset to then, in arrival order) is kept for the transcript
and the WAV file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.dial.line import Arrival, CallerLine

ONSET_FRAMES = 3  # voiced packets in a row that start a reply (as bench/scripted_call.py)
END_SILENCE_S = 1.5  # quiet this long after voice: the reply is over (pauses between clauses are shorter)
POLL_S = 0.02


@dataclass(frozen=True)
class BotReply:
    """What came back after one caller turn (or at the start of the call: the greeting)."""

    onset_at: float | None  # time.monotonic() its first voiced packet arrived; None: the bot said nothing
    audio: np.ndarray  # 8 kHz int16, onset to end

    @property
    def heard(self) -> bool:
        return self.onset_at is not None


def onset(arrivals: Sequence[Arrival]) -> float | None:
    """Arrival time of the first packet that starts ONSET_FRAMES voiced packets in a row."""
    run = 0
    for i, arrival in enumerate(arrivals):
        run = run + 1 if arrival.voiced else 0
        if run == ONSET_FRAMES:
            return arrivals[i - ONSET_FRAMES + 1].at
    return None


def ended(arrivals: Sequence[Arrival], now: float) -> bool:
    """The bot has spoken and then been quiet for END_SILENCE_S (by arrival time)."""
    voiced = [a.at for a in arrivals if a.voiced]
    return bool(voiced) and now - voiced[-1] >= END_SILENCE_S


def wait_reply(line: CallerLine, since: float, start_within_s: float, max_s: float,
               hung_up: Callable[[], bool] = lambda: False) -> BotReply:
    """The bot's reply whose audio arrived after `since`: waits up to `start_within_s` (from now)
    for its onset and up to `max_s` in all for its end (or until the call ends)."""
    begun = time.monotonic()
    deadline = begun + start_within_s
    started: float | None = None
    while True:
        now = time.monotonic()
        arrivals = line.arrivals(since)
        if started is None:
            started = onset(arrivals)
        if started is not None and (ended(arrivals, now) or now - begun > max_s):
            break
        if (started is None and now > deadline) or hung_up():
            break
        time.sleep(POLL_S)
    if started is None:
        return BotReply(None, np.zeros(0, dtype=np.int16))
    kept = line.arrivals(started)
    return BotReply(started, np.concatenate([a.pcm for a in kept]) if kept else np.zeros(0, dtype=np.int16))
