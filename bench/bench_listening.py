"""How well the gateway listens (issue 12), on real calls, measured at the caller.

The corpus (`listening_spec.py`: voices, sentences, pauses to think, one-word answers, backchannels
and coughs, babble/pink/hum backgrounds at 20/15/10 dB SNR, A-law, 3 % loss, 40 ms jitter) is
made at bench time into `bench/.cache/listening/`. The real gateway runs as a subprocess with the
sample business's agent and default models (as bench_call_latency); SIPp places one call per
condition and a scripted RTP caller plays the turns and records the bot. Scores per
`listening_score.py`: WER per condition, cut-ins in mid-thought pauses, false barge-ins, dead air,
voice-to-voice on complete questions. Figures are reported on the `held_out` split; `tune` is for
trying changes against.

    .venv/bin/python bench/bench_listening.py [--split held_out|tune|all] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.caller_audio import background, cough, speech, speech_wide  # noqa: E402
from bench.listening_caller import ListeningCaller, SpokenTurn, call_length_s  # noqa: E402
from bench.listening_score import HEARD_WER, CallScore, Disturbance, Reply, TurnScore, score_call  # noqa: E402
from bench.listening_spec import CallPlan, Interjection, Line, Split, TurnKind, plan_calls  # noqa: E402
from bench.sample_business import front_desk_config  # noqa: E402
from bench.scripted_call import place_call  # noqa: E402
from bench.wer import NO_ERRORS  # noqa: E402
from gateway.conversation.settings import TURN_MODELS, ConversationSettings  # noqa: E402
from gateway.records import load_record  # noqa: E402
from rtp.g711 import PCMA, PCMU  # noqa: E402
from rtp.g722codec import G722  # noqa: E402
from tests.rig.gateway import GatewayProcess  # noqa: E402
from tests.rig.ports import free_port_pair  # noqa: E402
from tests.rig.rtp_peer import RtpPeer  # noqa: E402


def spoken_turns(plan: CallPlan) -> list[SpokenTurn]:
    rng = np.random.default_rng(plan.seed)
    out = []
    for turn in plan.turns:
        extra = None
        if turn.interjection is Interjection.COUGH:
            extra = cough(rng)
        elif turn.interjection is Interjection.BACKCHANNEL:
            extra = speech(plan.voice, turn.backchannel)
        wide = tuple(speech_wide(plan.voice, p) for p in turn.parts) if plan.condition.line is Line.G722 else ()
        out.append(SpokenTurn(turn, tuple(speech(plan.voice, p) for p in turn.parts), extra, wide))
    return out


def make_peer(plan: CallPlan, caller: ListeningCaller) -> RtpPeer:
    line = plan.condition.line
    return RtpPeer(free_port_pair(), on_tick=caller.on_tick, codec={Line.PCMA: PCMA, Line.G722: G722}.get(line, PCMU),
                   loss=0.03 if line is Line.LOSS else 0.0, jitter_s=0.04 if line is Line.JITTER else 0.0,
                   seed=plan.seed)


def run_plan(gw: GatewayProcess, workdir: Path, plan: CallPlan, records: Path) -> CallScore:
    caller = ListeningCaller(spoken_turns(plan))
    max_s = call_length_s(caller.turns)
    peer = make_peer(plan, caller)
    condition = plan.condition
    if condition.snr_db is not None:
        peer.play_at(0, background(condition.background, condition.snr_db, max_s, plan.split, plan.seed))
    started: list[float] = []
    call_id = place_call(gw, workdir, peer, caller.finished, max_s, started)
    gw.wait_log("call_ended", timeout=30, call_id=call_id)  # its record is complete
    barge_ins = gw.find("barge_in", call_id=call_id)
    return score_call(plan, caller.timelines, peer, barge_ins, load_record(records, call_id), started[0])


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def table(scores: list[CallScore]) -> str:
    """Per condition, then all: WER, cut-ins, false barge-ins, dead air, voice-to-voice."""
    rows = ["| condition | voice(s) | turns | WER | cut-ins / pauses | false barge-ins / chances "
            "| dead air / finished turns | voice-to-voice p50 / p95 (ms) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    groups: dict[str, list[CallScore]] = {}
    for score in scores:
        groups.setdefault(score.plan.condition.name, []).append(score)
    for name, group in [*groups.items(), ("**all**", scores)]:
        turns = [t for s in group for t in s.turns]
        replies = [r for s in group for r in s.replies]
        wer = sum((t.errors for t in turns), NO_ERRORS).rate
        lat = [t.latency_ms for t in turns if t.latency_ms is not None]
        voices = ", ".join(sorted({s.plan.voice.name for s in group})) if len(group) < 3 else f"{len(group)} calls"
        rows.append(f"| {name} | {voices} | {len(turns)} | {wer:.1%} | {sum(t.cut_ins for t in turns)} / "
                    f"{sum(t.pauses for t in turns)} | {sum(r.false_barge_in for r in replies)} / {len(replies)} | "
                    f"{sum(t.dead_air for t in turns)} / {len(turns)} | "
                    f"{percentile(lat, 50)} / {percentile(lat, 95)} |")
    return "\n".join(rows)


def breakdown(scores: list[CallScore]) -> str:
    """WER and dead air by kind of turn; false barge-ins by what disturbed the reply."""
    turns = [t for s in scores for t in s.turns]
    replies = [r for s in scores for r in s.replies]
    lines = []
    for kind in TurnKind:
        mine = [t for t in turns if t.kind is kind]
        if mine:
            lines.append(f"- {kind.value}: {len(mine)} turns, WER {sum((t.errors for t in mine), NO_ERRORS).rate:.1%}, "
                         f"dead air {sum(t.dead_air for t in mine)}")
    for what in Disturbance:
        mine = [r for r in replies if r.disturbance is what]
        if mine:
            lines.append(f"- replies disturbed by {what.value}: {len(mine)}, false barge-ins (wire) "
                         f"{sum(r.false_barge_in for r in mine)}, "
                         f"barge-in logged {sum(r.barge_in_logged for r in mine)}")
    return "\n".join(lines)


def reply_counts(turns: list[TurnScore]) -> dict[str, int]:
    """The replies to finished turns crossed with how they were heard (WER <= HEARD_WER) and whether
    the sample business can answer the question: the bad case is "I don't have that information" on a
    misheard turn (a garble refused as if the business could not help), the cost a repeat request on
    a turn heard well; a don't-know on a well-heard question the facts cannot answer is right."""
    well = [t for t in turns if t.heard_well]
    mis = [t for t in turns if not t.heard_well]

    def n(group: list[TurnScore], reply: Reply) -> int:
        return sum(t.reply is reply for t in group)

    return {"turns": len(turns), "heard_well": len(well), "misheard": len(mis),
            "dont_know_misheard": n(mis, Reply.DONT_KNOW),
            "dont_know_heard_unanswerable": n([t for t in well if not t.answerable], Reply.DONT_KNOW),
            "dont_know_heard_answerable": n([t for t in well if t.answerable], Reply.DONT_KNOW),
            "repeat_heard_well": n(well, Reply.REPEAT), "repeat_misheard": n(mis, Reply.REPEAT),
            "answer_heard_well": n(well, Reply.ANSWER), "answer_misheard": n(mis, Reply.ANSWER),
            "no_reply_heard_well": n(well, Reply.NONE), "no_reply_misheard": n(mis, Reply.NONE)}


def replies_table(scores: list[CallScore]) -> tuple[str, dict[str, dict[str, int]]]:
    """What the bot said to each finished turn, per kind of turn and in all (markdown, and the counts)."""
    turns = [t for s in scores for t in s.turns]
    groups = {kind.value: [t for t in turns if t.kind is kind] for kind in TurnKind}
    counts = {name: reply_counts(group) for name, group in [*groups.items(), ("all", turns)] if group}
    rows = [f"| turns | heard well / misheard (WER ≤ {HEARD_WER:.0%}) | **don't know: misheard** | don't know: heard, "
            "not answerable | don't know: heard, answerable | **repeat: heard well** | repeat: misheard | "
            "answer: heard well / misheard | no reply: heard well / misheard |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in counts.items():
        rows.append(f"| {name} ({c['turns']}) | {c['heard_well']} / {c['misheard']} | **{c['dont_know_misheard']}** | "
                    f"{c['dont_know_heard_unanswerable']} | {c['dont_know_heard_answerable']} | "
                    f"**{c['repeat_heard_well']}** | {c['repeat_misheard']} | {c['answer_heard_well']} / "
                    f"{c['answer_misheard']} | {c['no_reply_heard_well']} / {c['no_reply_misheard']} |")
    return "\n".join(rows), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("held_out", "tune", "all"), default="held_out")
    parser.add_argument("--quick", action="store_true", help="3 conditions, 3 turns each: a smoke run")
    parser.add_argument("--json", help="write every turn's score here")
    parser.add_argument("--keep-log", help="copy the gateway's JSON log here")
    parser.add_argument("--turn-model", choices=TURN_MODELS, default=ConversationSettings().turn_model,
                        help="the agent's turn_model (default: the settings' default)")
    parser.add_argument("--only", action="append", metavar="CONDITION",
                        help="run only this condition (by name, e.g. 'clean µ-law'; repeatable)")
    parser.add_argument("--also-line", choices=("G722",),
                        help="run each µ-law condition (clean and noisy) a second time on this line: the same "
                             "voices, sentences and noise, so the codec is all that differs")
    args = parser.parse_args()
    splits = (Split.TUNE, Split.HELD_OUT) if args.split == "all" else (Split(args.split),)
    plans = plan_calls(splits, quick=args.quick)
    if args.only:
        plans = [p for p in plans if p.condition.name in args.only]
    if args.also_line:
        line = Line(args.also_line)
        first = max((p.index for p in plans), default=-1) + 1
        plans += [replace(p, index=first + n, condition=replace(p.condition, line=line,
                                                                     name=f"{p.condition.name} on {line.value}"))
                  for n, p in enumerate(p for p in plans if p.condition.line is Line.PCMU)]
    t = time.monotonic()
    for plan in plans:
        spoken_turns(plan)  # fill the cache before the gateway competes for the CPU
    print(f"corpus: {len(plans)} calls, {sum(len(p.turns) for p in plans)} turns, made in {time.monotonic() - t:.1f} s")
    scores: list[CallScore] = []
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "records"
        config = front_desk_config(inactivity_timeout_s=3, turn_model=args.turn_model)
        config["recording"] = {"directory": str(records)}  # the turns' transcripts with their times
        gw = GatewayProcess(Path(tmp) / "gateway", config).start()
        t = time.monotonic()
        gw.wait_log("gateway_ready", timeout=180)
        print(f"gateway ready (models loaded and warmed up) in {time.monotonic() - t:.1f} s")
        loads: list[float] = []
        for plan in plans:
            t = time.monotonic()
            score = run_plan(gw, Path(tmp) / f"call{plan.index}", plan, records)
            scores.append(score)
            loads.append(os.getloadavg()[0])
            print(f"call {plan.index} ({plan.split.value}, {plan.condition.name}, {plan.voice.name}): "
                  f"{time.monotonic() - t:.0f} s, load average {loads[-1]:.2f}", flush=True)
            for turn in score.turns:
                print(f"    {turn.kind.value}: {turn.reference!r} -> {turn.heard!r} cut-ins {turn.cut_ins} "
                      f"dead air {turn.dead_air} latency {turn.latency_ms} {turn.interjection} "
                      f"reply: {turn.reply.value}", flush=True)
        gw.stop()
        if args.keep_log:
            Path(args.keep_log).write_text(gw.log_path.read_text())
    print(f"\nmachine load (1-min load average after each call, 2 cores): min {min(loads):.2f}, "
          f"median {np.median(loads):.2f}, max {max(loads):.2f}")
    replies: dict[str, dict[str, dict[str, int]]] = {}
    for split in splits:
        mine = [s for s in scores if s.plan.split is split]
        markdown, replies[split.value] = replies_table(mine)
        print(f"\n### {split.value}\n\n{table(mine)}\n\n{breakdown(mine)}\n\nReplies to finished turns:\n\n{markdown}")
    if args.json:
        out = {"calls": [asdict(s) for s in scores], "replies": replies}
        Path(args.json).write_text(json.dumps(out, default=str, indent=1))


if __name__ == "__main__":
    main()
