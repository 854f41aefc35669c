"""What the `stt.engine: openai` path costs against the in-process engine, with the same weights. Prints markdown.

Why: a site points its gateways at a transcription server (`models.stt.engine: openai`) to run a
larger Whisper on a GPU box. Here both engines run tiny.en on this machine's 2 cores, so the
difference is the engine path itself: the HTTP round trip with a WAV upload, and the server's own
decoding (faster-whisper-server runs faster-whisper's 30 s-window pipeline, where WhisperStt pads
only 10 s; models/whisper.py). It says what a remote Whisper must beat, not how fast a GPU is.

Utterances: the listening corpus's caller turns (bench/listening_spec.py, one split: questions,
mid-thought turns with their pause, one-word answers) in every voice of the split, through a clean
G.711 µ-law line, upsampled to 16 kHz as the gateway does. Word error rate is pooled (bench/wer.py);
latency is per transcription, wall clock at the caller of `Stt.transcribe`.

Usage: ``.venv/bin/python bench/bench_openai_stt.py --split tune`` (starts and stops the server itself)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.caller_audio import speech  # noqa: E402
from bench.listening_spec import MID_THOUGHTS, ONE_WORDS, QUESTIONS, VOICES, Split  # noqa: E402
from bench.wer import NO_ERRORS, word_errors  # noqa: E402
from models.base import Stt  # noqa: E402
from models.openai_stt import OpenAiStt, OpenAiSttConfig  # noqa: E402
from models.whisper import WhisperStt  # noqa: E402
from rtp.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402
from tests.rig.stt_server import SttServer  # noqa: E402


def utterances(split: Split) -> list[tuple[str, np.ndarray]]:
    """(reference, 16 kHz float32 audio as the gateway hands it to the STT) for every turn and voice."""
    out = []
    for voice in (v for v in VOICES if v.split is split):
        turns: list[tuple[str, np.ndarray]] = [(q, speech(voice, q)) for q in QUESTIONS[split]]
        turns += [(w, speech(voice, w)) for w in ONE_WORDS[split]]
        for head, pause, rest in MID_THOUGHTS[split]:
            audio = np.concatenate([speech(voice, head), np.zeros(int(pause * 8000), np.int16), speech(voice, rest)])
            turns.append((f"{head} {rest}", audio))
        for reference, pcm8k in turns:
            line = ulaw_decode(ulaw_encode(pcm8k))
            out.append((reference, int16_to_float(resample(line, 8000, 16000))))
    return out


def measure(stt: Stt, corpus: list[tuple[str, np.ndarray]]) -> tuple[float, list[float]]:
    stt.transcribe(corpus[0][1])  # warm
    errors, seconds = NO_ERRORS, []
    for reference, audio in corpus:
        start = time.perf_counter()
        text = stt.transcribe(audio).text
        seconds.append(time.perf_counter() - start)
        errors = errors + word_errors(reference, text)
    return errors.rate, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=[s.value for s in Split], default=Split.TUNE.value)
    args = parser.parse_args()
    corpus = utterances(Split(args.split))
    seconds_audio = sum(len(a) for _, a in corpus) / 16000
    rows = []
    local = WhisperStt()
    rows.append(("local (WhisperStt, short window)", *measure(local, corpus)))
    local.close()
    with tempfile.TemporaryDirectory() as tmp, SttServer(Path(tmp)) as server:
        remote = OpenAiStt(OpenAiSttConfig(base_url=server.base_url))
        rows.append(("openai (faster-whisper-server, verbose_json)", *measure(remote, corpus)))
    print(f"{len(corpus)} utterances ({seconds_audio:.0f} s of speech), split {args.split}, tiny.en int8, 2 threads\n")
    print("| engine | WER | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|---|")
    for name, wer, seconds in rows:
        ms = np.array(seconds) * 1000
        print(f"| {name} | {wer * 100:.1f} % | {np.percentile(ms, 50):.0f} | {np.percentile(ms, 95):.0f} "
              f"| {ms.mean():.0f} |")


if __name__ == "__main__":
    main()
