"""Does a noise suppressor in front of the VAD help? RNNoise vs WebRTC NS vs none, offline.

Issue 12 asks to compare RNNoise (PyPI `pyrnnoise`, 48 kHz: resampled) and WebRTC's noise
suppression (the APM in `aec-audio-processing`, already used for echo) in front of VAD/STT, and
keep one only if it measurably helps. This measures what each does to silero VAD on the tune
split's noisy calls (the layout of `bench_noise_turns.py`: caller turns over babble, pink noise
and hum at 20/15/10 dB SNR, through µ-law):

* false speech: share of frames with no caller (background only) that silero calls speech (>= 0.5);
* speech kept: share of the caller's active frames (above -40 dBFS in the clean caller track) that
  it still calls speech;
* cost: µs per 20 ms frame on this machine (the media thread's budget: well under 1 ms per call).

RNNoise is loaded from the wheel's own `librnnoise.so` through ctypes (the package's Python
wrapper imports audio-file libraries the gateway does not need); pass the unpacked wheel's
`pyrnnoise` folder with `--rnnoise-dir`, or it is skipped.

    .venv/bin/python bench/bench_noise_suppression.py [--rnnoise-dir DIR] [--snr 15]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_listening import spoken_turns  # noqa: E402
from bench.bench_noise_turns import FRAME, RATE, layout  # noqa: E402
from bench.listening_spec import Background, Split, plan_calls  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from rtp.resample import StreamResampler  # noqa: E402


class WebRtcNs:
    name = "WebRTC NS"

    def __init__(self) -> None:
        from aec_audio_processing import AudioProcessor

        self.apm = AudioProcessor(enable_aec=False, enable_ns=True, enable_agc=False, enable_vad=False)
        self.apm.set_stream_format(RATE, 1)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        half = FRAME // 2
        out = [np.frombuffer(self.apm.process_stream(pcm[i:i + half].tobytes()), np.int16) for i in (0, half)]
        return np.concatenate(out)


class RnNoise:
    name = "RNNoise"

    def __init__(self, folder: Path):
        lib = ctypes.CDLL(str(folder / "librnnoise.so"))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float)]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        self.lib, self.state = lib, lib.rnnoise_create(None)
        self.up, self.down = StreamResampler(RATE, 48000), StreamResampler(48000, RATE)
        self.pending = np.zeros(0, np.float32)
        self.ready = np.zeros(FRAME, np.int16)  # one frame of delay: the resamplers' output comes in uneven pieces

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = np.concatenate([self.pending, self.up.process(pcm).astype(np.float32)])
        out = []
        while len(x) >= 480:  # RNNoise's 10 ms frame at 48 kHz, samples at int16 scale
            frame = np.ascontiguousarray(x[:480], np.float32)
            result = np.zeros(480, np.float32)
            self.lib.rnnoise_process_frame(self.state, result.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                           frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            out.append(result)
            x = x[480:]
        self.pending = x
        if out:
            y = np.clip(np.rint(np.concatenate(out)), -32767, 32767).astype(np.int16)
            self.ready = np.concatenate([self.ready, self.down.process(y)])
        frame, self.ready = self.ready[:FRAME], self.ready[FRAME:]
        return np.concatenate([frame, np.zeros(FRAME - len(frame), np.int16)])


class Nothing:
    name = "none"

    def process(self, pcm: np.ndarray) -> np.ndarray:
        return pcm


def caller_track(plan) -> np.ndarray:  # noqa: ANN001 - a CallPlan
    """The same call's layout with no background: which frames hold the caller."""
    quiet = type(plan)(plan.index, plan.split, type(plan.condition)(plan.condition.name), plan.voice, plan.turns,
                       plan.seed)
    return layout(quiet).audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rnnoise-dir", type=Path)
    parser.add_argument("--snr", type=float, action="append", help="only these SNRs (repeatable)")
    args = parser.parse_args()
    vad = SileroVad()
    plans = [p for p in plan_calls((Split.TUNE,)) if p.condition.background is not Background.NONE
             and (not args.snr or p.condition.snr_db in args.snr)]
    makers = [Nothing, WebRtcNs] + ([lambda: RnNoise(args.rnnoise_dir)] if args.rnnoise_dir else [])
    print("| condition | suppressor | false speech (noise-only frames) | speech kept (caller frames) | µs / frame |")
    print("|---|---|---:|---:|---:|")
    totals: dict[str, list[float]] = {}
    for plan in plans:
        spoken_turns(plan)
        line, clean = layout(plan).audio, caller_track(plan)
        n = min(len(line), len(clean)) // FRAME
        active = np.array([np.sqrt(np.mean(clean[i * FRAME:(i + 1) * FRAME].astype(np.float64) ** 2)) > 328
                           for i in range(n)])
        for make in makers:
            ns, stream = make(), vad.new_stream(8000)
            p, spent = np.zeros(n), 0.0
            for i in range(n):
                frame = line[i * FRAME:(i + 1) * FRAME]
                t = time.perf_counter()
                cleaned = ns.process(frame)
                spent += time.perf_counter() - t
                p[i] = stream.process(cleaned)
            false, kept = float((p[~active] >= 0.5).mean()), float((p[active] >= 0.5).mean())
            totals.setdefault(ns.name, []).append((false, kept, spent / n * 1e6))
            print(f"| {plan.condition.name} | {ns.name} | {false:.1%} | {kept:.1%} | {spent / n * 1e6:.0f} |",
                  flush=True)
    for name, rows in totals.items():
        a = np.array(rows)
        print(f"| **all noisy** | {name} | {a[:, 0].mean():.1%} | {a[:, 1].mean():.1%} | {a[:, 2].mean():.0f} |")


if __name__ == "__main__":
    main()

