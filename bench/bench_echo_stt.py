"""Does the echo canceller help what the STT hears while the bot talks? Prints markdown.

Why: the conversation agent feeds the STT the echo-cancelled line while the bot talks, and only
because of these figures (docs/architecture.md, "Echo"). Scenarios are `bench_echo.py`'s (G.711
both ways, 60/200 ms, -10/-20 dB echo, a caller talking over the bot for 3 s). For each, whisper
(the gateway's pinned tiny.en) transcribes the double talk raw and echo-cancelled; the word error
rate is against its own transcript of the caller alone through the same line, so it measures
what the echo costs, not whisper's own errors. Also counted: frames silero calls speech in 4 s of
the bot's echo alone (the echo guard, not the canceller, keeps those from the turn-taking).

Usage: ``.venv/bin/python bench/bench_echo_stt.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.wer import word_errors  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from models.whisper import WhisperStt  # noqa: E402
from rtp.echo import create_echo_canceller  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402
from tests.unit.test_echo import T_DT, build_scenario, run_canceller  # noqa: E402

SCENARIOS = [(60, -10.0), (60, -20.0), (200, -10.0), (200, -20.0)]


def main() -> None:
    stt, vad = WhisperStt(), SileroVad()

    def transcribe(pcm: np.ndarray) -> str:
        return stt.transcribe(int16_to_float(resample(pcm, 8000, 16000))).text.strip()

    def speech_frames(pcm: np.ndarray) -> int:
        stream = vad.new_stream(8000)
        return sum(stream.process(pcm[i:i + 160]) >= 0.5 for i in range(0, len(pcm) - 159, 160))

    print("| scenario | WER raw | WER echo-cancelled | VAD speech frames in 4 s of echo: raw / cancelled |")
    print("|---|---:|---:|---:|")
    for delay_ms, atten_db in SCENARIOS:
        sc = build_scenario(delay_ms, atten_db)
        cleaned, _ = run_canceller(create_echo_canceller(8000), sc)
        dt, echo_only = sc.span(*T_DT), sc.span(2.0, 6.0)
        reference = transcribe(sc.caller[dt])
        raw, aec = transcribe(sc.mic[dt]), transcribe(cleaned[dt])
        print(f"| {delay_ms} ms / {atten_db:g} dB | {word_errors(reference, raw).rate:.2f} "
              f"| {word_errors(reference, aec).rate:.2f} | {speech_frames(sc.mic[echo_only])} / "
              f"{speech_frames(cleaned[echo_only])} |", flush=True)


if __name__ == "__main__":
    main()
