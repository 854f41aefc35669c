"""The listening benchmark's caller: says one call's turns like a person would, and notes when.

Each turn starts once the bot's previous reply is over (its audio quiet for 1 s) or after 5 s
without any reply. A mid-thought turn is spoken on a fixed schedule, pause included, whatever the
bot does (a person thinking does not wait for the bot). A turn with an interjection sends it 0.6 s
into the bot's reply, while the bot talks. The background bed plays from the first tick to the end.
The timeline (in the peer's 20 ms ticks) is what `listening_score.py` measures against.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from bench.caller_audio import Pcm
from bench.listening_spec import Turn
from bench.sample_business import last_active_end
from bench.scripted_call import bot_onset
from tests.rig.rtp_peer import FRAME, RtpPeer

QUIET_AFTER_REPLY = 50  # ticks of bot silence that end its reply (1 s)
NO_REPLY = 250  # ticks (5 s) after which the caller moves on anyway
INTERJECT_AFTER = 30  # ticks into the bot's reply (0.6 s)


@dataclass(frozen=True)
class SpokenTurn:
    """A turn as audio: its parts, the pause after each but the last, and what it interjects."""

    turn: Turn
    parts: tuple[Pcm, ...]
    interjection: Pcm | None = None
    wide_parts: tuple[Pcm, ...] = ()  # the parts at 16 kHz, for a G.722 line (RtpPeer sends these)


@dataclass
class TurnTimeline:
    spoken: SpokenTurn
    start: int
    speech: list[tuple[int, int]]  # (first tick, tick after the last active frame) of each part
    interjection: tuple[int, int] | None = None
    interjection_skipped: bool = False
    next_start: int | None = None  # when the caller moved on (the turn's window ends there)

    @property
    def end(self) -> int:
        return self.speech[-1][1]

    @property
    def pauses(self) -> list[tuple[int, int]]:
        return [(a[1], b[0]) for a, b in zip(self.speech, self.speech[1:], strict=False)]


@dataclass
class ListeningCaller:
    turns: list[SpokenTurn]
    timelines: list[TurnTimeline] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    _busy_until: int = 0

    def on_tick(self, peer: RtpPeer, tick: int) -> None:
        current = self.timelines[-1] if self.timelines else None
        if current is not None and self._interject(peer, tick, current):
            return
        if tick < self._busy_until:
            return
        since = current.end if current is not None else 0
        if tick - since < NO_REPLY and not _reply_over(peer, tick, since):
            return
        if current is not None:
            current.next_start = tick
        if len(self.timelines) == len(self.turns):
            self.finished.set()
            return
        self._say(peer, tick, self.turns[len(self.timelines)])

    def _say(self, peer: RtpPeer, tick: int, spoken: SpokenTurn) -> None:
        at, speech = tick, []
        pauses = (*spoken.turn.pauses_s, 0.0)
        wide = spoken.wide_parts or (None,) * len(spoken.parts)
        for pcm, pcm16k, pause in zip(spoken.parts, wide, pauses, strict=True):
            peer.play_at(at, pcm, pcm16k)
            speech.append((at, at + last_active_end(pcm) // FRAME))
            at += -(-len(pcm) // FRAME) + round(pause / 0.02)
        self.timelines.append(TurnTimeline(spoken, tick, speech))
        self._busy_until = at + 1

    def _interject(self, peer: RtpPeer, tick: int, current: TurnTimeline) -> bool:
        """Send the turn's interjection into the bot's reply; True while it is still to come."""
        pcm = current.spoken.interjection
        if pcm is None or current.interjection is not None or current.interjection_skipped:
            return False
        onset = bot_onset(peer, current.end, tick)
        if onset is None:
            if tick - current.end >= NO_REPLY:
                current.interjection_skipped = True
                return False
            return True
        if tick < onset + INTERJECT_AFTER:
            return True
        if not any(peer.bot_active(t) for t in range(tick - 10, tick + 1)):  # the reply was over: nothing to talk over
            current.interjection_skipped = True
            return False
        peer.play_at(tick, pcm)
        current.interjection = (tick, tick + -(-len(pcm) // FRAME))
        self._busy_until = current.interjection[1]
        return False


def _reply_over(peer: RtpPeer, tick: int, since: int) -> bool:
    if bot_onset(peer, since, tick) is None:
        return False
    return not any(peer.bot_active(t) for t in range(tick - QUIET_AFTER_REPLY, tick))


def call_length_s(turns: list[SpokenTurn]) -> float:
    """An upper bound for the call: every turn spoken plus the longest wait for each reply."""
    audio = sum(len(p) for t in turns for p in (*t.parts, *([t.interjection] if t.interjection is not None else [])))
    pauses = sum(sum(t.turn.pauses_s) for t in turns)
    return 30.0 + audio / 8000 + pauses + len(turns) * 15.0  # a reply and the wait after it: < 15 s

