"""What Whisper hears of the listening corpus, offline: WER and transcribe time per STT configuration.

Why offline: `bench_listening.py` takes ~10 minutes per split through the real gateway, and its WER
mixes hearing with turn-taking (a turn cut in two is scored as two bad halves). Comparing models,
beam sizes and vocabulary prompts needs only what the Stt gets: each corpus turn as the gateway's
Transcriber would receive it (the caller's speech with its background mixed at the condition's SNR,
through µ-law or A-law, 3 % of 20 ms frames lost and concealed by the RTP engine's PLC on the loss
condition; 200 ms of preroll before the speech and 400 ms of trailing line after it, as a turn
ended on `end_of_turn_ms` holds; 8 kHz -> 16 kHz as `transcribe.py` does). The 40 ms jitter
condition is µ-law here: the jitter buffer absorbs it before the STT.

Also the turns that are no speech for the agent (each call: its background alone for 1.5 s on a
noisy line, the cough, and one question played backwards - a "mumble" with speech's sound and no
words): what the low-confidence rule (`gateway/conversation/confidence.py`) says on those, and
how often it asks a caller who spoke clearly to repeat.

    .venv/bin/python bench/bench_stt.py [--split tune] [--model tiny|base|DIR] [--beams 1,2,3]
        [--prompt none,targets,vocabulary] [--quick] [--json out.json]

Times are per transcript (the Stt's own `elapsed_s`), p50 / p95 over the speech turns; run it
under `flock /work/heavy.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.caller_audio import RATE, background, cough, speech  # noqa: E402
from bench.listening_spec import Background, CallPlan, Line, Split, TurnKind, plan_calls  # noqa: E402
from bench.sample_business import INSTRUCTIONS  # noqa: E402
from bench.wer import NO_ERRORS, WordErrors, normalise, word_errors  # noqa: E402
from gateway.conversation.confidence import Hearing, judge  # noqa: E402
from gateway.conversation.vocabulary import agent_vocabulary  # noqa: E402
from models.whisper import WhisperConfig, WhisperStt  # noqa: E402
from rtp.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode  # noqa: E402
from rtp.plc import Concealer  # noqa: E402
from rtp.resample import int16_to_float, resample  # noqa: E402

PREROLL_S, TRAIL_S, NOISE_S = 0.2, 0.4, 1.5
FRAME = 160
NOT_SPEECH = ("noise", "cough", "mumble")
TERMS = "agent terms"
# The listening corpus's sentences hold few of the sample agent's own names (4 in the tune half), so
# what the vocabulary prompt does for them is measured on these, said by the split's voices on a
# clean µ-law line (every voice says every sentence); reported apart from the corpus's WER.
TERM_SENTENCES = ("Is Doctor Patel working on Monday?", "Can I see Doctor Smith on Friday?", "Is this Harbor Dental?",
                  "What number on Harbor Street are you?", "I need an appointment with Doctor Patel.",
                  "Does Doctor Smith do cleanings?")


@dataclass(frozen=True)
class Item:
    condition: str
    kind: str  # a TurnKind value, or one of NOT_SPEECH
    reference: str
    pcm: np.ndarray  # 8 kHz int16, as the Transcriber gets it


def line(plan: CallPlan, pcm: np.ndarray, salt: int) -> np.ndarray:
    """The codec and the network of the plan's condition, as the gateway's RTP engine delivers them."""
    cond = plan.condition
    frames = [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    if cond.line is Line.PCMA:
        frames = [alaw_decode(alaw_encode(f)) for f in frames]
    else:
        frames = [ulaw_decode(ulaw_encode(f)) for f in frames]
    if cond.line is Line.LOSS:
        rng = np.random.default_rng(plan.seed + salt)
        plc = Concealer(RATE)
        frames = [plc.conceal(FRAME) if rng.random() < 0.03 else plc.good_frame(f) for f in frames]
    return np.concatenate(frames) if frames else pcm[:0]


def with_background(plan: CallPlan, parts: list[np.ndarray], pauses: list[float], salt: int) -> np.ndarray:
    """Preroll, the parts with their pauses, the trailing line; the condition's background under it all."""
    gap = [np.zeros(int(p * RATE), dtype=np.int16) for p in pauses] + [np.zeros(0, dtype=np.int16)]
    body = np.concatenate([np.zeros(int(PREROLL_S * RATE), dtype=np.int16),
                           *[x for part, g in zip(parts, gap, strict=True) for x in (part, g)],
                           np.zeros(int(TRAIL_S * RATE), dtype=np.int16)])
    cond = plan.condition
    if cond.snr_db is not None:
        bed = background(cond.background, cond.snr_db, len(body) / RATE + 1, plan.split, plan.seed + salt)
        body = np.clip(body.astype(np.int32) + bed[:len(body)], -32767, 32767).astype(np.int16)
    return line(plan, body, salt)


def corpus(splits: tuple[Split, ...], quick: bool) -> list[Item]:
    items = []
    for split in splits:
        plan = next(p for p in plan_calls((split,)) if p.condition.name == "clean µ-law")
        voices = sorted({p.voice for p in plan_calls((split,))}, key=lambda v: v.name)
        for n, (voice, text) in enumerate((v, t) for v in voices for t in TERM_SENTENCES):
            items.append(Item(TERMS, "terms", text, with_background(plan, [speech(voice, text)], [], 200 + n)))
    for plan in plan_calls(splits, quick=quick):
        name = plan.condition.name
        for n, turn in enumerate(plan.turns):
            parts = [speech(plan.voice, p) for p in turn.parts]
            items.append(Item(name, turn.kind.value, turn.reference,
                              with_background(plan, parts, list(turn.pauses_s), n)))
        if plan.condition.background is not Background.NONE:
            items.append(Item(name, "noise", "", with_background(plan, [np.zeros(int(NOISE_S * RATE), np.int16)],
                                                                 [], 100)))
        items.append(Item(name, "cough", "", with_background(plan, [cough(np.random.default_rng(plan.seed))], [], 101)))
        question = next(t for t in plan.turns if t.kind is TurnKind.QUESTION)
        items.append(Item(name, "mumble", "", with_background(plan, [speech(plan.voice, question.reference)[::-1]],
                                                              [], 102)))
    return items


def prompt_for(kind: str) -> str | None:
    """none: no prompt (what main gives this agent: it has no transfer targets); vocabulary: the
    agent's terms (vocabulary.py); names: only its multi-word names ("Dr. Patel", "Harbor Street")."""
    if kind == "none":
        return None
    terms = agent_vocabulary(INSTRUCTIONS).terms
    if kind == "names":
        terms = tuple(t for t in terms if len(t.split()) >= 2 and all(w[0].isupper() for w in t.split()))
    return ", ".join(terms) + "." if terms else None


def run(stt: WhisperStt, items: list[Item], prompt: str | None) -> list[dict]:
    out = []
    for item in items:
        heard = stt.transcribe(int16_to_float(resample(item.pcm, 8000, 16000)), prompt=prompt)
        verdict = judge(heard, prompt)
        out.append({"condition": item.condition, "kind": item.kind, "reference": item.reference, "heard": heard.text,
                    "elapsed_ms": round(heard.elapsed_s * 1000, 1), "avg_logprob": round(heard.avg_logprob, 3),
                    "no_speech_prob": round(heard.no_speech_prob, 3), "verdict": verdict.value})
    return out


def summary(label: str, rows: list[dict]) -> str:
    """One markdown row: WER per condition and overall, time p50/p95, repeat requests."""
    terms = [r for r in rows if r["kind"] == "terms"]
    term_words = set(normalise(" ".join(agent_vocabulary(INSTRUCTIONS).terms))) - {"doctor", "opening", "hours"}
    term_hits = [w in normalise(r["heard"]) for r in terms for w in normalise(r["reference"]) if w in term_words]
    terms_wer = sum((word_errors(r["reference"], r["heard"]) for r in terms), NO_ERRORS).rate
    speech_rows = [r for r in rows if r["kind"] not in (*NOT_SPEECH, "terms")]
    conditions = list(dict.fromkeys(r["condition"] for r in speech_rows))
    wer = {c: sum((word_errors(r["reference"], r["heard"]) for r in speech_rows if r["condition"] == c),
                  NO_ERRORS) for c in conditions}
    total: WordErrors = sum(wer.values(), NO_ERRORS)
    times = [r["elapsed_ms"] for r in speech_rows]
    clean = [r for r in speech_rows if r["condition"] in ("clean µ-law", "clean A-law")]
    rates = [(r, word_errors(r["reference"], r["heard"]).rate) for r in speech_rows]
    good = [r for r, rate in rates if rate <= 0.2]
    bad = [r for r, rate in rates if rate >= 0.5]
    good_asked = sum(r["verdict"] == Hearing.DOUBTFUL.value for r in good)
    bad_asked = sum(r["verdict"] == Hearing.DOUBTFUL.value for r in bad)
    clean_asked = sum(r["verdict"] == Hearing.DOUBTFUL.value for r in clean)
    junk = [r for r in rows if r["kind"] in NOT_SPEECH]
    junk_asked = sum(r["verdict"] == Hearing.DOUBTFUL.value for r in junk)
    junk_ignored = sum(r["verdict"] == Hearing.NOTHING.value for r in junk)
    cells = " | ".join(f"{wer[c].rate:.0%}" for c in conditions)
    return (f"| {label} | {cells} | **{total.rate:.1%}** | {np.percentile(times, 50):.0f} / "
            f"{np.percentile(times, 95):.0f} | {clean_asked} / {len(clean)} | {good_asked} / {len(good)} | "
            f"{bad_asked} / {len(bad)} | "
            f"{junk_asked} + {junk_ignored} / {len(junk)} | {sum(term_hits)} / {len(term_hits)} ({terms_wer:.0%}) |")


def header(rows: list[dict]) -> str:
    conditions = list(dict.fromkeys(r["condition"] for r in rows if r["kind"] not in (*NOT_SPEECH, "terms")))
    return ("| configuration | " + " | ".join(conditions) + " | all | transcribe ms p50 / p95 "
            "| asked again: clean lines | asked: good transcripts (WER ≤ 20 %) | asked: bad ones (WER ≥ 50 %) "
            "| not speech: asked + ignored "
            "| agent terms heard (WER) |\n|---|" + "---:|" * (len(conditions) + 7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "held_out", "all"), default="tune")
    parser.add_argument("--model", default="tiny", help="tiny (default), base (--base-dir) or a model dir")
    parser.add_argument("--base-dir", help="the joined whisper base directory (models.registry.resolve_whisper_base)")
    parser.add_argument("--beams", default="1")
    parser.add_argument("--prompt", default="none,vocabulary,names")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write every transcript here (appends configurations)")
    args = parser.parse_args()
    splits = (Split.TUNE, Split.HELD_OUT) if args.split == "all" else (Split(args.split),)
    t = time.monotonic()
    items = corpus(splits, args.quick)
    print(f"corpus: {len(items)} items in {time.monotonic() - t:.1f} s", flush=True)
    results: dict[str, list[dict]] = {}
    if args.json and Path(args.json).exists():
        results = json.loads(Path(args.json).read_text())
    model_dir = None
    if args.model == "base":
        from models.registry import resolve_whisper_base

        model_dir = args.base_dir or str(resolve_whisper_base())
    elif args.model != "tiny":
        model_dir = args.model
    for beam in [int(b) for b in args.beams.split(",")]:
        stt = WhisperStt(WhisperConfig(model_dir=model_dir, beam_size=beam))
        stt.transcribe(np.zeros(16000, dtype=np.float32))  # warm-up
        for prompt_kind in args.prompt.split(","):
            label = f"{args.model} beam {beam} prompt {prompt_kind}"
            rows = run(stt, items, prompt_for(prompt_kind))
            results[label] = rows
            print(header(rows) if len(results) == 1 else "", summary(label, rows), sep="\n", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
        stt.close()
    print("\nall configurations so far:")
    first = next(iter(results.values()))
    print(header(first))
    for label, rows in results.items():
        print(summary(label, rows))


if __name__ == "__main__":
    main()
