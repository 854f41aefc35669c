"""Per-model timings on this machine: VAD, Whisper, LLM (Qwen 0.5B), Piper, and the end-of-turn pipeline.

Run from the repository root::

    python bench/bench_models.py [--repeat 5] [--skip-pipeline]

How it measures (all wall-clock ``time.perf_counter``, models loaded and warmed up first,
median of ``--repeat`` runs unless noted):

* VAD: silero ONNX, one stream, 8 kHz espeak-ng speech fed in 20 ms frames (160 samples)
  as the media clock does; cost per ``process()`` call (median and p99 over ~400 frames).
* Whisper tiny.en int8, 2 threads, beam 1: espeak-ng speech at 8 kHz upsampled to 16 kHz
  with soxr, cut to 1, 2 and 3 s; short window (default, pad 10 s) and faster-whisper's own
  30 s window.  "partials": the growing-buffer pattern, one call per 0.5 s of speech.
* LLM: Qwen2.5-Coder-0.5B Q4_K_M, n_threads 2, n_ctx 2048, a ~240-token receptionist
  system prompt.  Cold = first call with a system prompt not in the KV cache; warm = the
  next call with another question (prefix reused); tokens/s over the rest of the answer.
  Two concurrent streams with 1 and with 2 llama.cpp instances (time to first piece).
* Piper joe medium, 2 threads: time until the first chunk of a 13-word sentence and of a
  4-word clause.
* Pipeline: what the caller waits for after they stop speaking: final transcript of a 3 s
  utterance -> LLM stream -> first clause (split at , . ? !) -> Piper first chunk.  Run
  with the shared ComputeGate (default) and without it (engines competing for the cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.base import ChatMessage  # noqa: E402
from models.gate import ComputeGate  # noqa: E402
from models.llama import LlamaConfig, LlamaCppLlm  # noqa: E402
from models.piper import PiperTts  # noqa: E402
from models.silero import SileroVad  # noqa: E402
from models.whisper import WhisperConfig, WhisperStt  # noqa: E402
from tests.unit.models.conftest import SYSTEM_PROMPT  # noqa: E402  (the same prompt the tests measure)

UTTERANCE = "Hello, I would like to book an appointment for next Tuesday morning please."
QUESTIONS = [
    "What are your opening hours on Saturday?",
    "Where are you located?",
    "How much is a cleaning?",
    "Is there parking?",
    "Can I move my appointment to Friday?",
    "Which dentist treats children?",
    "What should new patients do?",
]
SENTENCE_13 = "Our office is open from eight in the morning until six on weekdays."
CLAUSE_4 = "Sure, let me check."

Rows = list[tuple[str, str, str]]


def espeak_8k(text: str) -> npt.NDArray[np.int16]:
    with tempfile.TemporaryDirectory() as d:
        raw, low = Path(d) / "a.wav", Path(d) / "b.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(low)], check=True)
        with wave.open(str(low)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def up16(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    return soxr.resample(pcm.astype(np.float32) / 32768.0, 8000, 16000).astype(np.float32)


def median_of(fn: Callable[[], float], n: int) -> float:
    return statistics.median(fn() for _ in range(n))


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s >= 0.01 else f"{s * 1000:.2f} ms"


def bench_vad(speech8k: npt.NDArray[np.int16]) -> Rows:
    vad = SileroVad()
    stream = vad.new_stream(8000)
    audio = np.concatenate([np.zeros(4000, np.int16), speech8k, np.zeros(4000, np.int16)])
    costs = []
    for i in range(0, len(audio) - 160, 160):
        t = time.perf_counter()
        stream.process(audio[i : i + 160])
        costs.append(time.perf_counter() - t)
    us = np.array(costs) * 1e6
    return [
        ("VAD per 20 ms frame (8 kHz)", f"{np.median(us):.0f} us median, {np.percentile(us, 99):.0f} us p99",
         f"{len(us)} frames; model runs on 5 of 8 frames (256-sample windows), 1 thread"),
    ]  # fmt: skip


def bench_whisper(speech16k: npt.NDArray[np.float32], repeat: int) -> Rows:
    stt = WhisperStt()
    stt.transcribe(speech16k)
    full = WhisperStt.__new__(WhisperStt)
    full.__dict__.update(stt.__dict__)
    full.config = WhisperConfig(window="full")
    rows: Rows = []
    for n in (1, 2, 3):
        a = speech16k[: n * 16000]
        s = statistics.median(stt.transcribe(a).elapsed_s for _ in range(repeat))
        f = statistics.median(full.transcribe(a).elapsed_s for _ in range(max(2, repeat // 2)))
        rows.append((f"Whisper {n} s utterance", f"{ms(s)} (30 s window: {ms(f)})", f"'{stt.transcribe(a).text}'"))
    partial_costs = [stt.transcribe(speech16k[:k]).elapsed_s for k in range(8000, len(speech16k) + 1, 8000)]
    rows.append(
        (
            "Whisper partials, growing buffer",
            " / ".join(f"{c * 1000:.0f}" for c in partial_costs) + " ms",
            f"one call per 0.5 s of speech, 0.5 .. {len(partial_costs) * 0.5:.1f} s; sum {ms(sum(partial_costs))}",
        )
    )
    stt.close()
    return rows


def ask(llm: LlamaCppLlm, system: str, question: str, max_tokens: int = 48) -> tuple[float, float, int]:
    "".join(llm.stream_chat([ChatMessage("system", system), ChatMessage("user", question)],
                            max_tokens=max_tokens, temperature=0.0))  # fmt: skip
    s = llm.last_stats
    rate = (s.completion_pieces - 1) / (s.total_s - s.ttft_s) if s.completion_pieces > 1 else 0.0
    return s.ttft_s, rate, s.cached_tokens


def concurrent_ttft(llm: LlamaCppLlm) -> list[float]:
    ttfts: list[float] = []
    barrier = threading.Barrier(2)

    def run(q: str) -> None:
        barrier.wait()
        t = time.perf_counter()
        first = None
        for _ in llm.stream_chat([ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", q)],
                                 max_tokens=40, temperature=0.0):  # fmt: skip
            if first is None:
                first = time.perf_counter() - t
        ttfts.append(first or 0.0)

    ts = [threading.Thread(target=run, args=(q,)) for q in QUESTIONS[:2]]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sorted(ttfts)


def bench_llm(repeat: int) -> Rows:
    gate = ComputeGate()
    t = time.perf_counter()
    llm = LlamaCppLlm(LlamaConfig(), gate=gate)
    load = time.perf_counter() - t
    llm.warm_up("You are a helpful assistant.")  # page the weights in; not the system prompt we measure
    colds, warms, rates = [], [], []
    for i in range(repeat):
        system = f"Branch {i + 1}. " + SYSTEM_PROMPT  # a prefix never seen: cold
        c, r1, _ = ask(llm, system, QUESTIONS[i % len(QUESTIONS)])
        w, r2, cached = ask(llm, system, QUESTIONS[(i + 1) % len(QUESTIONS)])
        colds.append(c)
        warms.append(w)
        rates += [r1, r2]
    prefix = len(llm.system_prefix_tokens(SYSTEM_PROMPT))
    warm_up_s = llm.warm_up(SYSTEM_PROMPT)
    one = concurrent_ttft(llm)
    llm.close()
    llm2 = LlamaCppLlm(LlamaConfig(instances=2), gate=ComputeGate())
    llm2.warm_up(SYSTEM_PROMPT)
    two = concurrent_ttft(llm2)
    llm2.close()
    return [
        ("LLM load", ms(load), str(llm.model_path.name)),
        ("LLM TTFT cold (system prompt not cached)", ms(statistics.median(colds)),
         f"{prefix}-token system prefix + question; warm_up() of the same prefix: {ms(warm_up_s)}"),
        ("LLM TTFT warm (system prompt cached)", ms(statistics.median(warms)),
         f"ratio cold/warm {statistics.median(colds) / statistics.median(warms):.0f}x; {cached} tokens reused"),
        ("LLM generation", f"{statistics.median(rates):.1f} tokens/s", "after the first token, greedy"),
        ("LLM 2 concurrent streams, 1 instance", " / ".join(ms(x) for x in one), "time to first piece; 2nd waits"),
        ("LLM 2 concurrent streams, 2 instances", " / ".join(ms(x) for x in two),
         "time to first piece; tokens interleave through the gate"),
    ]  # fmt: skip


def bench_piper(repeat: int) -> Rows:
    tts = PiperTts()
    tts.first_chunk_latency("Hello.")
    s13 = median_of(lambda: tts.first_chunk_latency(SENTENCE_13), repeat)
    c4 = median_of(lambda: tts.first_chunk_latency(CLAUSE_4), repeat)
    dur = sum(c.duration_s for c in tts.synthesize(SENTENCE_13))
    return [
        ("Piper first chunk, 13-word sentence", ms(s13), f"{dur:.2f} s of audio, RTF {s13 / dur:.3f}"),
        ("Piper first chunk, 4-word clause", ms(c4), f"'{CLAUSE_4}'"),
    ]


def run_turn(
    stt: WhisperStt, llm: LlamaCppLlm, tts: PiperTts, audio: npt.NDArray[np.float32], question: str
) -> tuple[float, float, float, float, float]:
    """One caller turn as the gateway will run it; returns (first audio, stt, llm->clause, tts, whole) seconds.

    The LLM text is cut into clauses at , . ? ! and each clause goes to a TTS worker thread as soon
    as it is complete, so synthesis overlaps generation (as on a real call).
    """
    import queue

    clauses: queue.Queue[str | None] = queue.Queue()
    first_audio: list[float] = []

    def tts_worker() -> None:
        while (clause := clauses.get()) is not None:
            for _ in tts.synthesize(clause):
                if not first_audio:
                    first_audio.append(time.perf_counter())

    worker = threading.Thread(target=tts_worker)
    worker.start()
    t0 = time.perf_counter()
    text = stt.transcribe(audio).text
    t_stt = time.perf_counter()
    msgs = [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", f"{text} {question}")]
    pending = ""
    t_clause = 0.0
    for piece in llm.stream_chat(msgs, max_tokens=60, temperature=0.0):
        pending += piece
        if any(p in piece for p in ",.?!") and len(pending.split()) >= 2:
            t_clause = t_clause or time.perf_counter()
            clauses.put(pending)
            pending = ""
    if pending.strip():
        t_clause = t_clause or time.perf_counter()
        clauses.put(pending)
    clauses.put(None)
    worker.join()
    t_end = time.perf_counter()
    t_first = first_audio[0] if first_audio else t_end
    return t_first - t0, t_stt - t0, t_clause - t_stt, t_first - t_clause, t_end - t0


def bench_pipeline(speech16k: npt.NDArray[np.float32], repeat: int) -> Rows:
    rows: Rows = []
    for gated_run in (True, False):
        gate = ComputeGate() if gated_run else None
        stt = WhisperStt(gate=gate)
        llm = LlamaCppLlm(LlamaConfig(), gate=gate)
        tts = PiperTts(gate=gate)
        llm.warm_up(SYSTEM_PROMPT)
        stt.transcribe(speech16k)
        tts.first_chunk_latency("Hello.")
        audio = speech16k[: 3 * 16000]
        runs = [run_turn(stt, llm, tts, audio, QUESTIONS[i % len(QUESTIONS)]) for i in range(repeat)]
        first, stt_s, llm_s, tts_s, done = (statistics.median(col) for col in zip(*runs, strict=True))
        worst = max(r[0] for r in runs)
        label = "with ComputeGate" if gated_run else "no gate (engines compete)"
        rows.append(
            (
                f"First bot audio after end of speech, {label}",
                f"{ms(first)} (max {ms(worst)})",
                f"STT {ms(stt_s)} + LLM to first clause {ms(llm_s)} + TTS first chunk {ms(tts_s)}; "
                f"whole answer synthesized after {ms(done)}",
            )
        )
        llm.close()
        stt.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-pipeline", action="store_true")
    args = ap.parse_args()
    speech8k = espeak_8k(UTTERANCE)
    speech16k = up16(speech8k)
    rows: Rows = []
    for name, fn in [
        ("vad", lambda: bench_vad(speech8k)),
        ("whisper", lambda: bench_whisper(speech16k, args.repeat)),
        ("llm", lambda: bench_llm(args.repeat)),
        ("piper", lambda: bench_piper(args.repeat)),
        ("pipeline", lambda: [] if args.skip_pipeline else bench_pipeline(speech16k, args.repeat)),
    ]:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows += fn()
    print(f"\n## Model timings ({os.cpu_count()} cores, median of {args.repeat})\n")
    print("| what | time | notes |")
    print("|---|---|---|")
    for what, value, note in rows:
        print(f"| {what} | {value} | {note.replace('|', '/')} |")


if __name__ == "__main__":
    main()
