"""Soak test: one simulated hour of a conversation call, time-compressed; does memory stay flat?

Run from the repository root::

    .venv/bin/python bench/bench_soak.py [--minutes 60] [--report-every 10] [--seed 1]

What runs: the long-lived state of one call, as the gateway holds it, for ``--minutes`` of
simulated time (60 minutes = 180,000 ticks of 20 ms):

* media: two real ``rtp.session.RtpSession`` objects on 127.0.0.1, the gateway's and the
  caller's, carrying G.711 µ-law both ways every tick through a small UDP relay that drops 1 % of
  the packets and holds 3 % back for 1-3 ticks (late and reordered packets); the caller presses a
  DTMF key every 2-4 minutes; both sessions send RTCP every 5 s (randomised, RFC 3550);
* conversation: ``gateway.conversation.agent.ConversationAgent`` with the scripted fake models and
  fake clock of ``tests/unit/conversation_fakes.py`` behind the gateway session (through the
  production listener adapter ``gateway.calls.CallMedia``). The caller asks a question every
  12-18 s of simulated time, waits for a pause in the bot's answer, and barges in on ~20 % of the
  answers. The fakes' own logs (prompts, transcripts, TTS texts) and the agent's log lines are
  kept bounded by this script, so whatever grows belongs to the gateway code.

Time: the sessions are ticked with the fake clock's time (no real sleeping). The sockets' kernel
arrival timestamps are switched off, so the jitter buffer sees the tick time as arrival time, as
it would on a real 20 ms clock. Only while a reply is being prepared (model threads waiting on
the fake clock) does the driver give the agent's threads 1 ms of real time per tick.

Memory: ``tracemalloc`` (8 frames) runs from the start. After a 2-minute simulated warm-up a
baseline is taken (after ``gc.collect()``): traced memory and ``VmRSS`` from
``/proc/self/status``, and a snapshot of the traces allocated from this repository's files; then
every ``--report-every`` simulated minutes and at the end. Growth = end minus baseline, also per
simulated minute; the traced peak is per reporting interval (reset after each report). The top
growing allocation sites compare the end snapshot to the baseline, each trace attributed to its
innermost frame in this repository (gateway/, rtp/, models/, tests/). RSS includes tracemalloc's
own bookkeeping (reported separately), and the malloc arenas; the traced figure is the precise one.
Caveat when reading the sites: a block is charged to the line that first allocated it, and small
objects are recycled through CPython's free lists, so a bounded pool (e.g. the 2-tuples of the
jitter buffer's 5 s window, rtp/jitter.py) can show up as "growth" at an unrelated line (seen:
gateway/conversation/caller_facts.py:78 rising while jitter.py:364 falls by as much). The
"history messages" column and the per-call state sizes say what actually grows.

Found with it (60 simulated minutes, seed 1): memory is flat apart from the conversation history.
``ConversationAgent._history`` (and ``_caller_lines``) keep every turn for the whole call:
``_finalize_history`` in gateway/conversation/agent.py appends a user and an assistant
``ChatMessage`` per turn and nothing ever removes them; ``fit_history`` only trims the copy sent to
the LLM (the prompt stays within ``history_tokens``). That is ~0.4 KiB per turn (~100 KiB per hour
of 15-second turns) and, because ``fit_history`` re-walks every dropped exchange (caller-facts
regexes on each) at every turn, ~5 ms of CPU per turn after an hour (0.3 ms at the start), on the
path to the first reply token.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import random
import socket
import sys
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.agents.base import CallContext  # noqa: E402
from gateway.calls.media import CallMedia  # noqa: E402
from gateway.conversation.agent import ConversationAgent, ConversationSettings  # noqa: E402
from gateway.conversation.history import MESSAGE_OVERHEAD_TOKENS, approx_tokens  # noqa: E402
from gateway.conversation.speech import ConversationServices  # noqa: E402
from rtp.g711 import PCMU  # noqa: E402
from rtp.jitter import FrameType, JitterFrame  # noqa: E402
from rtp.outbound import OutboundFrame  # noqa: E402
from rtp.ports import PortAllocator  # noqa: E402
from rtp.session import SO_TIMESTAMPNS, RemoteMedia, RtpSession  # noqa: E402
from tests.unit.conversation_fakes import FakeClock, FakeModels, speech_frames  # noqa: E402

TICK_S = 0.020
WARMUP_S = 120.0
QUESTIONS = (1, 2, 5, 6)  # not 3 ("okay thanks bye": the agent would hang up) nor 4 (a transfer)
LOUD_RMS = 1000.0  # the fake VAD's threshold: a received frame above it is speech
TRACE_FRAMES = 1  # each extra frame makes the run ~1.5x slower
REPO_DIRS = tuple(str(ROOT / d) for d in ("gateway", "rtp", "models", "tests"))


class CountingLog:
    """A structlog-like logger that only counts events (a list of them would be a leak of ours)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def bind(self, **_: object) -> CountingLog:
        return self

    def __getattr__(self, level: str):
        def emit(event: str, *args: object, **fields: object) -> None:
            self.counts[event] += 1

        return emit


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


class LossyLink:
    """UDP relay between the two sessions: drops `loss` of the datagrams, holds `late` of them
    back 1-3 ticks (they then arrive after newer ones: jitter and reordering)."""

    def __init__(self, rng: random.Random, loss: float = 0.01, late: float = 0.03):
        self.rng = rng
        self.loss = loss
        self.late = late
        self.gateway_side = _udp()  # the gateway session's remote address
        self.caller_side = _udp()  # the caller session's remote address
        self._routes: list[tuple[socket.socket, socket.socket, tuple[str, int]]] = []
        self._held: list[tuple[int, socket.socket, bytes, tuple[str, int]]] = []
        self.forwarded = self.dropped = self.delayed = 0

    def connect(self, gateway_port: int, caller_port: int) -> None:
        self._routes = [
            (self.gateway_side, self.caller_side, ("127.0.0.1", caller_port)),
            (self.caller_side, self.gateway_side, ("127.0.0.1", gateway_port)),
        ]

    def pump(self, tick: int) -> None:
        due = [h for h in self._held if h[0] <= tick]
        if due:
            self._held = [h for h in self._held if h[0] > tick]
        for sock_in, sock_out, dest in self._routes:
            while True:
                try:
                    data = sock_in.recv(2048)
                except BlockingIOError:
                    break
                r = self.rng.random()
                if r < self.loss:
                    self.dropped += 1
                elif r < self.loss + self.late:
                    self.delayed += 1
                    self._held.append((tick + self.rng.randint(1, 3), sock_out, data, dest))
                else:
                    self.forwarded += 1
                    sock_out.sendto(data, dest)
        for _, sock_out, data, dest in due:
            self.forwarded += 1
            sock_out.sendto(data, dest)

    def close(self) -> None:
        self.gateway_side.close()
        self.caller_side.close()


class ScriptedCaller:
    """The caller session's listener: asks a question every 12-18 s (after the bot has paused),
    sometimes barges in on the answer, and presses a key every few minutes."""

    def __init__(self, rng: random.Random, clock: FakeClock):
        self.rng = rng
        self.clock = clock
        self.session: RtpSession | None = None
        self._talk: list[np.ndarray] = []
        self._next_question = clock() + 3.0
        self._next_dtmf = clock() + rng.uniform(120, 240)
        self._bot_since: float | None = None  # start of the bot speech we hear now
        self._bot_last = 0.0
        self._barge_after: float | None = None
        self.questions = self.barge_ins = self.digits = self.bot_frames = 0
        self._utterances = 0

    @property
    def talking(self) -> bool:
        return bool(self._talk)

    def _say(self, question: int) -> None:
        self._utterances += 1
        self._talk = speech_frames(question, self.rng.uniform(1.0, 2.0), seed=self._utterances)
        self._talk.reverse()  # popped from the end

    def on_frame(self, frame: JitterFrame, echo_cancelled: np.ndarray | None) -> OutboundFrame | None:
        pcm = self._answer(frame)
        return None if pcm is None else OutboundFrame(pcm)

    def _answer(self, frame: JitterFrame) -> np.ndarray | None:
        now = self.clock()
        loud = frame.type is FrameType.NORMAL and float(np.sqrt(np.mean(frame.pcm.astype(np.float32) ** 2))) > LOUD_RMS
        if loud:
            self.bot_frames += 1
            if self._bot_since is None or now - self._bot_last > 0.5:
                self._bot_since = now  # the bot starts an answer: barge in on this one?
                self._barge_after = self.rng.uniform(0.6, 2.0) if self.rng.random() < 0.2 else None
            self._bot_last = now
        if self._talk:
            return self._talk.pop()
        bot_talking = now - self._bot_last < 0.6
        if (
            bot_talking
            and self._barge_after is not None
            and self._bot_since is not None
            and now - self._bot_since >= self._barge_after
        ):
            self._barge_after = None
            self.barge_ins += 1
            self._say(self.rng.choice(QUESTIONS))
            self._next_question = now + self.rng.uniform(12, 18)
            return self._talk.pop()
        if not bot_talking and now >= self._next_question:
            self.questions += 1
            self._say(self.rng.choice(QUESTIONS))
            self._next_question = now + self.rng.uniform(12, 18)
            return self._talk.pop()
        if not bot_talking and now >= self._next_dtmf and self.session is not None:
            self.digits += 1
            self.session.send_dtmf(self.rng.choice("0123456789*#"))
            self._next_dtmf = now + self.rng.uniform(120, 240)
        return None

    def on_dtmf(self, digit: str) -> None:
        pass

    def on_inactive(self, idle_s: float) -> None:
        raise RuntimeError(f"caller session: no RTP for {idle_s:.1f} s")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def repo_snapshot() -> tracemalloc.Snapshot:
    filters = [tracemalloc.Filter(True, f"{d}/*", all_frames=True) for d in REPO_DIRS]
    gc.collect()  # a full collection also empties the free lists: both snapshots start from the same state
    return tracemalloc.take_snapshot().filter_traces(filters)


def innermost_repo_frame(traceback: tracemalloc.Traceback) -> str:
    for frame in traceback:  # most recent call first
        if frame.filename.startswith(REPO_DIRS):
            return f"{Path(frame.filename).relative_to(ROOT)}:{frame.lineno}"
    return "?"


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 5):
    """(site, size growth, count growth) of the sites that grew most, by innermost repo frame; and
    the growth of all repo sites together."""
    size: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for stat in after.compare_to(before, "traceback"):
        site = innermost_repo_frame(stat.traceback)
        size[site] += stat.size_diff
        count[site] += stat.count_diff
    ranked = sorted(size, key=size.__getitem__, reverse=True)[:limit]
    return [(site, size[site], count[site]) for site in ranked], sum(size.values())


def state_sizes(agent: ConversationAgent, session: RtpSession) -> dict[str, int]:
    """Lengths of the containers a call keeps for its whole life (private attributes: this is a probe)."""
    playout, controller = agent.playout, agent.controller
    return {
        "history": len(controller.history.messages),
        "caller_lines": len(controller.history.caller_lines),
        "spoken": len(controller.history._spoken),
        "to_log": len(controller.turn_log._pending),
        "playout_released": len(playout._released),
        "playout_cut": len(playout._cut),
        "playout_listeners": len(playout._listeners),
        "playout_started": len(playout._started),
        "playout_pieces": len(playout._pieces),
        "jitter_packets": len(session._jitter._packets),
    }


def prompt_size(messages) -> tuple[int, int]:
    return len(messages), sum(approx_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated length of the call")
    parser.add_argument("--report-every", type=float, default=10.0, help="simulated minutes between reports")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--trace-frames",
        type=int,
        default=TRACE_FRAMES,
        help="tracemalloc traceback depth (more: sites attributed through library frames, slower)",
    )
    args = parser.parse_args()
    if args.minutes * 60 <= WARMUP_S:
        parser.error(f"--minutes must be more than the {WARMUP_S / 60:g}-minute warm-up")

    tracemalloc.start(args.trace_frames)
    rng = random.Random(args.seed)
    random.seed(args.seed)  # the sessions' SSRCs, sequence numbers and RTCP intervals
    clock = FakeClock()
    models = FakeModels(clock, llm={"reply_words": 12})
    log = CountingLog()
    records: Counter[str] = Counter()
    hangups: list[str] = []
    settings = ConversationSettings(
        greeting="Hello there.", instructions="Be brief.", reprompt_after_s=60, hangup_after_s=120
    )
    context = CallContext(
        call_id="soak-call-0001",
        direction="inbound",
        local_uri="sip:agent@127.0.0.1",
        remote_uri="sip:caller@127.0.0.1",
        agent_name="",
        hangup=hangups.append,
        send_dtmf=lambda digits: None,
        log=log,
        record=lambda kind, **fields: records.update((kind,)),
    )
    agent = ConversationAgent(context, settings, ConversationServices(models), clock=clock)

    link = LossyLink(rng)
    ports = PortAllocator("127.0.0.1", 48600, 48699)
    caller = ScriptedCaller(rng, clock)
    gateway = RtpSession(
        ports.allocate(), CallMedia(agent, lambda idle: hangups.append(f"rtp_inactive {idle}")), log=log
    )
    far = RtpSession(ports.allocate(), caller, log=log)
    caller.session = far
    for session in (gateway, far):  # arrival time = tick time (fake), not the kernel's real clock
        for sock in (session.ports.rtp_socket, session.ports.rtcp_socket):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 0)
    link.connect(gateway.local_port, far.local_port)
    gateway.configure(RemoteMedia(link.gateway_side.getsockname(), ("127.0.0.1", far.ports.rtcp_port), PCMU))
    far.configure(RemoteMedia(link.caller_side.getsockname(), ("127.0.0.1", gateway.ports.rtcp_port), PCMU))
    agent.on_start()

    ticks = int(round(args.minutes * 60 / TICK_S))
    warmup_tick = int(round(WARMUP_S / TICK_S))
    report_ticks = max(1, int(round(args.report_every * 60 / TICK_S)))
    minute_ticks = int(round(60 / TICK_S))
    due = [warmup_tick + k * report_ticks for k in range(1, (ticks - warmup_tick) // report_ticks + 1)]
    due = [warmup_tick, *(t for t in due if t < ticks), ticks]
    rows: list[tuple[float, int, int, int]] = []  # (simulated minute, traced, traced peak, VmRSS KiB)
    sizes: list[dict[str, int]] = []
    baseline: tracemalloc.Snapshot | None = None
    busy_ticks = 0
    last_prompt = None
    wall_at_baseline = 0.0

    def busy() -> bool:
        return (
            bool(clock._waiting)
            or not agent.controller._events.empty()
            or any(t.name.startswith(("reply-", "speaker-")) for t in threading.enumerate())
        )

    def quiet() -> bool:
        """Nobody talks and nothing is being prepared: checkpoints are comparable moments of the call."""
        return not caller.talking and not agent.playout._frames and not agent.turn_taker.policy.in_speech and not busy()

    def checkpoint(tick: int) -> None:
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rows.append((tick * TICK_S / 60, current, peak, rss_kib()))
        sizes.append(state_sizes(agent, gateway))

    start_wall = time.perf_counter()
    tick = 0
    while due:
        tick += 1
        clock.advance(TICK_S)
        now = clock()
        far.tick(now)
        link.pump(tick)
        gateway.tick(now)
        link.pump(tick)
        clock.settle()
        if busy():
            busy_ticks += 1
            time.sleep(0.001)  # real time for the agent's threads to act on what woke them
        if tick % minute_ticks == 0:  # keep the fakes' own logs bounded (they are test scaffolding)
            if models.llm.prompts:
                last_prompt = models.llm.prompts[-1]
            models.llm.prompts.clear()
            models.stt.calls.clear()
            models.tts.texts.clear()
        if tick >= due[0] and quiet():  # the first quiet tick at or after the checkpoint is due
            due.pop(0)
            if baseline is None:
                baseline = repo_snapshot()  # taken first: this reading and the end's both include it
                wall_at_baseline = time.perf_counter()
                checkpoint(tick)
            elif due:
                checkpoint(tick)
        if hangups:
            raise SystemExit(f"the call ended early at {tick * TICK_S:.0f} s: {hangups}")
    wall_s = time.perf_counter() - start_wall
    measured_wall_s = time.perf_counter() - wall_at_baseline
    checkpoint(tick)  # the end: read before the final snapshot exists
    assert baseline is not None
    final = repo_snapshot()
    tracemalloc_kib = tracemalloc.get_tracemalloc_memory() // 1024
    if models.llm.prompts:
        last_prompt = models.llm.prompts[-1]
    stats = gateway.snapshot()
    far_stats = far.snapshot()
    agent.on_stop()
    gateway.close()
    far.close()
    link.close()
    models.close()
    growth, repo_growth = top_growth(baseline, final)

    sim_min = tick * TICK_S / 60
    base, end = rows[0], rows[-1]
    span_min = end[0] - base[0]
    print(f"## Soak: one call for {sim_min:.1f} simulated minutes (bench/bench_soak.py)\n")
    print(
        f"{tick} ticks of 20 ms, seed {args.seed}, tracemalloc depth {args.trace_frames}; wall time "
        f"{wall_s:.1f} s ({sim_min * 60 / wall_s:.0f}x real time; {100 * busy_ticks / tick:.1f} % of the ticks "
        "gave the agent's threads 1 ms). Readings are taken at the first quiet moment (nobody talking, no "
        "reply in preparation) once a checkpoint is due.\n"
    )
    print(
        "| simulated minute | traced current (KiB) | traced peak since last row (KiB) | VmRSS (KiB) "
        "| history messages | caller lines |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for (minute, current, peak, rss), size in zip(rows, sizes, strict=True):
        label = " (baseline)" if (minute, current) == base[:2] else " (end)" if (minute, current) == end[:2] else ""
        print(
            f"| {minute:.1f}{label} | {current / 1024:.0f} | {peak / 1024:.0f} | {rss} "
            f"| {size['history']} | {size['caller_lines']} |"
        )
    traced_growth = end[1] - base[1]
    rss_growth = end[3] - base[3]
    print(
        f"\nGrowth from minute {base[0]:.1f} to {end[0]:.1f} ({span_min:.1f} simulated minutes, "
        f"{measured_wall_s:.0f} s wall): traced {traced_growth / 1024:+.1f} KiB "
        f"({traced_growth / 1024 / span_min:+.2f} KiB per simulated minute; {repo_growth / 1024:+.1f} KiB of it "
        f"allocated from this repository's lines), VmRSS {rss_growth:+d} KiB ({rss_growth / span_min:+.1f} KiB "
        f"per simulated minute; tracemalloc's own bookkeeping is {tracemalloc_kib} KiB of the end RSS).\n"
    )
    print("Top allocation sites that grew (end vs. baseline snapshot, innermost frame in this repository):\n")
    print("| site | code | growth (KiB) | blocks |")
    print("|---|---|---:|---:|")
    for site, size, count in growth:
        file, line = site.rsplit(":", 1)
        code = linecache.getline(str(ROOT / file), int(line)).strip()[:70].replace("|", "\\|")
        print(f"| {site} | `{code}` | {size / 1024:+.1f} | {count:+d} |")
    print(
        "\nLong-lived per-call state, baseline -> end: "
        + ", ".join(f"{key} {sizes[0][key]} -> {sizes[-1][key]}" for key in sizes[0])
        + "."
    )
    if last_prompt is not None:
        n, tokens = prompt_size(last_prompt)
        print(
            f"\nLast LLM prompt: {n} messages, ~{tokens} tokens by `approx_tokens` with the per-message overhead "
            f"(budget history_tokens={settings.history_tokens})."
        )
    counts = log.counts
    print(
        f"\nConversation: the caller asked {caller.questions} questions and barged in {caller.barge_ins} times; "
        f"{counts['turn']} turns logged, {counts['barge_in']} barge-ins detected, {counts['turn_ignored']} turns "
        f"ignored, {caller.digits} DTMF keys sent / {stats.dtmf_received} received, {counts['reply_timeout']} "
        f"reply timeouts, {counts['reply_failed']} failed replies."
    )
    print(
        f"Media: the gateway sent {stats.packets_sent} and received {stats.packets_received} RTP packets, RTCP "
        f"sent {stats.rtcp_sent} / received {stats.rtcp_received}; the link dropped {link.dropped} and held back "
        f"{link.delayed}; gateway jitter buffer lost {stats.jitter.get('lost')}, late {stats.jitter.get('late')}, "
        f"concealed {stats.jitter.get('concealed')} frames; the caller received {far_stats.packets_received}."
    )


if __name__ == "__main__":
    main()
