"""What does G.722 buy the speech recognizer? The same caller turns through µ-law and through G.722.

Offline, the gateway's own code paths: each sentence of the listening corpus (bench/listening_spec.py,
one split) is spoken by each of that split's voices with espeak-ng at 16 kHz (-20 dBFS active speech,
as the corpus), then
- µ-law: cut to 8 kHz (rtp/resample.py, as a narrowband phone does), PCMU encoded and decoded, raised
  back to 16 kHz for whisper exactly as the gateway does on a G.711 call (utterance_audio.py);
- G.722: encoded and decoded 20 ms at a time with one encoder/decoder state (rtp/g722codec.py), handed
  to whisper at 16 kHz as the gateway does on a G.722 call;
- Opus (rtp/opuscodec.py, 24 kbit/s, FEC on): encoded 20 ms at a time and played out of the session's
  jitter buffer, which decodes it at play-out; once with every packet, once with 6.25 % of them lost
  (one in 20, every fourth time a pair), rebuilt by Opus's FEC and PLC, as on an Opus call;
and the gateway's pinned whisper (default config) transcribes each. Word error rate (bench/wer.py)
per voice and per kind of turn, against the reference text. No network, no jitter: the codec alone.

Usage: ``.venv/bin/python bench/bench_wideband_stt.py --split tune`` (the tuning split; held_out is
for the lead's final figures). Prints markdown.
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

from bench.caller_audio import SPEECH_DBFS, active_dbfs  # noqa: E402
from bench.listening_spec import MID_THOUGHTS, ONE_WORDS, QUESTIONS, VOICES, Engine, Split, TurnKind  # noqa: E402
from bench.wer import NO_ERRORS, word_errors  # noqa: E402
from gateway.conversation.events import Utterance  # noqa: E402
from gateway.conversation.utterance_audio import utterance_audio16k  # noqa: E402
from models.whisper import WhisperStt  # noqa: E402
from rtp.g711 import PCMU  # noqa: E402
from rtp.g722codec import G722  # noqa: E402
from rtp.jitter import FrameType, JitterBuffer  # noqa: E402
from rtp.opuscodec import OPUS  # noqa: E402
from rtp.resample import float_to_int16, resample  # noqa: E402
from tests.rig.audio import make_speech_wav, read_wav  # noqa: E402


def sentences(split: Split) -> list[tuple[TurnKind, str]]:
    out = [(TurnKind.QUESTION, q) for q in QUESTIONS[split]]
    out += [(TurnKind.MID_THOUGHT, f"{head} {rest}") for head, _, rest in MID_THOUGHTS[split]]
    return out + [(TurnKind.ONE_WORD, w) for w in ONE_WORDS[split]]


def speak16k(voice_name: str, speed: float, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_speech_wav(text, Path(tmp) / "s.wav", rate=16000, pad_before_s=0.2, pad_after_s=0.3,
                               voice=voice_name, words_per_minute=int(speed))
        samples, rate = read_wav(path)
    assert rate == 16000
    samples = samples * 10 ** ((SPEECH_DBFS - active_dbfs(samples)) / 20)
    return float_to_int16(samples.astype(np.float32))[0]


def frames(pcm: np.ndarray, n: int) -> list[np.ndarray]:
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % n, dtype=np.int16)])
    return [pcm[i:i + n] for i in range(0, len(pcm), n)]


def through_ulaw(pcm16k: np.ndarray) -> np.ndarray:
    narrow = resample(pcm16k, 16000, 8000)
    line = [PCMU.decode(PCMU.encode(f)) for f in frames(narrow, 160)]
    return utterance_audio16k(Utterance(1, tuple(line)))


def through_g722(pcm16k: np.ndarray) -> np.ndarray:
    encoder, decoder = G722.encoder(), G722.decoder()
    wide = [decoder.decode(encoder.encode(f)) for f in frames(pcm16k, 320)]
    narrow = [np.zeros(160, dtype=np.int16) for _ in wide]  # the 8 kHz copy is not what whisper hears
    return utterance_audio16k(Utterance(1, tuple(narrow), tuple(wide)))


def lost_packets(count: int) -> set[int]:
    """Deterministic losses: packet 10 of every 20, and every fourth time its successor too (a pair):
    6.25 % of the packets, the kind of loss Opus's FEC (one frame back) is made for."""
    lost = set()
    for block, i in enumerate(range(10, count, 20)):
        lost.add(i)
        if block % 4 == 3 and i + 1 < count:
            lost.add(i + 1)
    return lost


def through_opus(pcm16k: np.ndarray, lossy: bool = False) -> np.ndarray:
    encoder = OPUS.encoder()
    packets = [encoder.encode(f) for f in frames(pcm16k, 320)]
    lost = lost_packets(len(packets)) if lossy else set()
    jb = JitterBuffer(clock_rate=16000, frame_ms=20, min_delay_ms=40, max_delay_ms=200, timestamp_rate=48000,
                      playout_decoder=OPUS.decoder())
    wide = []
    for i in range(len(packets) + 6):
        if i < len(packets) and i not in lost:
            jb.put_encoded(i, 960 * i, packets[i], arrival_s=0.02 * i)
        frame = jb.get()
        if frame.type is not FrameType.EMPTY or wide:
            wide.append(frame.pcm)
    narrow = [np.zeros(160, dtype=np.int16) for _ in wide]
    return utterance_audio16k(Utterance(1, tuple(narrow), tuple(wide)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=[s.value for s in Split], default=Split.TUNE.value)
    args = parser.parse_args()
    split = Split(args.split)
    stt = WhisperStt()
    voices = [v for v in VOICES if v.split is split and v.engine is Engine.ESPEAK]
    lines = {"µ-law (8 kHz)": through_ulaw, "G.722 (16 kHz)": through_g722, "Opus (16 kHz)": through_opus,
             "Opus, 6 % lost": lambda pcm: through_opus(pcm, lossy=True)}
    totals = {name: NO_ERRORS for name in lines}
    by_voice: dict[tuple[str, str], object] = {}
    by_kind: dict[tuple[str, TurnKind], object] = {}
    examples: list[str] = []
    started = time.monotonic()
    for voice in voices:
        for kind, text in sentences(split):
            pcm = speak16k(voice.name, voice.speed, text)
            heard = {}
            for name, line in lines.items():
                hypothesis = stt.transcribe(line(pcm)).text.strip()
                errors = word_errors(text, hypothesis)
                heard[name] = (hypothesis, errors)
                totals[name] = totals[name] + errors
                by_voice[(voice.name, name)] = by_voice.get((voice.name, name), NO_ERRORS) + errors
                by_kind[(name, kind)] = by_kind.get((name, kind), NO_ERRORS) + errors
            if len({errors.rate for _, errors in heard.values()}) > 1 and len(examples) < 12:
                examples.append(f"| {voice.name} | {text} | " + " | ".join(h for h, _ in heard.values()) + " |")
    names = list(lines)
    print(f"Split `{split.value}`: {len(voices)} voices x {len(sentences(split))} sentences, "
          f"the pinned whisper (default config), {time.monotonic() - started:.0f} s\n")
    print("| voice | " + " | ".join(f"WER {n}" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for voice in voices:
        print(f"| {voice.name} ({voice.speed:g} wpm) | "
              + " | ".join(f"{by_voice[(voice.name, n)].rate:.1%}" for n in names) + " |")
    print("| **all** | " + " | ".join(f"**{totals[n].rate:.1%}**" for n in names) + " |")
    print()
    print("| kind | " + " | ".join(f"WER {n}" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for kind in TurnKind:
        print(f"| {kind.value} | " + " | ".join(f"{by_kind[(n, kind)].rate:.1%}" for n in names) + " |")
    print("\nSome turns heard differently:\n\n| voice | said | " + " | ".join(f"{n} heard" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    print("\n".join(examples))


if __name__ == "__main__":
    main()
