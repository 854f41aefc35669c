"""When each turn ends under each `turn_model`, on the listening corpus's voices, offline.

How it is measured: every question, thinking-pause turn and one-word answer of a split
(`bench/listening_spec.py`) in every voice of that split, as the benchmark's caller says it (8 kHz,
-20 dBFS), is fed 20 ms frame by frame to the turn taker with the real silero VAD, on a virtual
clock. At each pause the real smart-turn model hears the turn and the real whisper (the gateway's
STT, default settings) transcribes it, as the gateway does; each answer is delivered after the
compute time it really took (a loaded machine shows as later decisions, never as other verdicts).
No SIP, RTP, LLM or TTS: this isolates the turn decision. A thinking pause is cut into when the
turn ends before the caller goes on.

    .venv/bin/python bench/bench_turn_policy.py [--split tune] [--models none,smart_turn,text,smart_turn+text]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.caller_audio import speech  # noqa: E402
from bench.listening_spec import MID_THOUGHTS, ONE_WORDS, QUESTIONS, VOICES, Split  # noqa: E402
from gateway.conversation.end_of_turn import model_input  # noqa: E402
from gateway.conversation.events import TurnEnded, Utterance  # noqa: E402
from gateway.conversation.semantic_turn import SemanticTurnPolicy, Verdict, Words  # noqa: E402
from gateway.conversation.settings import TURN_MODELS, ConversationSettings  # noqa: E402
from gateway.conversation.text_turn import judge_text  # noqa: E402
from gateway.conversation.turn_taker import TurnTaker  # noqa: E402
from gateway.conversation.turns import TurnDetector, TurnPolicy  # noqa: E402
from models.registry import resolve_turn_model  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from models.smart_turn import SmartTurn  # noqa: E402
from models.whisper import WhisperStt  # noqa: E402
from rtp.jitter import FrameType  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402


class TimedJudges:
    """The real audio model (asked by the policy) and the real transcript's words (at every pause,
    as the controller starts one), each due after the compute time it took."""

    def __init__(self, model: SmartTurn | None, stt: WhisperStt | None):
        self.model, self.stt, self.now = model, stt, 0.0
        self.due: list[tuple[float, Verdict | Words]] = []
        self.asked: list[tuple[float, Verdict | Words]] = []  # (asked at, answer): for --trace

    def ask(self, pause: int, utterance: Utterance) -> None:
        if self.model is None:
            return
        start = time.perf_counter()
        probability = self.model.probability(model_input(utterance))
        took = time.perf_counter() - start
        self.due.append((self.now + took, Verdict(pause, probability, None, took)))
        self.asked.append((self.now, self.due[-1][1]))

    def hear(self, utterance: Utterance) -> None:
        if self.stt is None:
            return
        start = time.perf_counter()
        audio = int16_to_float(resample(np.concatenate(utterance.frames), 8000, 16000))
        text = self.stt.transcribe(audio).text.strip()
        took = time.perf_counter() - start
        self.due.append((self.now + took, Words(utterance.number, utterance.length, judge_text(text), text)))
        self.asked.append((self.now, self.due[-1][1]))

    def forget(self) -> None:
        self.due = [(t, a) for t, a in self.due if isinstance(a, Words)]  # transcripts run on regardless

    def poll(self) -> Verdict | Words | None:
        self.due.sort(key=lambda item: item[0])
        if self.due and self.due[0][0] <= self.now:
            return self.due.pop(0)[1]
        return None


TRACE: list[tuple[float, Verdict | Words]] = []  # every answer of the last turn_ends call (--trace)


def turn_ends(audio: np.ndarray, vad: SileroVad, turn_model: str, model: SmartTurn, stt: WhisperStt) -> list[TurnEnded]:
    settings = ConversationSettings(turn_model=turn_model)
    judges = TimedJudges(model if settings.turn_audio_model else None, stt if settings.turn_text else None)
    TRACE[:] = []
    judges.asked = TRACE
    policy: TurnPolicy
    if turn_model == "none":
        policy = TurnDetector(settings.turn)
    else:
        semantic = SemanticTurnPolicy(settings.turn, settings.semantic_turn, judges)
        on_pause = semantic.on_pause

        def hearing(utterance: Utterance) -> None:
            on_pause(utterance)
            judges.hear(utterance)  # the controller's speculative transcript of the same utterance

        semantic.on_pause = hearing  # type: ignore[method-assign]
        policy = semantic
    taker = TurnTaker(vad.new_stream(8000), policy, preroll_frames=10)
    out = []
    for i in range(len(audio) // 160):
        judges.now = (i + 1) * 0.02
        out += [s for s in taker.feed(judges.now, audio[i * 160:(i + 1) * 160], FrameType.NORMAL, False)
                if isinstance(s, TurnEnded)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=[s.value for s in Split], default="tune")
    parser.add_argument("--models", default=",".join(TURN_MODELS))
    parser.add_argument("--trace", type=Path, help="write every pause's words and P(finished) per turn as JSON lines")
    args = parser.parse_args()
    trace = args.trace.open("w") if args.trace else None

    def traced(kind: str, voice: object, text: str, ends: list[TurnEnded], pause_at: float | None = None) -> None:
        if trace is None:
            return
        answers = [{"asked_at": round(at, 2), "p": a.probability} if isinstance(a, Verdict) else
                   {"asked_at": round(at, 2), "words": a.verdict.value, "transcript": a.transcript} for at, a in TRACE]
        trace.write(json.dumps({"kind": kind, "voice": str(voice), "text": text, "pause_end": pause_at,
                                "ends": [[round(e.at, 2), round(e.decided_at, 2)] for e in ends],
                                "answers": answers}) + "\n")
    split = Split(args.split)
    vad, model, stt = SileroVad(), SmartTurn(resolve_turn_model()), WhisperStt()
    voices = [v for v in VOICES if v.split is split]
    lead = np.zeros(4000, dtype=np.int16)
    tail = np.zeros(16000 + 8000, dtype=np.int16)
    print(f"{len(voices)} voices of the {split.value} split; defaults: end_of_turn_ms 400, "
          f"turn_min_silence_ms 200, turn_max_wait_ms 1500, threshold {ConversationSettings().turn_model_threshold}")
    print("\n| turn_model | questions: decision p50 / p95 ms | ended < 400 ms / held >= 1.5 s "
          "| thinking pauses cut into | one-word answers: decision p50 / p95 ms | held >= 1.5 s |"
          "\n|---|---|---|---|---|---|")
    for turn_model in args.models.split(","):
        questions, ones, cut, pauses = [], [], 0, 0
        for voice in voices:
            for text in QUESTIONS[split]:
                ends = turn_ends(np.concatenate([lead, speech(voice, text), tail]), vad, turn_model, model, stt)
                questions += [round((e.decided_at - e.at) * 1000) for e in ends[-1:]]
                traced("question", voice, text, ends)
            for text in ONE_WORDS[split]:
                ends = turn_ends(np.concatenate([lead, speech(voice, text), tail]), vad, turn_model, model, stt)
                ones += [round((e.decided_at - e.at) * 1000) for e in ends[-1:]]
                traced("one_word", voice, text, ends)
            for head, pause_s, rest in MID_THOUGHTS[split]:
                first = speech(voice, head)
                think = np.zeros(int(pause_s * 8000), np.int16)
                audio = np.concatenate([lead, first, think, speech(voice, rest), tail])
                pause_end = (len(lead) + len(first)) / 8000 + pause_s
                pauses += 1
                ends = turn_ends(audio, vad, turn_model, model, stt)
                cut += any(e.decided_at < pause_end for e in ends)
                traced("thinking", voice, f"{head} ... {rest}", ends, pause_end)

        def pct(values: list[int], q: float) -> str:
            return f"{np.percentile(values, q):.0f}" if values else "-"

        print(f"| {turn_model} | {pct(questions, 50)} / {pct(questions, 95)} | "
              f"{sum(d < 380 for d in questions)} / {sum(d >= 1480 for d in questions)} of {len(questions)} | "
              f"{cut} of {pauses} | {pct(ones, 50)} / {pct(ones, 95)} | "
              f"{sum(d >= 1480 for d in ones)} of {len(ones)} |",
              flush=True)


if __name__ == "__main__":
    main()
