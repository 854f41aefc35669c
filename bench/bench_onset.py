"""Where the transcribed utterance starts, and what whisper hears of it (issue 12), offline.

The gateway keeps `preroll_ms` of the line before a turn's speech onset for the STT. That preroll
used to be counted back from the event that reports the onset, which the turn policy fires
`min_speech_ms` after it (and the VAD lags a word's start besides): on the listening corpus the
utterance then began only 20-80 ms before the speech, and whisper tiny.en turns a clipped start
into other words ("What time does the kitchen close?" with 50 ms gone: "But I'm not making it in
close."). It is now counted back from the onset itself (`turn_taker.py`), and reaches further back where the
caller's sound does (`onset_reach_back_ms`: a short first word the onset missed).

This compares the three on every speech turn of the listening corpus (`bench_stt.corpus`: the split's
voices, backgrounds, codecs and loss, with 1.5 s of the line before the speech): the real VAD and
the VAD turn policy find the onset on the same audio, each rule cuts the utterance there, the
gateway's Stt (tiny.en, beam 2, the sample agent's vocabulary prompt) transcribes from each start
to 0.4 s after the speech. Deterministic: no call timing in it, so one run compares them.

    flock /work/heavy.lock .venv/bin/python bench/bench_onset.py --split held_out
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench.bench_stt as stt_bench  # noqa: E402
from bench.listening_spec import Split  # noqa: E402
from bench.wer import NO_ERRORS, word_errors  # noqa: E402
from gateway.conversation.events import Paused, SpeechStarted, TurnEnded  # noqa: E402
from gateway.conversation.settings import ConversationSettings  # noqa: E402
from gateway.conversation.turn_taker import TurnTaker  # noqa: E402
from gateway.conversation.turns import TurnDetector  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from models.whisper import WhisperStt  # noqa: E402
from rtp.jitter import FrameType  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402

LINE_BEFORE_S = 1.5  # of the condition's line before the speech: room for any preroll
TRAIL_S = 0.4  # after the speech, as a turn ended on `end_of_turn_ms` holds
FRAME, FRAME_S, RATE = 160, 0.02, 8000
RULES = ("from the event", "from the onset", "reaching back over the caller's sound")


def starts(pcm: np.ndarray, settings: ConversationSettings, vad: SileroVad) -> dict[str, int] | None:
    """The first frame of the utterance under each rule, or None if no turn started. From the onset:
    where the gateway's TurnTaker starts the utterance it hands on at the first pause or turn end,
    without reaching back (`onset_reach_back_ms` 0); from the event: `preroll_ms` before the tick
    that told SpeechStarted (the rule it replaced); reaching back: the TurnTaker as configured."""
    plain = utterance_start(pcm, settings, vad, reach_back_ms=0)
    reaching = utterance_start(pcm, settings, vad, reach_back_ms=settings.onset_reach_back_ms)
    if plain is None or reaching is None:
        return None
    (told, first), (_, reached) = plain, reaching
    return {RULES[0]: told, RULES[1]: first, RULES[2]: reached}


def utterance_start(pcm: np.ndarray, settings: ConversationSettings, vad: SileroVad,
                    reach_back_ms: int) -> tuple[int, int] | None:
    """(`preroll_ms` before the tick that told SpeechStarted, the TurnTaker's first frame)."""
    taker = TurnTaker(vad.new_stream(RATE), TurnDetector(settings.turn), settings.preroll_ms // 20,
                      speech_threshold=settings.vad_threshold, reach_back_frames=reach_back_ms // 20)
    told = None
    for i in range(len(pcm) // FRAME):
        for signal in taker.feed(i * FRAME_S, pcm[i * FRAME : (i + 1) * FRAME], FrameType.NORMAL, False):
            if isinstance(signal, SpeechStarted):
                told = i
            elif isinstance(signal, Paused | TurnEnded) and told is not None:
                return max(0, told + 1 - taker.preroll_frames), i + 1 - signal.utterance.length
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=[s.value for s in Split], default=Split.HELD_OUT.value)
    ap.add_argument("--show", action="store_true", help="print the turns the two rules hear differently")
    args = ap.parse_args()
    stt_bench.PREROLL_S, stt_bench.TRAIL_S = LINE_BEFORE_S, TRAIL_S
    items = [it for it in stt_bench.corpus((Split(args.split),), quick=False) if it.kind not in stt_bench.NOT_SPEECH
             and it.condition != stt_bench.TERMS]
    settings, vad, stt = ConversationSettings(), SileroVad(), WhisperStt()
    prompt = stt_bench.prompt_for("vocabulary")
    errors = dict.fromkeys(RULES, NO_ERRORS)
    leads: dict[str, list[float]] = {rule: [] for rule in RULES}
    missed = 0
    for item in items:
        found = starts(item.pcm, settings, vad)
        if found is None:
            missed += 1
            continue
        heard = {}
        for rule, first in found.items():
            audio = item.pcm[first * FRAME :]
            heard[rule] = stt.transcribe(int16_to_float(resample(audio, RATE, 16000)), prompt=prompt).text
            errors[rule] = errors[rule] + word_errors(item.reference, heard[rule])
            leads[rule].append(LINE_BEFORE_S - first * FRAME_S)
        if args.show and len(set(heard.values())) > 1:
            print(f"{item.condition}: {item.reference!r}\n  " + "\n  ".join(f"{r}: {h!r}" for r, h in heard.items()))
    print(f"{args.split}: {len(items) - missed} speech turns ({missed} never started a turn)")
    print("| preroll counted | WER (errors / words) | line kept before the speech p10 / p50 (ms) |")
    print("|---|---:|---:|")
    for rule in RULES:
        p10, p50 = np.percentile(leads[rule], [10, 50]) * 1000
        e = errors[rule]
        print(f"| {rule} | {100 * e.rate:.1f}% ({e.errors} / {e.reference_words}) | {p10:.0f} / {p50:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
