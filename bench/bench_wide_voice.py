"""What the caller on a G.722 call hears of the bot's voice: before (22.05 -> 8 -> 16 kHz) and after (22.05 -> 16 kHz).

Offline, through the gateway's own code: each bot sentence is synthesized by the pinned piper voice
and brought to the line as a reply's clause is (speech.py: `synthesize_line_audio` with its wideband
copy, `trim_silence` as speak.py does), cut into the playout's 20 ms frames (bot_audio.py), then sent
as an RTP session on a G.722 call sends them (rtp/wideband.py `WidebandLine.to_send`, G.722 encoded
and decoded 20 ms at a time with one state each; and the same on an Opus call, rtp/opuscodec.py):
- before: only the 8 kHz frames, raised to 16 kHz by the session's bridge, as the gateway did;
- after: the frames' own 16 kHz copy, resampled once from piper's 22.05 kHz.
Measured on the decoded 16 kHz the caller hears: the share of the voice's energy at 4-7 kHz (and at
3.4-4 kHz), its delay against the clause's own 16 kHz audio (cross-correlation peak), and what the
pinned whisper tiny.en (default config) hears of it (WER against the sentence; a µ-law line, 8 kHz
raised to 16 kHz as on a G.711 call, for scale). No network, no jitter: the line's sending end alone.

Usage: ``flock /work/heavy.lock .venv/bin/python bench/bench_wide_voice.py`` (about a minute). Prints markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.wer import NO_ERRORS, word_errors  # noqa: E402
from gateway.conversation.bot_audio import BotAudio  # noqa: E402
from gateway.conversation.speech import clause_pause_ms, synthesize_line_audio, trim_silence  # noqa: E402
from models.piper import PiperTts  # noqa: E402
from models.whisper import WhisperStt  # noqa: E402
from rtp.codec import AudioCodec  # noqa: E402
from rtp.g711 import PCMU  # noqa: E402
from rtp.g722codec import G722  # noqa: E402
from rtp.opuscodec import OPUS  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402
from rtp.wideband import WidebandLine  # noqa: E402
from tests.rig.audio import active_audio, band_share, best_correlation  # noqa: E402

SENTENCES = [
    "Harbor Dental, this is the front desk. How can I help?",
    "We are open Monday to Friday, from eight in the morning to five in the afternoon.",
    "We are closed on weekends.",
    "Our address is twelve Harbor Street, next to the ferry terminal.",
    "A cleaning costs ninety five dollars.",
    "Parking is free, behind the building.",
    "Doctor Patel sees emergency patients the same day.",
    "Please bring your insurance card and a photo ID.",
    "I'm sorry, I don't have that information. I can take a message, or transfer you to someone who can help.",
    "Sorry, I didn't catch that, could you say it again?",
    "One moment, please.",
    "Transferring you to the billing office now.",
    "I have taken your message. Someone will get back to you soon.",
    "Are you still there?",
    "Thank you for calling. Goodbye!",
    "Yes, we accept most insurance plans, including Delta and Cigna.",
    "Your appointment is on Thursday at three thirty.",
    "Whitening takes about an hour and costs three hundred and fifty dollars.",
]


def on_g722(audio: BotAudio, wideband: bool, codec: AudioCodec = G722) -> np.ndarray:
    """The decoded 16 kHz the caller hears when the session is handed `audio`'s frames (G.722, or Opus)."""
    line, encoder, decoder = WidebandLine(16000), codec.encoder(), codec.decoder()
    frames = audio.frames() + BotAudio(np.zeros(800, np.int16)).frames()  # and 100 ms of silence after
    return np.concatenate([decoder.decode(encoder.encode(line.to_send(f.pcm, f.wideband if wideband else None)))
                           for f in frames])


def on_ulaw(audio: BotAudio) -> np.ndarray:
    narrow = np.concatenate([PCMU.decode(PCMU.encode(f.pcm)) for f in audio.frames()])
    return resample(narrow, 8000, 16000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    args = parser.parse_args()
    tts, stt = PiperTts(), WhisperStt()
    started = time.monotonic()
    lines = ("before: 8 kHz raised", "after: own 16 kHz", "Opus: own 16 kHz", "µ-law (for scale)")
    high = {n: [] for n in lines}
    edge = {n: [] for n in lines}
    lags = {n: [] for n in lines[:3]}
    errors = dict.fromkeys(lines, NO_ERRORS)
    examples = []
    synth_ms = []
    for text in SENTENCES[: args.sentences]:
        t = time.perf_counter()
        audio = trim_silence(synthesize_line_audio(tts, text, wideband=True), 5.0, clause_pause_ms(text))
        synth_ms.append(1000 * (time.perf_counter() - t))
        heard_pcm = {lines[0]: on_g722(audio, False), lines[1]: on_g722(audio, True),
                     lines[2]: on_g722(audio, True, OPUS), lines[3]: on_ulaw(audio)}
        heard_text = {}
        for name, pcm in heard_pcm.items():
            voice = active_audio(pcm, 16000)
            high[name].append(band_share(voice, 16000, 4000, 7000))
            edge[name].append(band_share(voice, 16000, 3400, 4000))
            if name in lags:
                lags[name].append(1000 * best_correlation(audio.wideband, pcm, 16000, max_lag_s=0.1)[1])
            hypothesis = stt.transcribe(int16_to_float(pcm)).text.strip()
            heard_text[name] = hypothesis
            errors[name] = errors[name] + word_errors(text, hypothesis)
        if len(set(heard_text.values())) > 1 and len(examples) < 8:
            examples.append(f"| {text} | " + " | ".join(heard_text.values()) + " |")
    n = len(synth_ms)
    print(f"{n} bot sentences, piper ({tts.sample_rate} Hz) -> line, G.722 / Opus encode/decode, whisper tiny.en; "
          f"{time.monotonic() - started:.0f} s\n")
    print("| caller hears | energy at 4-7 kHz (median / min) | at 3.4-4 kHz (median) | delay (ms, median) "
          "| WER |")
    print("|---|---:|---:|---:|---:|")
    for name in lines:
        lag = f"{np.median(lags[name]):.1f}" if name in lags else "-"
        print(f"| {name} | {100 * np.median(high[name]):.2f} % / {100 * min(high[name]):.2f} % "
              f"| {100 * np.median(edge[name]):.2f} % | {lag} | {errors[name].rate:.1%} |")
    print(f"\nsynthesis + both resamples + trim per sentence: median {np.median(synth_ms):.0f} ms")
    print("\nHeard differently:\n\n| said | " + " | ".join(lines) + " |\n|---|" + "---|" * len(lines))
    print("\n".join(examples))


if __name__ == "__main__":
    main()
