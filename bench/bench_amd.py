"""Answering-machine detection over the generated set (amd_spec.py), offline: accuracy and timing.

Each answer's audio (amd_audio.py: µ-law, with its background) goes frame by frame through what the
gateway runs on its media thread for an outbound call: the turn taker (real silero VAD, the line's
levels) and the answer policy (answer_detection.py), on a virtual clock. Scored against the truth
of the spec:

* accuracy both ways: machines called MACHINE, people called HUMAN (UNKNOWN, "nobody spoke yet, the
  bot speaks first", is counted apart: it starts the conversation, as HUMAN does);
* time to verdict after the answer, and for people after the end of their first words: how long
  the person waits for the bot (the greeting then goes out at once, plus ~60 ms on the wire:
  tests/integration/test_amd_call.py measures that);
* for machines, when the message would start: after the beep (within 1 s of its end), or, with
  no beep, after the greeting; never over the greeting.

With the first words' transcript (whisper tiny.en, as the gateway does) unless `--shape-only`.

    .venv/bin/python bench/bench_amd.py [--split held_out|tune|both] [--show] [--shape-only] [--beeps]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.amd_audio import AnswerAudio, render  # noqa: E402
from bench.amd_spec import Who, plan_answers  # noqa: E402
from bench.listening_spec import Split  # noqa: E402
from gateway.conversation.answer_detection import (  # noqa: E402
    AnswerClassified,
    AnswerKind,
    MachineReady,
    ShapeAnswerPolicy,
)
from gateway.conversation.beep import BeepDetector  # noqa: E402
from gateway.conversation.events import Utterance  # noqa: E402
from gateway.conversation.outbound_start import AnswerListener  # noqa: E402
from gateway.conversation.settings import ConversationSettings  # noqa: E402
from gateway.conversation.turn_taker import TurnTaker  # noqa: E402
from gateway.conversation.turns import TurnDetector  # noqa: E402
from gateway.conversation.utterance_audio import utterance_audio16k  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from rtp.jitter import FrameType  # noqa: E402

FRAME, FRAME_S = 160, 0.02
WAIT_LIMIT_S = 1.5  # a person should not wait longer than this after their first words
AFTER_BEEP_S = 1.0  # a message that starts within this of the beep's end is "after the beep"


@dataclass(frozen=True)
class Result:
    audio: AnswerAudio
    verdict: AnswerClassified | None
    ready: MachineReady | None
    policy_us: float  # mean time per frame in the answer policy

    @property
    def correct(self) -> bool:
        kind = self.verdict.kind if self.verdict else None
        return kind is (AnswerKind.MACHINE if self.audio.answer.who is Who.MACHINE else AnswerKind.HUMAN)


class Whisper:
    """The first words' transcript as the gateway asks it (outbound_start.AnswerListener), here run
    at once on this thread; its time is kept (the gateway polls it from the media thread)."""

    def __init__(self) -> None:
        from models.whisper import WhisperStt

        self.stt = WhisperStt()
        self.seconds: list[float] = []
        self.texts: dict[int, str] = {}
        self.current = -1

    def __call__(self, frames: tuple[np.ndarray, ...]) -> Future[str]:
        start = time.perf_counter()
        text = self.stt.transcribe(utterance_audio16k(Utterance(0, frames))).text
        self.seconds.append(time.perf_counter() - start)
        self.texts[self.current] = text
        future: Future[str] = Future()
        future.set_result(text)
        return future


def detect(audio: AnswerAudio, vad: SileroVad, settings: ConversationSettings, words: Whisper | None) -> Result:
    taker = TurnTaker(vad.new_stream(8000), TurnDetector(settings.turn), settings.preroll_ms // 20,
                      speech_threshold=settings.vad_threshold)
    policy = ShapeAnswerPolicy(settings.amd.answer(settings.vad_threshold))
    if words is not None:
        words.current = audio.answer.index
    listener = AnswerListener(policy, True, words)
    verdict = ready = None
    spent = 0.0
    frames = len(audio.pcm) // FRAME
    for i in range(frames):
        now = i * FRAME_S
        pcm = audio.pcm[i * FRAME:(i + 1) * FRAME]
        taker.feed(now, pcm, FrameType.NORMAL, False)
        probability = taker.last_cues.probability if taker.last_cues is not None else 0.0
        start = time.perf_counter()
        heard_s = sum(words.seconds) if words is not None else 0.0
        signals = listener.feed(now, pcm, probability)
        spent += time.perf_counter() - start - ((sum(words.seconds) - heard_s) if words is not None else 0.0)
        for signal in signals:
            if isinstance(signal, AnswerClassified):
                verdict = signal
            else:
                ready = signal
        if policy.done:
            break
    return Result(audio, verdict, ready, spent / max(1, i + 1) * 1e6)


def describe(r: Result) -> str:
    a, v = r.audio, r.verdict
    kind = v.kind.value if v else "-"
    at = f"{v.at:5.2f}s ({v.reason})" if v else "-"
    extra = ""
    if a.answer.who is Who.HUMAN and v is not None:
        extra = f" wait {v.at - a.first_words_end:+.2f}s after words end {a.first_words_end:.2f}s"
    if r.ready is not None:
        beep = f" beep {a.beep_at:.2f}-{a.beep_end:.2f}s" if a.beep_at is not None else " no beep"
        extra = f" ready {r.ready.at:.2f}s ({r.ready.why.value}) speech end {a.speech_end:.2f}s{beep}"
    noise = a.answer.background.value + (f" {a.answer.snr_db:g} dB" if a.answer.snr_db else "")
    return (f"#{a.answer.index:3d} {a.answer.who.value:7s} -> {kind:7s} at {at:22s} {a.answer.voice.name:22s} "
            f"{noise:14s} {a.answer.text[:60]!r}{extra}")


def pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f} %)" if whole else "0/0"


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"median {statistics.median(values) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms"


def report(split: Split, results: list[Result]) -> None:
    machines = [r for r in results if r.audio.answer.who is Who.MACHINE]
    people = [r for r in results if r.audio.answer.who is Who.HUMAN]
    unknown = [r for r in people if r.verdict and r.verdict.kind is AnswerKind.UNKNOWN]
    waits = [r.verdict.at - r.audio.first_words_end for r in people if r.verdict and r.correct]
    from_onset = [r.verdict.at - r.audio.first_words_at for r in people if r.verdict and r.correct]
    beeped = [r for r in machines if r.correct and r.audio.beep_end is not None]
    after_beep = [r for r in beeped if r.ready and 0 <= r.ready.at - r.audio.beep_end <= AFTER_BEEP_S]
    over = [r for r in machines if r.correct and r.ready and r.ready.at < r.audio.speech_end]
    no_beep = [r for r in machines if r.correct and r.audio.beep_end is None]
    no_beep_after = [r for r in no_beep if r.ready and r.ready.at >= r.audio.speech_end]
    print(f"\n== {split.value}: {len(machines)} machines, {len(people)} people")
    print(f"machines called MACHINE: {pct(sum(r.correct for r in machines), len(machines))}")
    print(f"people called HUMAN:     {pct(sum(r.correct for r in people), len(people))}"
          f" (UNKNOWN, the bot speaks first: {len(unknown)})")
    print(f"verdict on machines after the answer: {ms([r.verdict.at for r in machines if r.correct])}")
    print(f"verdict on people after the answer:   {ms([r.verdict.at for r in people if r.correct])}")
    print(f"  after their first words' onset:      {ms(from_onset)}")
    print(f"  after their first words' end (wait): {ms(waits)}")
    print(f"people who wait > {WAIT_LIMIT_S} s after their first words: "
          f"{pct(sum(w > WAIT_LIMIT_S for w in waits) + len(people) - len(waits), len(people))}")
    print(f"people decided > {WAIT_LIMIT_S} s after their first words' onset: "
          f"{pct(sum(w > WAIT_LIMIT_S for w in from_onset) + len(people) - len(from_onset), len(people))}")
    print(f"message after the beep (within {AFTER_BEEP_S:g} s of its end): {pct(len(after_beep), len(beeped))}")
    print(f"message after the greeting, no beep: {pct(len(no_beep_after), len(no_beep))}")
    print(f"message over the greeting: {len(over)}")
    print(f"answer policy per frame (beep detector included, transcript not): "
          f"{statistics.mean(r.policy_us for r in results):.0f} µs")


def beeps_only(answers: list) -> None:  # noqa: ANN001 - Answer
    """The beep detector alone over the set (no model, seconds): every beep found at its time and
    frequency, and no tone found in anybody's words (a carrier's information tones aside)."""
    found, beeps, in_words = 0, 0, []
    for answer in answers:
        audio = render(answer)
        detector = BeepDetector()
        tones = [t for i in range(len(audio.pcm) // FRAME)
                 if (t := detector.feed(i * FRAME_S, audio.pcm[i * FRAME:(i + 1) * FRAME])) is not None]
        if audio.beep_at is not None:
            beeps += 1
            found += any(abs(t.started_at - audio.beep_at) < 0.15 and abs(t.ended_at - audio.beep_end) < 0.1
                         and abs(t.frequency_hz - answer.beep.frequency_hz) <= 20 for t in tones)
        in_words += [(answer.index, t) for t in tones if audio.first_words_at - 0.05 < t.started_at < audio.speech_end]
    print(f"beeps found at their time and frequency: {pct(found, beeps)}; tones found in words: {len(in_words)}")
    for index, tone in in_words:
        print(f"  #{index}: {tone}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("held_out", "tune", "both"), default="held_out")
    parser.add_argument("--show", action="store_true", help="one line per answer (else only the misses)")
    parser.add_argument("--shape-only", action="store_true", help="without the first words' transcript (whisper)")
    parser.add_argument("--beeps", action="store_true", help="only the beep detector (no model, seconds)")
    args = parser.parse_args()
    splits = (Split.TUNE, Split.HELD_OUT) if args.split == "both" else (Split(args.split),)
    if args.beeps:
        for split in splits:
            print(f"== {split.value}")
            beeps_only(plan_answers((split,)))
        return
    settings = ConversationSettings()
    vad = SileroVad()
    words = None if args.shape_only else Whisper()
    for split in splits:
        results = [detect(render(a), vad, settings, words) for a in plan_answers((split,))]
        for r in results:
            if args.show or not r.correct:
                heard = words.texts.get(r.audio.answer.index) if words is not None else None
                print(describe(r) + (f" heard {heard!r}" if heard is not None else ""))
        report(split, results)
        if words is not None and words.seconds:
            print(f"first words' transcripts: {len(words.seconds)}, {ms(words.seconds)} (whisper tiny.en, 2 threads)")
            words.seconds.clear()
            words.texts.clear()


if __name__ == "__main__":
    main()
