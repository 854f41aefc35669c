"""Turn-taking in background noise, offline: the listening corpus's calls fed to the turn taker.

Why offline: the listening benchmark (`bench_listening.py`) runs the whole gateway for ~10 min; the
turn decisions that make a noisy call deaf or cut the bot short are all taken on the media thread
by the turn taker, which runs here alone on a virtual clock, with the real silero VAD, in ~1 min.

Each call of the chosen split is laid out on a fixed timeline: the bot greets for 3 s over the
background alone; each caller turn (parts and thinking pauses as in the corpus) is followed 0.6 s
later by a 3 s bot answer, with the turn's backchannel or cough 0.6 s into it; at the end the
caller *really* interrupts a bot answer with the next sentence, 1 s into it. Caller audio and
background (at the condition's SNR) are mixed and go through µ-law, as on the wire. The bot's
windows are fixed (the bot here does not react), which is enough to score the detector:

* holds / false barge-ins: HOLD and BARGE_IN over the bot when the caller only coughed,
  backchannelled or said nothing (a hold pauses the bot and it goes on; a barge-in cuts it);
* dead air: a caller turn whose TURN_END does not come within 1.5 s of its last word;
* cut-ins: a TURN_END decided inside a thinking pause;
* noise turns: turns ended that hold no caller speech (the background answered as a turn);
* real interruption: when the bot's audio stops (HOLD) and when the reply is cut (BARGE_IN),
  after the caller's onset.

    .venv/bin/python bench/bench_noise_turns.py [--split tune] [--condition "babble 15 dB"]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_listening import spoken_turns  # noqa: E402
from bench.caller_audio import background  # noqa: E402
from bench.listening_spec import Interjection, Split, TurnKind, plan_calls  # noqa: E402
from gateway.conversation.events import BargedIn, Held, TurnEnded  # noqa: E402
from gateway.conversation.settings import ConversationSettings  # noqa: E402
from gateway.conversation.turn_taker import TurnTaker  # noqa: E402
from gateway.conversation.turns import TurnDetector  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from rtp.g711 import PCMU  # noqa: E402
from rtp.jitter import FrameType  # noqa: E402

RATE, FRAME = 8000, 160
GREETING_S, THINK_S, ANSWER_S, AFTER_S, INTERJECT_S, DEAD_AIR_S = 3.0, 0.6, 3.0, 1.0, 0.6, 1.5


@dataclass
class Layout:
    audio: np.ndarray
    bot: list[tuple[float, float]] = field(default_factory=list)
    turns: list[tuple[float, float, list[tuple[float, float]], TurnKind]] = field(default_factory=list)
    interjections: list[tuple[float, float]] = field(default_factory=list)
    interruption: tuple[float, float] = (0.0, 0.0)


def layout(plan) -> Layout:  # noqa: ANN001 - a CallPlan
    pieces: list[tuple[float, np.ndarray]] = []
    out = Layout(np.zeros(0, np.int16), bot=[(0.0, GREETING_S)])
    t = GREETING_S + 0.5
    for spoken in spoken_turns(plan):
        start, pauses = t, []
        for i, part in enumerate(spoken.parts):
            pieces.append((t, part))
            t += len(part) / RATE
            if i < len(spoken.turn.pauses_s):
                pauses.append((t, t + spoken.turn.pauses_s[i]))
                t += spoken.turn.pauses_s[i]
        out.turns.append((start, t, pauses, spoken.turn.kind))
        bot_start = t + THINK_S
        out.bot.append((bot_start, bot_start + ANSWER_S))
        if spoken.interjection is not None and spoken.turn.interjection in (Interjection.COUGH,
                                                                            Interjection.BACKCHANNEL):
            at = bot_start + INTERJECT_S
            pieces.append((at, spoken.interjection))
            out.interjections.append((at, at + len(spoken.interjection) / RATE))
        t = bot_start + ANSWER_S + AFTER_S
    # a real interruption: the first turn's audio again, 1 s into a bot answer
    out.bot.append((t, t + ANSWER_S))
    first = spoken_turns(plan)[0].parts[-1]
    pieces.append((t + 1.0, first))
    out.interruption = (t + 1.0, t + 1.0 + len(first) / RATE)
    t += ANSWER_S + AFTER_S
    n = int(t * RATE)
    mix = np.zeros(n, np.float64)
    for at, pcm in pieces:
        i = int(at * RATE)
        mix[i:i + len(pcm)] += pcm[: n - i]
    condition = plan.condition
    if condition.snr_db is not None:
        mix += background(condition.background, condition.snr_db, t, plan.split, plan.seed)[:n]
    line = np.clip(np.rint(mix), -32767, 32767).astype(np.int16)
    out.audio = PCMU.decode(PCMU.encode(line))
    return out


@dataclass
class Score:
    name: str
    holds: int = 0
    false_barge_ins: int = 0
    turns: int = 0
    dead_air: int = 0
    cut_ins: int = 0
    pauses: int = 0
    noise_turns: int = 0
    delays: list[float] = field(default_factory=list)
    hold_ms: float | None = None
    barge_ms: float | None = None


def run(plan, vad: SileroVad, settings: ConversationSettings) -> Score:  # noqa: ANN001 - a CallPlan
    lay = layout(plan)
    taker = TurnTaker(vad.new_stream(8000), TurnDetector(settings.turn), settings.preroll_ms // 20,
                      speech_threshold=settings.vad_threshold)
    events: list[tuple[float, object]] = []
    for i in range(len(lay.audio) // FRAME):
        now = round((i + 1) * 0.02, 6)
        bot = any(s <= now < e for s, e in lay.bot)
        events += [(now, e) for e in taker.feed(now, lay.audio[i * FRAME:(i + 1) * FRAME], FrameType.NORMAL, bot)]
    score = Score(plan.condition.name)
    onset, end_i = lay.interruption
    for now, e in events:
        if isinstance(e, Held | BargedIn):
            real = onset - 0.1 <= e.at <= end_i
            if isinstance(e, Held):
                if real:
                    score.hold_ms = score.hold_ms if score.hold_ms is not None else (now - onset) * 1000
                else:
                    score.holds += 1
            elif real:
                score.barge_ms = (now - onset) * 1000
            else:
                score.false_barge_ins += 1
    ends = [(now, e) for now, e in events if isinstance(e, TurnEnded)]
    for _start, end, pauses, _kind in lay.turns:
        score.turns += 1
        score.pauses += len(pauses)
        answered = [now for now, e in ends if end - 0.05 <= now <= end + DEAD_AIR_S]
        if answered:
            score.delays.append((answered[0] - end) * 1000)
        else:
            score.dead_air += 1
        score.cut_ins += sum(any(a < now < b for a, b in pauses) for now, _ in ends)
    caller = [(s, e) for s, e, _, _ in lay.turns] + lay.interjections + [lay.interruption]
    for _now, e in ends:
        spoken = e.at - e.utterance.length * 0.02
        if not any(s - 0.3 <= e.at and spoken <= end + 0.3 for s, end in caller):
            score.noise_turns += 1
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=[s.value for s in Split], default=Split.TUNE.value)
    parser.add_argument("--condition", action="append", help="only these conditions (repeatable)")
    args = parser.parse_args()
    settings = ConversationSettings()
    vad = SileroVad()
    plans = [p for p in plan_calls((Split(args.split),)) if not args.condition or p.condition.name in args.condition]
    print(f"split {args.split}, settings: barge_in_min_ms {settings.barge_in_min_ms}, barge_in_pause_ms "
          f"{settings.barge_in_pause_ms}, end_of_turn_ms {settings.end_of_turn_ms}\n")
    print("| condition | voice | holds (no interruption) | false barge-ins | dead air / turns | cut-ins / pauses | "
          "noise turns | turn end after last word p50 (ms) | real interruption: held / cut after (ms) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    total = Score("all")
    started = time.perf_counter()
    for plan in plans:
        s = run(plan, vad, settings)
        median = round(statistics.median(s.delays)) if s.delays else "-"
        held = "-" if s.hold_ms is None else round(s.hold_ms)
        cut = "-" if s.barge_ms is None else round(s.barge_ms)
        print(f"| {s.name} | {plan.voice.name} | {s.holds} | {s.false_barge_ins} | {s.dead_air} / {s.turns} | "
              f"{s.cut_ins} / {s.pauses} | {s.noise_turns} | {median} | {held} / {cut} |", flush=True)
        for attr in ("holds", "false_barge_ins", "turns", "dead_air", "cut_ins", "pauses", "noise_turns"):
            setattr(total, attr, getattr(total, attr) + getattr(s, attr))
        total.delays += s.delays
    median = round(statistics.median(total.delays)) if total.delays else "-"
    print(f"| **all** | {len(plans)} calls | {total.holds} | {total.false_barge_ins} | "
          f"{total.dead_air} / {total.turns} | {total.cut_ins} / {total.pauses} | {total.noise_turns} | {median} | |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
