"""CPU per 20 ms frame of each codec the RTP engine carries: encode + decode, as one call costs per tick.

Each codec encodes and decodes `--seconds` of a speech-like 16 kHz signal (8 kHz for G.711, cut as
the gateway does) 20 ms at a time with one encoder and one decoder state, through the engine's own
codec objects (rtp/g711.py, rtp/g722codec.py, rtp/opuscodec.py). For Opus also the two ways a lost
frame is rebuilt: from the next packet's in-band FEC, and by its PLC (decode with no data). CPU time
of this process (time.process_time), best of `--repeat` runs, in microseconds per frame and as the
share of one core per call (a call does one encode and one decode every 20 ms).

    flock /work/heavy.lock .venv/bin/python bench/bench_codec_cpu.py [--seconds 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtp.g711 import PCMU  # noqa: E402
from rtp.g722codec import G722  # noqa: E402
from rtp.opuscodec import OPUS  # noqa: E402
from rtp.resample import resample  # noqa: E402


def voice(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced buzz with harmonics up to 4 kHz and a little noise, slowly modulated."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / rate
    x = sum(a * np.sin(k * phase) for k, a in ((1, 1.0), (2, 0.6), (4, 0.5), (7, 0.35), (16, 0.2), (28, 0.1)))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(len(t))
    return (4000 * x).astype(np.int16)


def per_frame_us(work: Callable[[], int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        frames = work()
        best = min(best, (time.process_time() - start) / frames * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    wide = voice(args.seconds)
    narrow = resample(wide, 16000, 8000)
    wide_frames = [wide[i:i + 320] for i in range(0, len(wide) - 319, 320)]
    narrow_frames = [narrow[i:i + 160] for i in range(0, len(narrow) - 159, 160)]

    def pcmu() -> int:
        for f in narrow_frames:
            PCMU.decode(PCMU.encode(f))
        return len(narrow_frames)

    def g722() -> int:
        encoder, decoder = G722.encoder(), G722.decoder()
        for f in wide_frames:
            decoder.decode(encoder.encode(f))
        return len(wide_frames)

    def opus() -> int:
        encoder, decoder = OPUS.encoder(), OPUS.decoder()
        for f in wide_frames:
            decoder.decode(encoder.encode(f))
        return len(wide_frames)

    encoder = OPUS.encoder()
    packets = [encoder.encode(f) for f in wide_frames]
    payload_bytes = sum(len(p) for p in packets) / len(packets)

    def opus_fec() -> int:
        decoder = OPUS.decoder()
        for p in packets:
            decoder.conceal(320, p)
            decoder.good_frame(decoder.decode(p))
        return len(packets)

    def opus_plc() -> int:
        decoder = OPUS.decoder()
        for p in packets:
            decoder.good_frame(decoder.decode(p))
            decoder.conceal(320)
        return len(packets)

    rows = [
        ("PCMU (8 kHz)", per_frame_us(pcmu, args.repeat), "encode + decode"),
        ("G.722 (16 kHz)", per_frame_us(g722, args.repeat), "encode + decode"),
        ("Opus (16 kHz, 24 kbit/s, FEC)", per_frame_us(opus, args.repeat),
         f"encode + decode, {payload_bytes:.0f} bytes a packet on average"),
        ("Opus: a lost frame from FEC", per_frame_us(opus_fec, args.repeat) - per_frame_us(
            lambda: _decode_all(packets), args.repeat), "decode_fec of the next packet, per lost frame"),
        ("Opus: a lost frame by PLC", per_frame_us(opus_plc, args.repeat) - per_frame_us(
            lambda: _decode_all(packets), args.repeat), "decode with no data, per lost frame"),
    ]
    print(f"{args.seconds:g} s of 16 kHz voice, 20 ms frames, best of {args.repeat}\n")
    print("| codec | µs per 20 ms frame | % of one core per call | what |")
    print("|---|---:|---:|---|")
    for name, us, what in rows:
        print(f"| {name} | {us:.0f} | {us / 20000 * 100:.2f} | {what} |")


def _decode_all(packets: list[bytes]) -> int:
    decoder = OPUS.decoder()
    for p in packets:
        decoder.decode(p)
    return len(packets)


if __name__ == "__main__":
    main()
