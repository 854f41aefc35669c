"""Did Whisper really hear it? Signals for the turns the planner would answer "I don't have that information".

Offline, on what the gateway's Stt gets for each corpus turn (`bench_stt.corpus`: the caller's speech
with the condition's background, codec and loss), with the gateway's defaults (tiny.en, beam 2, the
sample agent's vocabulary prompt). Each turn is transcribed as the gateway does, judged
(`confidence.judge`) and planned (`planner.plan_turn` on the sample business, no history); the turns
that end on the don't-know path (heard CLEAR or UNSURE, nothing in the facts) are the ones a better
signal must sort: misheard (WER > `HEARD_WER`) should be asked again, heard well should get the
don't-know answer. Candidates per turn:

- word probabilities (`Transcript.word_probs`, one alignment pass): the least likely word, and the
  cost of that pass (the same transcription with `word_probs` off);
- a second decode of the same audio (greedy, no prompt) and how far it is from the first (WER of one
  against the other): two decodings that disagree did not hear the same thing.

    flock /work/heavy.lock .venv/bin/python bench/bench_hearing.py --split tune --json hearing.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_stt import corpus, prompt_for  # noqa: E402
from bench.listening_score import HEARD_WER  # noqa: E402
from bench.listening_spec import ANSWERABLE, Split  # noqa: E402
from bench.sample_business import INSTRUCTIONS  # noqa: E402
from bench.wer import word_errors  # noqa: E402
from gateway.conversation.confidence import Hearing, doubted_words, judge  # noqa: E402
from gateway.conversation.planner import asks_again, plan_turn  # noqa: E402
from gateway.conversation.settings import ConversationSettings  # noqa: E402
from gateway.conversation.skills import AgentSkills  # noqa: E402
from gateway.conversation.text_turn import TextVerdict, judge_text  # noqa: E402
from gateway.knowledge.index import KnowledgeBase  # noqa: E402
from models.whisper import WhisperConfig, WhisperStt  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402


def sample_skills() -> AgentSkills:
    """The sample agent's skills as the gateway builds them: its listed facts indexed for retrieval."""
    knowledge = KnowledgeBase([], texts={"instructions": INSTRUCTIONS})
    knowledge.build()
    return AgentSkills("front-desk", INSTRUCTIONS, knowledge=knowledge)


def measure(split: Split, quick: bool) -> list[dict]:
    items = corpus((split,), quick)
    prompt = prompt_for("vocabulary")
    settings = ConversationSettings()
    skills = sample_skills()
    main = WhisperStt(WhisperConfig())
    plain = WhisperStt(WhisperConfig(word_probs=False))  # the cost of the alignment pass
    second = WhisperStt(WhisperConfig(beam_size=1, word_probs=False))
    warm = np.zeros(16000, dtype=np.float32)
    for stt in (main, plain, second):
        stt.transcribe(warm)
    rows = []
    for item in items:
        if item.kind == "terms":
            continue
        audio = int16_to_float(resample(item.pcm, 8000, 16000))
        heard = main.transcribe(audio, prompt=prompt)
        without = plain.transcribe(audio, prompt=prompt)
        other = second.transcribe(audio, prompt=None)
        hearing = judge(heard, prompt)
        plan = None
        if hearing in (Hearing.CLEAR, Hearing.UNSURE):
            plan = plan_turn(skills, heard.text, transfer_notice=settings.transfer_notice,
                             unknown_answer=settings.unknown_answer)
        unknown = skills.unknown_words(heard.text) if plan and plan.unknown else ()
        doubted = bool(plan and plan.unknown and doubted_words(heard, unknown))
        before, after = (plan is not None and asks_again(hearing, plan, after_repeat_request=False,
                                                         repeat_request=settings.repeat_request, text=heard.text,
                                                         doubted=d) for d in (False, doubted))
        wer = word_errors(item.reference, heard.text).rate if item.reference else 1.0
        rows.append({"condition": item.condition, "kind": item.kind, "reference": item.reference,
                     "answerable": item.reference in ANSWERABLE, "heard": heard.text, "wer": round(wer, 3),
                     "hearing": hearing.value, "unknown": bool(plan and plan.unknown),
                     "unknown_words": list(unknown), "doubted": doubted, "asked_before": before, "asked_after": after,
                     "complete": judge_text(heard.text) is TextVerdict.COMPLETE,
                     "avg_logprob": round(heard.avg_logprob, 3), "no_speech_prob": round(heard.no_speech_prob, 3),
                     "word_probs": list(heard.word_probs), "second": other.text,
                     "disagreement": round(word_errors(heard.text, other.text).rate, 3) if heard.text else 1.0,
                     "ms": round(heard.elapsed_s * 1000, 1),
                     "ms_without_word_probs": round(without.elapsed_s * 1000, 1),
                     "ms_second": round(other.elapsed_s * 1000, 1)})
        print(f"{item.kind:12} {wer:4.2f} {hearing.value:8} unknown={rows[-1]['unknown']!s:5} doubted={doubted!s:5} "
              f"min_wp={min(heard.word_probs, default=1):.2f} dis={rows[-1]['disagreement']:.2f} "
              f"{item.reference!r} -> {heard.text!r} | {other.text!r}", flush=True)
    for stt in (main, plain, second):
        stt.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "held_out"), default="tune")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write every turn's signals here")
    args = parser.parse_args()
    t = time.monotonic()
    rows = measure(Split(args.split), args.quick)
    print(f"{len(rows)} items in {time.monotonic() - t:.0f} s")
    speech = [r for r in rows if r["reference"]]
    for key in ("ms", "ms_without_word_probs", "ms_second"):
        values = [r[key] for r in speech]
        print(f"{key}: p50 {np.percentile(values, 50):.0f} p95 {np.percentile(values, 95):.0f}")
    path = [r for r in rows if r["unknown"]]
    print(f"on the don't-know path: {len(path)} ({sum(r['wer'] > HEARD_WER for r in path)} misheard or not speech)")
    print("| rule | don't know: misheard or not speech | don't know: heard well | repeat: heard well "
          "| repeat: misheard or not speech |\n|---|---:|---:|---:|---:|")
    rules = (("before (unsure and not a whole question)", "asked_before"), ("after (+ doubted words)", "asked_after"))
    for rule, key in rules:
        well = [r for r in path if r["wer"] <= HEARD_WER]
        mis = [r for r in path if r["wer"] > HEARD_WER]
        print(f"| {rule} | {sum(not r[key] for r in mis)} / {len(mis)} | {sum(not r[key] for r in well)} / {len(well)} "
              f"| {sum(r[key] for r in well)} / {len(well)} | {sum(r[key] for r in mis)} / {len(mis)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
