"""Scores one listening call from what the caller heard on the wire, with the gateway's log for text.

The wire (the caller's recording, by arrival time) is the truth for timing: bot audio is three 20 ms
frames above -40 dBFS (as in bench_call_latency). The gateway's call record says what it heard (its
`turn` events, with the Unix time the caller's speech ended) and its log when it stopped for the
caller (`barge_in`); both are placed on the caller's clock from the wall time of its first tick.

- cut-in: bot audio starts inside a mid-thought pause;
- dead air: a finished turn gets no answer within 1.5 s of its end (an answer is bot audio lasting
  0.2 s of the 0.5 s from its onset, not a blip let out before a barge-in);
- false barge-in: while the bot should have been talking (the greeting, each answer) the caller only
  coughed, said "uh-huh", or said nothing, and the bot stopped: the gateway logged a barge-in then,
  and the wire shows no bot audio 300-500 ms after it (a greeting cut 100 ms in counts too, although
  hardly any of it reached the wire);
- voice-to-voice: the answer's onset minus the end of a complete question;
- WER: what the gateway heard between the turn's start and the caller's next move, against the text;
- reply: what the bot said to the finished turn (its last answered reply), as `Reply`: an answer,
  "I don't have that information" (`unknown_answer`), "could you say it again?" (`repeat_request`),
  or nothing. With the turn's WER (heard well: <= `HEARD_WER`) it tells the bad case (a garble
  refused as if the business could not help) from the cost (a well-heard question asked again).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.listening_caller import TurnTimeline
from bench.listening_spec import ANSWERABLE, CallPlan, Interjection, TurnKind
from bench.scripted_call import ONSET_FRAMES, bot_onset
from bench.wer import WordErrors, word_errors
from gateway.conversation.settings import ConversationSettings
from tests.rig.rtp_peer import RtpPeer

TICK_S = 0.02
DEAD_AIR = 75  # ticks: 1.5 s
STOP_WITHIN = 15  # ticks: a barge-in that stopped the bot ends its audio within 300 ms
ANSWER_WINDOW, ANSWER_MIN = 25, 10  # an answer: 10 of the 25 ticks from its onset carry bot audio
# A turn heard with at most this word error rate was heard well: one word in four wrong still leaves a
# short question's meaning ("What time do you close on Friday?" -> "What time do you slow on Friday?").
HEARD_WER = 0.25
_SETTINGS = ConversationSettings()  # the benchmark's agent speaks the default lines


class Reply(enum.Enum):
    """What the bot said to a finished caller turn."""

    ANSWER = "answer"
    DONT_KNOW = "don't know"  # settings.unknown_answer
    REPEAT = "repeat request"  # settings.repeat_request
    NONE = "no reply"


def classify_reply(bot: str, settings: ConversationSettings = _SETTINGS) -> Reply:
    """The kind of a reply, by the fixed lines it carries (the LLM's own answer may end with the
    don't-know line when its answer was declined: generate.py)."""
    if not bot.strip():
        return Reply.NONE
    if settings.repeat_request and settings.repeat_request in bot:
        return Reply.REPEAT
    if settings.unknown_answer and settings.unknown_answer in bot:
        return Reply.DONT_KNOW
    return Reply.ANSWER


class Disturbance(enum.Enum):
    """What the caller did during a bot reply that should not have stopped it."""

    BACKCHANNEL = "backchannel"
    COUGH = "cough"
    NOISE = "nothing, on a noisy line"
    SILENCE = "nothing, on a quiet line"


@dataclass(frozen=True)
class TurnScore:
    kind: TurnKind
    reference: str
    heard: str
    errors: WordErrors
    pauses: int
    cut_ins: int
    dead_air: bool
    latency_ms: float | None  # complete questions only
    interjection: str  # "", "sent", or "skipped" (no reply, or one shorter than 0.6 s)
    span: tuple[int, int]  # the turn's first tick and the end of its speech, on the caller's clock
    bot: str = ""  # the bot's reply to the finished turn
    reply: Reply = Reply.NONE
    answerable: bool = False  # the sample business's facts answer the reference (listening_spec.ANSWERABLE)

    @property
    def heard_well(self) -> bool:
        return self.errors.rate <= HEARD_WER


@dataclass(frozen=True)
class ReplyScore:
    disturbance: Disturbance
    barge_in_logged: bool
    false_barge_in: bool  # logged, and the wire shows the reply stopping


@dataclass(frozen=True)
class CallScore:
    plan: CallPlan
    turns: tuple[TurnScore, ...]
    replies: tuple[ReplyScore, ...]
    t0_wall: float  # Unix time of the caller's tick 0 (to read the gateway's log beside the scores)


def log_tick(line: dict[str, Any], t0_wall: float) -> float:
    """A log line's time on the caller's clock (ticks since its first packet)."""
    return (datetime.fromisoformat(str(line["timestamp"])).timestamp() - t0_wall) / TICK_S


def score_call(plan: CallPlan, timelines: list[TurnTimeline], peer: RtpPeer, log: list[dict[str, Any]],
               record: list[dict[str, Any]], t0_wall: float) -> CallScore:
    """`log`: this call's `barge_in` log lines; `record`: its call record's events (gateway/records.py)."""
    heard, said = _heard_by_turn(timelines, [e for e in record if e.get("kind") == "turn"], t0_wall)
    barges = [log_tick(e, t0_wall) for e in log if e["event"] == "barge_in"]
    last = max(peer.received, default=0) + 1
    turns = []
    for i, tl in enumerate(timelines):
        cut_ins = sum(1 for a, b in tl.pauses if _onset_before(peer, a, b))
        onset = answer_onset(peer, tl.end, tl.next_start or last)
        latency = None
        if tl.spoken.turn.kind is TurnKind.QUESTION and onset is not None:
            latency = (onset - tl.end) * TICK_S * 1000
        turns.append(TurnScore(tl.spoken.turn.kind, tl.spoken.turn.reference, heard[i],
                               word_errors(tl.spoken.turn.reference, heard[i]), len(tl.pauses), cut_ins,
                               onset is None or onset - tl.end >= DEAD_AIR, latency,
                               "sent" if tl.interjection else "skipped" if tl.interjection_skipped else "",
                               (tl.start, tl.end), said[i], classify_reply(said[i]),
                               tl.spoken.turn.reference in ANSWERABLE))
    return CallScore(plan, tuple(turns), tuple(_replies(plan, timelines, peer, barges)), t0_wall)


def answer_onset(peer: RtpPeer, after: int, until: int) -> int | None:
    """Where an answer starts: bot audio that goes on for at least 0.2 s of the 0.5 s from its onset.

    A barge-in lets 60-100 ms of a reply out before the bot stops (noise kept doing that, every
    ~0.5 s, on the hum and pink lines): to the caller that is a click, not an answer.
    """
    while True:
        onset = bot_onset(peer, after, until)
        if onset is None:
            return None
        if sum(peer.bot_active(t) for t in range(onset, onset + ANSWER_WINDOW)) >= ANSWER_MIN:
            return onset
        after = onset + ONSET_FRAMES


def _heard_by_turn(timelines: list[TurnTimeline], turns: list[dict[str, Any]],
                   t0_wall: float) -> tuple[list[str], list[str]]:
    """What the gateway heard of each caller turn, in order, from the call record's `turn` events,
    and what the bot said to it (its last answered reply: the one to the finished turn).

    Each is placed by its `speech_end` (when the caller stopped, on the gateway's clock as Unix time):
    it belongs to the last turn, or interjection (whose words are not scored), that started before.
    The `turn` log line is no anchor: it is written once the reply is settled, seconds after the
    speech it transcribed. Only turns the bot acted on count: answered (even if the caller then cut
    the answer short), not a speculative reply dropped unheard because the caller went on. Turns the
    gateway ignored (a lone "uh", nothing but punctuation) have no transcript in the record.
    """
    owners = sorted([(tl.start, i) for i, tl in enumerate(timelines)]
                    + [(tl.interjection[0], -1) for tl in timelines if tl.interjection])
    heard: list[list[str]] = [[] for _ in timelines]
    said = ["" for _ in timelines]
    for turn in sorted(turns, key=lambda e: float(e["speech_end"])):
        answered = not turn.get("cancelled") or (turn.get("stages") or {}).get("first_rtp_ms") is not None
        anchor = (float(turn["speech_end"]) - t0_wall) / TICK_S
        owner = next((i for start, i in reversed(owners) if start <= anchor), -1)
        if owner >= 0 and answered and turn.get("caller"):
            heard[owner].append(str(turn["caller"]))
            said[owner] = str(turn.get("bot") or "")
    return [" ".join(words) for words in heard], said


def _onset_before(peer: RtpPeer, start: int, end: int) -> bool:
    onset = bot_onset(peer, start, end + ONSET_FRAMES - 1)
    return onset is not None and onset < end


def _replies(plan: CallPlan, timelines: list[TurnTimeline], peer: RtpPeer, barges: list[float]) -> list[ReplyScore]:
    """One per bot reply the caller should have let finish: the greeting and each turn's answer (the caller
    only interjecting, or silent), plus one per interjection, which is scored on its own window."""
    noisy = plan.condition.snr_db is not None
    starts = [0, *(tl.end for tl in timelines)]
    ends = [tl.start for tl in timelines] + [timelines[-1].next_start or max(peer.received, default=0) + 1]
    interjections = [(tl.interjection[0], tl.interjection[1] + STOP_WITHIN, tl.spoken.turn.interjection)
                     for tl in timelines if tl.interjection]
    out = []
    for start, end in zip(starts, ends, strict=False):
        mine = [t for t in barges if start <= t < end and not any(a <= t <= b for a, b, _ in interjections)]
        out.append(ReplyScore(Disturbance.NOISE if noisy else Disturbance.SILENCE, bool(mine),
                              any(_stopped(peer, t) for t in mine)))
    for a, b, what in interjections:
        mine = [t for t in barges if a <= t <= b]
        kind = Disturbance.COUGH if what is Interjection.COUGH else Disturbance.BACKCHANNEL
        out.append(ReplyScore(kind, bool(mine), any(_stopped(peer, t) for t in mine)))
    return out


def _stopped(peer: RtpPeer, barge: float) -> bool:
    """The wire agrees the bot stopped: no bot audio from 300 to 500 ms after the logged barge-in."""
    first = int(barge) + STOP_WITHIN
    return not any(peer.bot_active(t) for t in range(first, first + 10))
