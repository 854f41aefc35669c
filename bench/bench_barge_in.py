"""Barge-in on the wire: how soon a real interruption silences the bot, on a quiet and a noisy line.

Issue 12 wants the bot to tell a caller from noise (it now *holds* its audio at an onset and cuts
the reply only after `barge_in_min_ms` of speech, else goes on) while a real interruption still
stops it within ~100 ms. This measures the second half where the caller hears it: the real
gateway (default models, long answers so there is something to interrupt), SIPp signalling, a
scripted RTP caller (tune-split voice) that asks a question, waits until the bot has talked for
1 s, then interrupts with another question; `ROUNDS` times per call, one call per line condition
(clean µ-law; babble and pink noise at 15 dB SNR, playing for the whole call).

Per interruption, on the caller's clock: the caller's onset (first frame of the interruption above
-40 dBFS) to the first tick after which 100 ms of bot silence follow (bot audio = frames above
-40 dBFS, as the other call benchmarks); and the gateway's own `barge_in` line (onset to the tick
the bot was held) and whether the reply was cut (`barge_in`) or the bot went on (`bot_resumed`).

    .venv/bin/python bench/bench_barge_in.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.caller_audio import background, speech  # noqa: E402
from bench.listening_spec import CONDITIONS, QUESTIONS, VOICES, Split  # noqa: E402
from bench.sample_business import front_desk_config  # noqa: E402
from bench.scripted_call import bot_onset, place_call  # noqa: E402
from tests.rig.gateway import GatewayProcess  # noqa: E402
from tests.rig.ports import free_port_pair  # noqa: E402
from tests.rig.rtp_peer import RtpPeer, rms_dbfs  # noqa: E402

ROUNDS = 3
LONG_ANSWERS = "\nAnswer every question in detail, in at least four sentences."
CONDITION_NAMES = ("clean µ-law", "babble 15 dB", "pink 15 dB")


class Interrupter:
    """Ask, wait for 1 s of bot speech, interrupt; `ROUNDS` times."""

    def __init__(self, questions: list[np.ndarray]):
        self.questions = questions
        self.round = 0
        self.next_ask = 150  # 3 s: after the greeting
        self.asked_end: int | None = None
        self.onset: int | None = None
        self.interruptions: list[int] = []  # tick of the caller's onset of each interruption
        self.finished = threading.Event()

    def on_tick(self, peer: RtpPeer, tick: int) -> None:
        if self.round >= ROUNDS:
            if tick > self.interruptions[-1] + 400:
                self.finished.set()
            return
        if self.asked_end is None:
            if tick == self.next_ask:
                question = self.questions[2 * self.round]
                peer.play_at(tick, question)
                self.asked_end = tick + len(question) // 160
            return
        if self.onset is None:
            self.onset = bot_onset(peer, self.asked_end, tick) if tick > self.asked_end + 5 else None
            if self.onset is None and tick > self.asked_end + 500:  # no answer: ask the next one
                self.round, self.asked_end, self.next_ask = self.round + 1, None, tick + 50
            return
        if tick >= self.onset + 50 and all(peer.bot_active(t) for t in range(tick - 10, tick)):
            interruption = self.questions[2 * self.round + 1]
            peer.play_at(tick + 1, interruption)
            loud = next(i for i in range(len(interruption) // 160)
                        if rms_dbfs(interruption[i * 160:(i + 1) * 160]) > -40)
            self.interruptions.append(tick + 1 + loud)
            self.round, self.asked_end, self.onset = self.round + 1, None, None
            self.next_ask = tick + 1 + len(interruption) // 160 + 400  # after the answer to the interruption


def stop_ms(peer: RtpPeer, onset: int) -> int | None:
    if sum(peer.bot_active(t) for t in range(onset - 10, onset)) < 5:
        return None  # the bot was not talking at the onset (a pause between clauses): no barge-in to time
    stopped = next((t for t in range(onset, onset + 100) if not any(peer.bot_active(u) for u in range(t, t + 5))),
                   None)
    return None if stopped is None else (stopped - onset) * 20


def main() -> None:
    voice = next(v for v in VOICES if v.split is Split.TUNE)
    questions = [speech(voice, q) for q in QUESTIONS[Split.TUNE]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = front_desk_config(inactivity_timeout_s=3)
        config["agents"]["front-desk"]["instructions"] += LONG_ANSWERS
        config["agents"]["front-desk"]["max_reply_tokens"] = 200
        gw = GatewayProcess(Path(tmp) / "gateway", config).start()
        gw.wait_log("gateway_ready", timeout=180)
        for n, name in enumerate(CONDITION_NAMES):
            condition = next(c for c in CONDITIONS if c.name == name)
            caller = Interrupter(questions)
            peer = RtpPeer(free_port_pair(), on_tick=caller.on_tick, seed=n)
            if condition.snr_db is not None:
                peer.play_at(0, background(condition.background, condition.snr_db, 120, Split.TUNE, 100 + n))
            call_id = place_call(gw, Path(tmp) / f"call{n}", peer, caller.finished, 120)
            gw.wait_log("call_ended", timeout=30, call_id=call_id)
            wire = [stop_ms(peer, onset) for onset in caller.interruptions]
            logged = [b["onset_to_silence_ms"] for b in gw.find("barge_in", call_id=call_id)]
            resumed = len(gw.find("bot_resumed", call_id=call_id))
            rows.append((name, wire, logged, resumed))
            print(f"{name}: on the wire {wire} ms, barge_in lines {logged} ms, bot_resumed {resumed}", flush=True)
        gw.stop()
    print("\n| line | interruptions timed / made | bot silent on the wire after the onset (ms): each | median | "
          "gateway's barge_in (onset to held, ms) | bot_resumed (false holds) |\n|---|---:|---|---:|---|---:|")
    for name, wire, logged, resumed in rows:
        timed = [w for w in wire if w is not None]
        median = statistics.median(timed) if timed else "-"
        print(f"| {name} | {len(timed)} / {len(wire)} | {', '.join(map(str, wire))} | {median} | "
              f"{', '.join(str(round(x)) for x in logged)} | {resumed} |")


if __name__ == "__main__":
    main()
