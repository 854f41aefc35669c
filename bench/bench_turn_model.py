"""When each turn ends, with silence alone and with the end-of-turn model, on two caller voices.

How it is measured: each line is spoken by espeak-ng (the benchmarks' caller) and by piper,
narrowed to 8 kHz, and fed 20 ms frame by frame to the turn taker with the real silero VAD, on a
virtual clock. With `turn_model: smart_turn` the real model judges each pause; its verdict is
delivered after the inference time it really took on this machine (so a loaded machine shows as
later decisions, never as different verdicts). Two sets: the sample business's 12 questions (when
does the turn end after the question: ms from the last voiced frame), and a caller who stops to
think mid-sentence for 0.9 s (does the turn end in the pause, i.e. does the bot cut in).

    .venv/bin/python bench/bench_turn_model.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sample_business import QUESTIONS, speech  # noqa: E402
from gateway.conversation.end_of_turn import model_input  # noqa: E402
from gateway.conversation.events import TurnEnded, Utterance  # noqa: E402
from gateway.conversation.semantic_turn import SemanticTurnPolicy, Verdict  # noqa: E402
from gateway.conversation.settings import ConversationSettings  # noqa: E402
from gateway.conversation.turn_taker import TurnTaker  # noqa: E402
from gateway.conversation.turns import TurnDetector, TurnPolicy  # noqa: E402
from models.piper import PiperTts  # noqa: E402
from models.registry import resolve_turn_model  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from models.smart_turn import SmartTurn  # noqa: E402
from rtp.jitter import FrameType  # noqa: E402

OPENERS = ["Hi, I was wondering", "So, um, I wanted to ask", "The thing is", "Hello, I have a question about"]
THINK_S = 0.9


class TimedVerdicts:
    """The real model, run at the pause; its answer due after the inference time it took."""

    def __init__(self, model: SmartTurn):
        self.model, self.now = model, 0.0
        self.due: list[tuple[float, Verdict]] = []

    def ask(self, pause: int, utterance: Utterance) -> None:
        start = time.perf_counter()
        probability = self.model.probability(model_input(utterance))
        took = time.perf_counter() - start
        self.due.append((self.now + took, Verdict(pause, probability, None, took)))

    def forget(self) -> None:
        self.due.clear()

    def poll(self) -> Verdict | None:
        if self.due and self.due[0][0] <= self.now:
            return self.due.pop(0)[1]
        return None


def ends(audio: np.ndarray, vad: SileroVad, policy: TurnPolicy, verdicts: TimedVerdicts | None) -> list[TurnEnded]:
    taker = TurnTaker(vad.new_stream(8000), policy, preroll_frames=10)
    out = []
    for i in range(len(audio) // 160):
        now = (i + 1) * 0.02
        if verdicts is not None:
            verdicts.now = now
        out += [s for s in taker.feed(now, audio[i * 160:(i + 1) * 160], FrameType.NORMAL, False)
                if isinstance(s, TurnEnded)]
    return out


def main() -> None:
    tts, vad, model = PiperTts(), SileroVad(), SmartTurn(resolve_turn_model())

    def piper(text: str) -> np.ndarray:
        pcm = np.concatenate([c.pcm for c in tts.synthesize(text)]).astype(np.float32) / 32768
        return (np.clip(soxr.resample(pcm, tts.sample_rate, 8000), -1, 1) * 32767).astype(np.int16)

    settings = ConversationSettings(turn_model="smart_turn")
    silence = np.zeros(8000, dtype=np.int16)

    def run(audio: np.ndarray, semantic: bool) -> list[TurnEnded]:
        if not semantic:
            return ends(audio, vad, TurnDetector(settings.turn), None)
        verdicts = TimedVerdicts(model)
        return ends(audio, vad, SemanticTurnPolicy(settings.turn, settings.semantic_turn, verdicts), verdicts)

    print(__doc__.split("\n\n")[1].replace("\n", " "))
    print("\n| caller voice | turn_model | 12 questions: turn ends after (median ms) | range | ended early / held to "
          "max_wait | thinking pause: bot cut in |\n|---|---|---|---|---|---|")
    for name, say in (("espeak", speech), ("piper", piper)):
        for semantic in (False, True):
            delays, cut_in = [], 0
            for q in QUESTIONS:
                found = run(np.concatenate([silence[:4000], say(q), silence, silence]), semantic)
                delays += [round((e.decided_at - e.at) * 1000) for e in found[-1:]]
            for opener in OPENERS:
                first = say(opener)
                audio = np.concatenate([silence[:4000], first, np.zeros(int(THINK_S * 8000), np.int16),
                                        say(QUESTIONS[4]), silence, silence])
                pause_end = (4000 + len(first)) / 8000 + THINK_S
                cut_in += any(e.decided_at < pause_end for e in run(audio, semantic))
            label = "smart_turn" if semantic else "none"
            held = sum(d >= settings.turn_max_wait_ms - 20 for d in delays)
            print(f"| {name} | {label} | {statistics.median(delays)} | {min(delays)}-{max(delays)} | "
                  f"{sum(d < settings.end_of_turn_ms - 20 for d in delays)} / {held} of {len(delays)} | "
                  f"{cut_in} of {len(OPENERS)} |")


if __name__ == "__main__":
    main()
