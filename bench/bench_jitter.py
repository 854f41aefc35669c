"""Replay scripted network traces through rtp.jitter.JitterBuffer and report delay and quality.

Run from the repository root::

    python bench/bench_jitter.py [--seconds 60] [--seed 1]

Everything runs in simulated time (no sleeps, no sockets), so the numbers are
deterministic for a given seed and independent of the machine; the script
prints a markdown section ready for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtp.jitter import FrameType, JitterBuffer, PutResult  # noqa: E402

FS = 8000
PTIME_S = 0.020
SAMPLES = 160
BASE_DELAY_S = 0.030
GET_PHASE_S = 0.0073  # media clock ticks are not aligned with the sender's


@dataclass(frozen=True)
class Trace:
    name: str
    description: str
    delay: Callable[[int, float, np.random.Generator], float]  # extra one-way delay (s) of packet k
    loss: float = 0.0
    drift: float = 0.0  # > 0: sender clock fast


def _uniform(ms: float) -> Callable[[int, float, np.random.Generator], float]:
    return lambda k, t, rng: float(rng.uniform(0.0, ms / 1000))


def _bursty(k: int, t: float, rng: np.random.Generator) -> float:
    extra = float(rng.uniform(0.0, 0.010))
    for start, length in ((10.0, 3.0), (30.0, 2.0), (45.0, 5.0)):
        if start <= t % 60.0 < start + length:
            extra += float(rng.uniform(0.060, 0.180))
    return extra


TRACES = [
    Trace("clean", "constant 30 ms network delay", lambda k, t, rng: 0.0),
    Trace("loss5_jitter40", "5 % random loss, delay 30 ms + U(0, 40) ms", _uniform(40), loss=0.05),
    Trace("bursty", "delay 30 ms + U(0, 10) ms, plus U(60, 180) ms during 10 s of bursts per minute", _bursty),
    Trace("drift_plus_0.5pct", "sender clock 0.5 % fast, delay 30 ms + U(0, 10) ms", _uniform(10), drift=0.005),
    Trace("drift_minus_0.5pct", "sender clock 0.5 % slow, delay 30 ms + U(0, 10) ms", _uniform(10), drift=-0.005),
]


def speech_like(total_samples: int, seed: int) -> np.ndarray:
    """Deterministic speech-like test signal: voiced talk spurts with syllable envelope, quiet pauses."""
    rng = np.random.default_rng(seed)
    out = np.zeros(total_samples)
    pos = 0
    while pos < total_samples:
        talk = int(rng.uniform(0.8, 3.0) * FS)
        pause = int(rng.uniform(0.2, 0.9) * FS)
        n = min(talk, total_samples - pos)
        t = np.arange(n) / FS
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / FS
        voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6.3))
        out[pos : pos + n] = 6000 * envelope * voiced
        pos += n
        n = min(pause, total_samples - pos)
        out[pos : pos + n] = rng.normal(0, 30, n)  # background noise, about -60 dBFS
        pos += n
    return np.clip(out, -32768, 32767).astype(np.int16)


@dataclass
class Result:
    name: str
    packets: int
    played_delays_ms: np.ndarray
    concealed_ratio: float
    late_ratio: float
    network_loss: float
    dropped: int
    inserted: int
    underruns: int
    final_target_ms: float
    wall_s: float


def run(trace: Trace, seconds: float, seed: int) -> Result:
    rng = np.random.default_rng(seed)
    n_packets = int(seconds / PTIME_S)
    audio = speech_like(n_packets * SAMPLES, seed)
    jb = JitterBuffer()
    heap: list[tuple[float, int]] = []
    lost = 0
    arrival_by_ts: dict[int, float] = {}
    for k in range(n_packets):
        send = k * PTIME_S / (1 + trace.drift)
        if rng.random() < trace.loss:
            lost += 1
            continue
        arrival = send + BASE_DELAY_S + trace.delay(k, send, rng)
        heapq.heappush(heap, (arrival, k))
    ts0 = 0xFFFF0000  # exercise timestamp wrap too
    seq0 = 65000
    started = time.perf_counter()
    now = GET_PHASE_S
    late = 0
    types: list[FrameType] = []
    delays: list[float] = []
    while heap or jb.stats.buffered_ms > 0:  # until the last packet has been played
        while heap and heap[0][0] <= now:
            arrival, k = heapq.heappop(heap)
            ts = (ts0 + k * SAMPLES) & 0xFFFFFFFF
            result = jb.put((seq0 + k) & 0xFFFF, ts, audio[k * SAMPLES : (k + 1) * SAMPLES], arrival)
            late += result is PutResult.LATE
            arrival_by_ts[ts] = arrival
        frame = jb.get()
        types.append(frame.type)
        if frame.type is FrameType.NORMAL and frame.timestamp in arrival_by_ts:
            delays.append(now - arrival_by_ts.pop(frame.timestamp))
        now += PTIME_S
    wall = time.perf_counter() - started
    first = types.index(FrameType.NORMAL)
    last = len(types) - 1 - types[::-1].index(FrameType.NORMAL)
    active = types[first : last + 1]
    stats = jb.stats
    return Result(
        name=trace.name,
        packets=n_packets,
        played_delays_ms=1000.0 * np.array(delays),
        concealed_ratio=active.count(FrameType.CONCEALED) / len(active),
        late_ratio=late / n_packets,
        network_loss=lost / n_packets,
        dropped=stats.drift_dropped,
        inserted=stats.drift_inserted,
        underruns=stats.underruns,
        final_target_ms=stats.target_delay_ms,
        wall_s=wall,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each trace (simulated)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    results = [run(trace, args.seconds, args.seed) for trace in TRACES]
    print("## Jitter buffer (rtp/jitter.py)\n")
    print(
        f"Each trace is {args.seconds:g} s of 20 ms G.711-sized packets (speech-like synthetic signal with\n"
        "pauses, seed {seed}) replayed in simulated time through `JitterBuffer` with default settings\n"
        "(min 20 ms, max 300 ms, initial 40 ms). `get()` is called every 20 ms at a phase unrelated\n"
        "to the sender; sequence numbers and timestamps wrap during the run.\n".format(seed=args.seed)
    )
    print(
        "| trace | network | added delay mean (ms) | added delay p95 (ms) | concealed frames | late packets "
        "| dropped / inserted / underruns | target at end (ms) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for trace, r in zip(TRACES, results, strict=True):
        d = r.played_delays_ms
        print(
            f"| {r.name} | {trace.description} | {d.mean():.1f} | {np.percentile(d, 95):.1f} "
            f"| {100 * r.concealed_ratio:.2f} % | {100 * r.late_ratio:.2f} % "
            f"| {r.dropped} / {r.inserted} / {r.underruns} | {r.final_target_ms:.1f} |"
        )
    print(
        "\nHow it was measured: *added delay* is, for every packet whose audio was played as a NORMAL\n"
        "frame, the simulated time of the `get()` that returned its first sample minus the packet's\n"
        "arrival time (time spent waiting in the buffer; the network delay itself is not included).\n"
        "*Concealed frames* is the share of CONCEALED frames between the first and the last NORMAL\n"
        "frame (network loss + late packets + underruns + deliberate insertions). *Late packets* is\n"
        "the share of sent packets that arrived after their play-out time (`PutResult.LATE`).\n"
        "*Dropped / inserted / underruns* are `JitterStats.drift_dropped`, `drift_inserted` and\n"
        "`underruns` (frames dropped to shrink the delay, concealed frames inserted to grow it, and\n"
        "stalls because nothing was buffered)."
    )
    total = sum(r.wall_s for r in results)
    frames = sum(r.packets for r in results)
    print(
        f"\nCPU: {1e6 * total / frames:.0f} µs per 20 ms frame (put + get) on this machine, "
        f"{total:.2f} s for all traces."
    )


if __name__ == "__main__":
    main()
