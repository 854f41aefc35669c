"""Answer quality on businesses the agent was never tuned for (issue 13): facts, refusals, parroting, tools.

Run from the repository root (the LLM runs are CPU heavy: take the shared lock)::

    flock /work/heavy.lock .venv/bin/python bench/bench_answers.py --split tune
    .venv/bin/python bench/bench_answers.py --split tune --retrieval-only   # seconds: no LLM
    flock /work/heavy.lock .venv/bin/python bench/bench_answers.py --split held_out   # the lead's figures

The businesses, the fixed tune/held-out split and the misheard turns are in ``bench/answer_spec.py``.
Every business runs in two variants (facts in a knowledge file, or the same facts in ``instructions``)
and two hearings (the caller's words as written, and as misheard), each scripted call with its own
history. A turn goes through the agent's own stages exactly as ``bench/bench_quality.py`` drives them
(its ``Caller``: ``plan_turn``, the history cut, the ``Generator``) and is judged by its ``judge``.

Scores, per variant and hearing, over the split's businesses:
  *facts right*       fact turns whose reply has every keyword group, no forbidden pattern and no tool call;
  *wrong answers*     fact turns answered (not refused) but wrong, plus refusal turns answered with an
                      invention, over all fact and refusal turns;
  *correct refusals*  refusal turns refused without inventing;
  *refusal precision* of the turns the agent refused (a refusal marker, no call, not a right answer),
                      the share the business really does not answer;
  *asked again*       fact and refusal turns answered with the agent's repeat request or "could you say it
                      again" line: neither right nor wrong (the caller is asked to repeat a question the
                      agent did not hear well), so not counted in *wrong answers*; wanted on misheard
                      words, a cost on clean ones;
  *repeated answers*  model replies (fixed lines left out, >= 4 words) that repeat (>= 0.85 similar)
                      an earlier model reply of the same call given to a different question;
                      *repeated wrong*: those that were not a right answer as well;
  *tool precision / recall* as in bench_quality;
  *recall@1 / @3*     fact turns whose right chunk (the turn's ``chunk`` phrase) the agent's retrieval
                      ranks first / in its top three; 0 when the agent retrieves nothing (no index).
``--retrieval-only`` skips the LLM: recall@k and the planner's own refusals (turns settled with
``unknown_answer`` before the model) against the expected refusals.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import time
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.answer_spec import NOISE, VARIANTS, Business, businesses  # noqa: E402
from bench.bench_quality import Caller, Outcome, Turn, call_correct, judge  # noqa: E402
from gateway.conversation.history import HistoryShape  # noqa: E402
from gateway.conversation.planner import is_goodbye, plan_turn  # noqa: E402
from gateway.conversation.settings import conversation_settings  # noqa: E402
from gateway.conversation.skills import AgentSkills  # noqa: E402
from models.base import ChatMessage, Llm  # noqa: E402
from models.llama import LlamaConfig, LlamaCppLlm  # noqa: E402
from models.openai_compat import OpenAiCompatibleLlm, OpenAiConfig  # noqa: E402
from models.registry import resolve_llm_15b  # noqa: E402

SAME_REPLY = 0.85  # SequenceMatcher ratio at which two replies are the same answer
MIN_REPEAT_WORDS = 4


@dataclass
class Scored:
    business: str
    variant: str
    noise: str
    turn: Turn  # as the agent heard it
    outcome: Outcome | None  # None in --retrieval-only
    rank: int | None  # fact turns: 1-based rank of the right chunk among those retrieved (None: not retrieved)
    refused: bool = False
    repeated: bool = False
    asked_again: bool = False  # the reply asks the caller to say it again


# -- running -----------------------------------------------------------------------------------------


def right_chunk_rank(skills: AgentSkills, said: str, phrase: str, history: list[ChatMessage]) -> int | None:
    """Where the agent's retrieval ranks the chunk holding `phrase` for `said` (1-based), or None.
    The lookup is the planner's own (a follow-up is looked up with the question before it)."""
    plan = plan_turn(skills, said, transfer_notice="", unknown_answer="", history=history)
    retrieval = skills.retrieve(plan.query or said, loose=plan.loose)
    if retrieval is None:
        return None
    want = _norm(phrase)
    for i, chunk in enumerate(retrieval.chunks, 1):
        if want in _norm(f"{chunk.heading} {chunk.text}"):
            return i
    return None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("\u2019", "'")))


def run_business(business: Business, variant: str, noise: str, llm: Llm | None,
                 temperature: float, shape: HistoryShape = HistoryShape.FULL) -> list[Scored]:
    cases = business.cases(variant, noise)
    clean = business.turns
    scored: list[Scored] = []
    if llm is None:
        skills = AgentSkills.build(cases.agent)
        settings = conversation_settings(cases.agent)
        try:
            for conv, clean_conv in zip(cases.conversations, clean, strict=True):
                history: list[ChatMessage] = []
                for turn, original in zip(conv, clean_conv, strict=True):
                    rank = _rank(skills, business, turn, original, history)
                    s = Scored(business.name, variant, noise, turn, None, rank)
                    if turn.expect in ("fact", "refusal") and not is_goodbye(turn.said):
                        plan = plan_turn(skills, turn.said, transfer_notice=settings.transfer_notice,
                                         unknown_answer=settings.unknown_answer, history=history)
                        s.refused = plan.unknown
                    scored.append(s)
                    history.append(ChatMessage("user", turn.said))
        finally:
            skills.close()
        return scored
    caller = Caller(cases.agent, llm, temperature, shape=shape)
    fixed = caller.fixed_lines()
    ask_again = tuple(line for line in (caller.settings.not_understood, caller.settings.repeat_request) if line)
    llm.warm_up(caller.skills.system_prompt)
    try:
        for conv, clean_conv in zip(cases.conversations, clean, strict=True):
            outcomes = caller.conversation(conv)
            call: list[Scored] = []
            asked: list[ChatMessage] = []
            for turn, original, outcome in zip(conv, clean_conv, outcomes, strict=True):
                outcome.passed = judge(outcome, cases)
                rank = _rank(caller.skills, business, turn, original, asked)
                asked.append(ChatMessage("user", turn.said))
                s = Scored(business.name, variant, noise, turn, outcome, rank)
                s.refused = _refused(outcome, cases.refusal_markers)
                s.repeated = _repeats(outcome, [c.outcome for c in call if c.outcome is not None], fixed)
                s.asked_again = turn.expect in ("fact", "refusal") and not outcome.passed and outcome.call is None \
                    and any(line in outcome.reply for line in ask_again)
                call.append(s)
                _progress(s)
            scored += call
    finally:
        caller.skills.close()
    return scored


def _rank(skills: AgentSkills, business: Business, turn: Turn, original: Turn,
          history: list[ChatMessage]) -> int | None:
    if turn.expect != "fact":
        return None
    return right_chunk_rank(skills, turn.said, business.chunks[(original.conversation, original.said)], history)


def _refused(outcome: Outcome, markers: tuple[str, ...]) -> bool:
    turn = outcome.turn
    if turn.expect not in ("fact", "refusal") or outcome.call is not None:
        return False
    if turn.expect == "fact" and outcome.passed:
        return False
    reply = outcome.reply.lower().replace("\u2019", "'")
    return any(m in reply for m in markers)


def _repeats(outcome: Outcome, earlier: list[Outcome], fixed: set[str]) -> bool:
    """A model reply that says again what it said to an earlier, different question of the call.
    Fixed lines ("One moment, please.") are left out first; a reply of fewer than MIN_REPEAT_WORDS
    words ("Yes, we do.") is not an answer one can repeat."""
    mine = _model_words(outcome, fixed)
    if len(mine.split()) < MIN_REPEAT_WORDS:
        return False
    for before in earlier:
        if _norm(before.turn.said) == _norm(outcome.turn.said):
            continue
        if SequenceMatcher(None, mine, _model_words(before, fixed)).ratio() >= SAME_REPLY:
            return True
    return False


def _model_words(outcome: Outcome, fixed: set[str]) -> str:
    if not outcome.route.startswith("llm"):
        return ""
    return _norm(" ".join(c for c in (outcome.spoken or [outcome.reply]) if c not in fixed))


def _progress(s: Scored) -> None:
    o = s.outcome
    assert o is not None
    print(f"{s.business:12} {s.variant[:5]} {s.noise:5} {'ok  ' if o.passed else 'FAIL'} {o.turn.expect:7} "
          f"{'REPEAT ' if s.repeated else ''}{o.turn.said!r} -> {o.reply[:100]!r}", file=sys.stderr, flush=True)


# -- scoring -----------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> dict[str, Any]:
    return {"n": num, "of": den, "pct": round(100 * num / den, 1) if den else None}


def summarize(rows: list[Scored]) -> dict[str, Any]:
    facts = [r for r in rows if r.turn.expect == "fact"]
    refusals = [r for r in rows if r.turn.expect == "refusal"]
    refused = [r for r in rows if r.refused]
    out: dict[str, Any] = {
        "turns": len(rows),
        "recall_at_1": _ratio(sum(r.rank == 1 for r in facts), len(facts)),
        "recall_at_3": _ratio(sum(r.rank is not None and r.rank <= 3 for r in facts), len(facts)),
        "refusal_precision": _ratio(sum(r.turn.expect == "refusal" for r in refused), len(refused)),
    }
    if any(r.outcome is None for r in rows):
        out["planner_refusals_of_expected"] = _ratio(sum(r.refused for r in refusals), len(refusals))
        return out
    outcomes = [r.outcome for r in rows if r.outcome is not None]
    wrong = sum(not r.outcome.passed and not r.refused and not r.asked_again for r in [*facts, *refusals]
                if r.outcome)
    made = [o for o in outcomes if o.call is not None]
    expected = [o for o in outcomes if o.turn.expect == "tool"]
    first = [o.first_token_ms for o in outcomes if o.first_token_ms is not None]
    out |= {
        "facts_right": _ratio(sum(r.outcome.passed for r in facts if r.outcome), len(facts)),
        "wrong_answers": _ratio(wrong, len(facts) + len(refusals)),
        "correct_refusals": _ratio(sum(r.outcome.passed for r in refusals if r.outcome), len(refusals)),
        "asked_again": _ratio(sum(r.asked_again for r in [*facts, *refusals]), len(facts) + len(refusals)),
        "repeated_answers": sum(r.repeated for r in rows),
        # of those, the ones that were not right: parroting proper (a right fact said again for a follow-up
        # whose answer is the same sentence, "what does that include" after the call-out fee, is not)
        "repeated_wrong": sum(r.repeated and not (r.outcome and r.outcome.passed) for r in rows),
        "tool_precision": _ratio(sum(call_correct(o.turn, o.call) for o in made), len(made)),
        "tool_recall": _ratio(sum(call_correct(o.turn, o.call) for o in expected), len(expected)),
        "median_first_token_ms": round(statistics.median(first)) if first else None,
    }
    return out


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "n/a" if value["pct"] is None else f"{value['pct']:g} % ({value['n']}/{value['of']})"
    return "n/a" if value is None else str(value)


def print_tables(groups: dict[str, dict[str, Any]]) -> None:
    keys = list(next(iter(groups.values())).keys())
    print("| measure | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for key in keys:
        print(f"| {key.replace('_', ' ')} | " + " | ".join(_cell(g.get(key)) for g in groups.values()) + " |")


def print_failures(rows: list[Scored]) -> None:
    print("\n| business | variant | hearing | caller | expected | got | repeat |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        o = r.outcome
        if o is None or (o.passed and not r.repeated):
            continue
        got = (o.reply + (f" CALL {o.call.name}{o.call.arguments}" if o.call else "")).replace("|", "\\|")
        print(f"| {r.business} | {r.variant} | {r.noise} | {o.turn.said} | {o.turn.expect} | {got[:160]} "
              f"| {'yes' if r.repeated else ''} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("tune", "held_out", "all"), required=True)
    ap.add_argument("--variant", choices=(*VARIANTS, "both"), default="both")
    ap.add_argument("--noise", choices=(*NOISE, "both"), default="both")
    ap.add_argument("--business", action="append", help="only this business (repeatable; must be in the split)")
    ap.add_argument("--model", help="a GGUF file, or '1.5b' for the pinned Qwen2.5-Coder-1.5B (default: the "
                    "default Qwen2.5-Coder-0.5B); with --base-url, the served model's name")
    ap.add_argument("--base-url", help="an OpenAI-compatible server (http://host:port/v1): the agent's openai "
                    "LLM engine instead of llama.cpp in-process")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--history-shape", choices=[s.value for s in HistoryShape], default="full",
                    help="what of the bot's earlier answers the model sees (gateway/conversation/history.py)")
    ap.add_argument("--retrieval-only", action="store_true", help="no LLM: retrieval recall and planner refusals")
    ap.add_argument("--json", type=Path, help="write every turn's outcome here")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    chosen = [b for b in businesses(args.split) if not args.business or b.name in args.business]
    variants = VARIANTS if args.variant == "both" else (args.variant,)
    noises = NOISE if args.noise == "both" else (args.noise,)
    llm = None if args.retrieval_only else _engine(args)
    rows: list[Scored] = []
    started = time.monotonic()
    try:
        for variant in variants:
            for noise in noises:
                for business in chosen:
                    rows += run_business(business, variant, noise, llm, args.temperature,
                                         HistoryShape(args.history_shape))
    finally:
        if isinstance(llm, LlamaCppLlm):
            llm.close()
    groups = {f"{v} / {n}": summarize([r for r in rows if r.variant == v and r.noise == n])
              for v in variants for n in noises}
    groups["all"] = summarize(rows)
    model = "retrieval only" if llm is None else _model_name(llm)
    print(f"**{args.split}** ({', '.join(b.name for b in chosen)}), {model}, temperature {args.temperature:g}, "
          f"history {args.history_shape}, "
          f"{len(rows)} turns in {time.monotonic() - started:.0f} s\n")
    print_tables(groups)
    if llm is not None:
        print_failures(rows)
    print(json.dumps({"split": args.split, "model": model, "groups": groups}))
    if args.json:
        args.json.write_text(json.dumps([_row_json(r) for r in rows], indent=1), encoding="utf-8")


def _engine(args: argparse.Namespace) -> Llm:
    """The LLM engine the agent would load for these options (models/loader.py's two engines)."""
    if args.base_url:
        return OpenAiCompatibleLlm(OpenAiConfig(base_url=args.base_url, model=args.model or "default"))
    path = str(resolve_llm_15b()) if args.model == "1.5b" else args.model
    return LlamaCppLlm(LlamaConfig(model_path=path, n_ctx=2048, n_threads=args.threads))


def _model_name(llm: Llm) -> str:
    if isinstance(llm, OpenAiCompatibleLlm):
        return f"openai engine: {llm.config.model} at {llm.config.base_url}"
    assert isinstance(llm, LlamaCppLlm)
    return llm.model_path.name


def _row_json(r: Scored) -> dict[str, Any]:
    o = r.outcome
    return {"business": r.business, "variant": r.variant, "noise": r.noise, "conversation": r.turn.conversation,
            "said": r.turn.said,
            "expect": r.turn.expect, "rank": r.rank, "refused": r.refused, "repeated": r.repeated,
            "asked_again": r.asked_again,
            "route": o.route if o else None, "reply": o.reply if o else None, "passed": o.passed if o else None,
            "call": [o.call.name, o.call.arguments] if o and o.call else None,
            "first_token_ms": o.first_token_ms if o else None}


if __name__ == "__main__":
    main()
