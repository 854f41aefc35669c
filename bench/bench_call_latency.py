"""Voice-to-voice latency on real calls, measured from outside the gateway.

How it is measured: the real gateway runs as a subprocess (`voicegate run`) with the default
models and a conversation agent for the sample business. SIPp places each call (its SDP points the
gateway at a scripted RTP peer), and the peer plays the caller: real G.711 RTP on 127.0.0.1 every
20 ms, recording what the gateway sends back by arrival time. The caller asks the scripted
questions one after another, each one second after the bot's previous reply has ended, like a
person would. Latency = first bot audio in the caller's recording (three 20 ms frames above
-40 dBFS) minus the end of the caller's question (its last frame above -40 dBFS), both on the
peer's clock. The jitter buffer, the network path and the media clock are all included. The
per-stage breakdown comes from the gateway's own `turn` log lines (ms after the VAD's speech end).

    .venv/bin/python bench/bench_call_latency.py [--calls 1] [--questions 12]
        [--turn-model smart_turn] [--caller-voice piper] [--codec G722]

With `--codec G722` the call is wideband (the caller's 8 kHz questions raised to 16 kHz by the peer)
and the bot's voice as the caller decoded it is also judged for its share of energy at 4-7 kHz,
which only a voice that reached the line at 16 kHz has.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sample_business import QUESTIONS, front_desk_config, last_active_end, speech  # noqa: E402
from bench.scripted_call import bot_onset, place_call  # noqa: E402
from rtp.codec import audio_codec_by_name  # noqa: E402
from tests.rig.audio import active_audio, band_share  # noqa: E402
from tests.rig.gateway import GatewayProcess  # noqa: E402
from tests.rig.ports import free_port_pair  # noqa: E402
from tests.rig.rtp_peer import RtpPeer  # noqa: E402

QUIET_AFTER_REPLY = 50  # ticks of bot silence that end its reply (1 s)
NO_REPLY = 500  # ticks (10 s) after which the caller moves on anyway


@dataclass
class ScriptedCaller:
    """Asks the questions in turn, each after the bot's reply; notes when each question ended."""

    questions: list[np.ndarray]
    asked_at: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # tick just after each question's speech
    next_free: int = 0  # earliest tick for the next question
    finished: threading.Event = field(default_factory=threading.Event)

    def on_tick(self, peer: RtpPeer, tick: int) -> None:
        if len(self.asked_at) == len(self.questions):
            if tick > self.ends[-1] + NO_REPLY or self._reply_over(peer, tick, self.ends[-1]):
                self.finished.set()
            return
        if tick < self.next_free:
            return
        since = self.ends[-1] if self.ends else 0
        if tick - since < NO_REPLY and not self._reply_over(peer, tick, since):
            return
        pcm = self.questions[len(self.asked_at)]
        peer.play_at(tick, pcm)
        self.asked_at.append(tick)
        self.ends.append(tick + last_active_end(pcm) // 160)
        self.next_free = tick + len(pcm) // 160 + 1

    @staticmethod
    def _reply_over(peer: RtpPeer, tick: int, since: int) -> bool:
        onset = bot_onset(peer, since, tick)
        if onset is None:
            return False
        return not any(peer.bot_active(t) for t in range(tick - QUIET_AFTER_REPLY, tick))


def run_call(gw: GatewayProcess, workdir: Path, caller: ScriptedCaller, max_s: float, results: dict,
             codec: str = "PCMU") -> None:
    peer = RtpPeer(free_port_pair(), on_tick=caller.on_tick, codec=audio_codec_by_name(codec))
    results["call_id"] = place_call(gw, workdir, peer, caller.finished, max_s)
    wide = peer.received_wide_audio()
    if len(wide):
        voice = active_audio(wide, 16000)
        results["high_band"] = (band_share(voice, 16000, 4000, 7000), len(voice) / 16000)
    results["latencies"] = []
    for end in caller.ends:
        onset = bot_onset(peer, end, max(peer.received, default=end) + 1)
        results["latencies"].append(None if onset is None or onset - end > NO_REPLY else (onset - end) * 20)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def piper_speech():
    """`text` -> 8 kHz int16, in the default piper voice (loaded here, in the benchmark's process)."""
    import soxr

    from models.piper import PiperTts

    tts = PiperTts()

    def say(text: str) -> np.ndarray:
        pcm = np.concatenate([c.pcm for c in tts.synthesize(text)]).astype(np.float32) / 32768
        return (np.clip(soxr.resample(pcm, tts.sample_rate, 8000), -1, 1) * 32767).astype(np.int16)

    return say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1, help="simultaneous calls")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--keep-log", help="copy the gateway's JSON log here")
    parser.add_argument("--end-of-turn-ms", type=int, default=400, help="the agent's end_of_turn_ms")
    parser.add_argument("--caller-voice", choices=("espeak", "piper"), default="espeak",
                        help="who asks the questions: espeak-ng (flat, always the same) or the piper voice "
                             "(sentence intonation an end-of-turn model can hear)")
    parser.add_argument("--codec", choices=("PCMU", "PCMA", "G722"), default="PCMU",
                        help="the codec the caller offers (G722: wideband)")
    parser.add_argument("--turn-model", choices=("none", "smart_turn"), default="none",
                        help="the agent's turn_model (end of turn from the sound of the turn, semantic_turn.py)")
    args = parser.parse_args()
    say = speech if args.caller_voice == "espeak" else piper_speech()
    questions = [say(q) for q in QUESTIONS[: args.questions]]
    config = front_desk_config(end_of_turn_ms=args.end_of_turn_ms, max_calls=args.calls + 1,
                               turn_model=args.turn_model)
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(Path(tmp) / "gateway", config).start()
        t = time.monotonic()
        gw.wait_log("gateway_ready", timeout=180)
        print(f"gateway ready (models loaded and warmed up) in {time.monotonic() - t:.1f} s")
        max_s = 15.0 * len(questions) + 20
        callers = [ScriptedCaller(questions) for _ in range(args.calls)]
        results: list[dict] = [{} for _ in callers]
        threads = [threading.Thread(target=run_call, args=(gw, Path(tmp) / f"call{i}", c, max_s, r, args.codec),
                                    daemon=True)
                   for i, (c, r) in enumerate(zip(callers, results, strict=True))]
        for thread in threads:
            thread.start()
            time.sleep(0.5)
        for thread in threads:
            thread.join(max_s + 60)
        turns = gw.find("turn")
        gw.stop()
        if args.keep_log:
            Path(args.keep_log).write_text(gw.log_path.read_text())

    print(__doc__.split("\n\n")[1].replace("\n", " "))
    print(f"\n{args.calls} simultaneous call(s) on {args.codec}, {len(questions)} questions each, "
          f"turn_model {args.turn_model}, caller voice {args.caller_voice}\n")
    stages = ("turn_decision_ms", "transcript_final_ms", "llm_first_token_ms", "first_clause_ms",
              "first_tts_audio_ms", "first_rtp_ms")
    print("| call | question | speech end → first bot audio at the caller (ms) | turn log: "
          + " / ".join(s.removesuffix("_ms") for s in stages) + " (ms after VAD speech end) | caller → bot |")
    print("|---|---|---|---|---|")
    latencies: list[float] = []
    per_stage: dict[str, list[float]] = {s: [] for s in stages}
    for n, result in enumerate(results):
        mine = [t for t in turns if t.get("call_id") == result.get("call_id") and t.get("caller")
                and not t.get("cancelled")]
        for i, latency in enumerate(result.get("latencies", [])):
            if latency is not None:
                latencies.append(latency)
            turn = mine[i] if i < len(mine) else {}
            for s in stages:
                if turn.get(s) is not None:
                    per_stage[s].append(turn[s])
            llm = f" (LLM prompt {turn.get('llm_prompt_tokens')} tokens, {turn.get('llm_cached_tokens')} cached)"
            print(f"| {n} | {QUESTIONS[i]} | {latency} | " + " / ".join(str(turn.get(s)) for s in stages)
                  + llm + f" | {turn.get('caller', '')!r} → {turn.get('bot', '')!r} |")
    print(f"\nvoice-to-voice over {len(latencies)} turns: p50 {percentile(latencies, 50):.0f} ms, "
          f"p95 {percentile(latencies, 95):.0f} ms, max {max(latencies, default=float('nan')):.0f} ms; "
          f"missing replies {sum(len(r.get('latencies', [])) for r in results) - len(latencies)}")
    print("stage medians (ms after VAD speech end): " + ", ".join(
        f"{s.removesuffix('_ms')} {statistics.median(v):.0f}" for s, v in per_stage.items() if v))
    for n, result in enumerate(results):
        if "high_band" in result:
            share, seconds = result["high_band"]
            print(f"call {n}: the bot's voice at the caller ({seconds:.1f} s active, 16 kHz as decoded): "
                  f"{100 * share:.3f} % of its energy at 4-7 kHz")
    print(json.dumps({"calls": args.calls, "codec": args.codec, "latencies_ms": latencies}))


if __name__ == "__main__":
    main()
