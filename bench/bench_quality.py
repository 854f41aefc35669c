"""Text-level quality of the conversation agent: facts, refusals and tool calls over scripted calls.

Run from the repository root::

    python bench/bench_quality.py                      # the default model (Qwen2.5-Coder-0.5B Q4_K_M)
    python bench/bench_quality.py --smollm             # SmolLM2-135M-Instruct (models.registry test model)
    python bench/bench_quality.py --model PATH.gguf    # any GGUF with a chat template
    python bench/bench_quality.py --cases bench/quality_cases.yaml --temperature 0

How it is measured: the agent of ``--cases`` (default ``bench/quality_cases.yaml``: Harbor Dental's
front desk, instructions without facts, the knowledge file, transfer/hangup/take_message and an HTTP
``order_status`` tool) is read through ``gateway.config.parse_config``, so the YAML is the real config
contract, and built with ``AgentSkills.build`` (the same system prompt and knowledge base as a call).
Each scripted conversation is one call with its own history, and each turn goes the way
``ConversationAgent`` takes it, minus the audio: a short goodbye ends the call (a hang-up), then
``plan_turn`` either settles the turn with a fixed line (a plain transfer request, a question the
knowledge cannot answer) or gives the LLM's user message with the retrieved facts; the LLM
(``LlamaCppLlm``, n_ctx 2048, 2 threads, the system prompt warmed up first) streams through the
agent's own generate stage (``gateway.conversation.generate.Generator``: tool-call detection,
clause splitting, the checks on the call); the fixed lines it adds (transfer notice, "message
taken", "one moment") are part of the reply. The history keeps the caller's words (not the facts) and what
the bot said, cut by ``fit_history``. Tools are never executed (no HTTP request is sent).

Scores: *fact accuracy* = fact turns whose reply has every keyword group and no forbidden pattern
(and no tool call); *correct refusals* = refusal turns whose reply says it does not know and invents
nothing (and calls no tool); *tool precision* = correct calls / all calls executed in any turn;
*tool recall* = correct calls / turns that expect one. Rejected calls are listed, not counted.
LLM time is the wall time of a turn's whole stream (first token in brackets), median over the
turns that reached the LLM; retrieval p95 is over the turns that searched the knowledge base.
Temperature 0 by default (the agent's config says 0.3) so a run is reproducible.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import AgentConfig, parse_config  # noqa: E402
from gateway.conversation.history import HistoryShape  # noqa: E402
from gateway.conversation.settings import ConversationSettings, conversation_settings  # noqa: E402
from gateway.conversation.skills import AgentSkills  # noqa: E402
from gateway.conversation.text_reply import Route, TextConversation, TextReply, with_temperature  # noqa: E402
from gateway.tools import ToolCall  # noqa: E402
from models.base import Llm  # noqa: E402
from models.llama import LlamaConfig, LlamaCppLlm  # noqa: E402
from models.registry import resolve_test_llm  # noqa: E402

AGENT = "front-desk"
EXPECTS = ("fact", "refusal", "tool", "none")


@dataclass(frozen=True)
class Turn:
    conversation: str
    said: str
    expect: str
    keywords: tuple[tuple[str, ...], ...] = ()
    forbid: tuple[str, ...] = ()
    tool: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    args_contain: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cases:
    agent: AgentConfig
    refusal_markers: tuple[str, ...]
    invented: tuple[str, ...]
    conversations: list[list[Turn]]


@dataclass
class Outcome:
    turn: Turn
    route: str  # bye | fixed | llm | llm+facts | llm-error
    reply: str
    call: ToolCall | None = None  # what the agent would execute
    rejected: ToolCall | None = None  # a call the agent's checks refused
    error: str | None = None  # the reply attempted a call but none was valid (parse_tool_call's error)
    retrieval_ms: float | None = None
    llm_ms: float | None = None
    first_token_ms: float | None = None
    passed: bool = False
    spoken: list[str] = field(default_factory=list)  # the reply's clauses and fixed lines, in order


# -- cases -------------------------------------------------------------------------------------------


def load_cases(path: Path) -> Cases:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    agent_raw = dict(data["agent"])
    if agent_raw.get("knowledge"):
        agent_raw["knowledge"] = [str(ROOT / p) for p in agent_raw["knowledge"]]
    config = parse_config({"sip": {"listen": "127.0.0.1:5060"}, "agents": {AGENT: agent_raw}}, source=str(path))
    conversations = [[load_turn(conv["name"], raw) for raw in conv["turns"]] for conv in data["conversations"]]
    return Cases(config.agents[AGENT], tuple(data.get("refusal_markers", ())), tuple(data.get("invented", ())),
                 conversations)


def load_turn(conversation: str, raw: dict[str, Any]) -> Turn:
    expect = raw["expect"]
    if expect not in EXPECTS:
        raise ValueError(f"{conversation}: {raw['say']!r}: expect must be one of {EXPECTS}, got {expect!r}")
    if expect == "tool" and not raw.get("tool"):
        raise ValueError(f"{conversation}: {raw['say']!r}: a tool turn needs `tool`")
    return Turn(conversation, str(raw["say"]), expect, _groups(raw.get("keywords", ())), tuple(raw.get("forbid", ())),
                raw.get("tool"), {k: str(v) for k, v in (raw.get("args") or {}).items()},
                {k: _groups(v) for k, v in (raw.get("args_contain") or {}).items()})


def _groups(raw: Iterable[Iterable[str]]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(str(word) for word in group) for group in raw)


# -- one call, turn by turn, the way ConversationAgent takes it ------------------------------------------


class Caller:
    """Plays scripted conversations against one agent and one LLM, through the agent's own text
    path (gateway/conversation/text_reply.py, which `voicegate chat` runs too)."""

    def __init__(self, agent: AgentConfig, llm: Llm, temperature: float, isolated: bool = False,
                 shape: HistoryShape = HistoryShape.FULL) -> None:
        self.skills = AgentSkills.build(agent)
        self.settings: ConversationSettings = with_temperature(conversation_settings(agent), temperature)
        self.llm = llm
        self.isolated = isolated  # every turn starts a new call (no history): tells history effects apart
        self.shape = shape  # what of the bot's earlier answers the model sees (history.shape_history)

    def fixed_lines(self) -> set[str]:
        return self._conversation().fixed_lines()

    def _conversation(self) -> TextConversation:
        return TextConversation(self.skills, self.settings, self.llm, self.shape, self.isolated)

    def conversation(self, turns: Sequence[Turn], progress: Any = None) -> list[Outcome]:
        call = self._conversation()
        outcomes = []
        for turn in turns:
            outcome = _outcome(turn, call.turn(turn.said))
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
        return outcomes


def _outcome(turn: Turn, reply: TextReply) -> Outcome:
    plan = reply.plan
    text = f"<{reply.error}>" if reply.route is Route.LLM_ERROR else reply.text
    return Outcome(turn, reply.route.value, text, call=reply.call, rejected=reply.rejected,
                   error=None if reply.route is Route.LLM_ERROR else reply.error,
                   retrieval_ms=plan.retrieval_ms if plan is not None else None, llm_ms=reply.llm_ms,
                   first_token_ms=reply.first_token_ms,
                   spoken=reply.spoken if reply.route in (Route.LLM, Route.LLM_FACTS) else [])


# -- scoring -----------------------------------------------------------------------------------------


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word.lower())}(?!\w)", text) is not None


def _normalized(text: str) -> str:
    return text.lower().replace("\u2019", "'")


def _matches_any(text: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)


def _groups_found(text: str, groups: Iterable[Iterable[str]]) -> bool:
    return all(any(_has_word(text, word) for word in group) for group in groups)


def call_correct(turn: Turn, call: ToolCall | None) -> bool:
    if turn.expect != "tool" or call is None or call.name != turn.tool:
        return False
    for name, value in turn.args.items():
        if re.sub(r"[^a-z0-9]", "", str(call.arguments.get(name, "")).lower()) != re.sub(r"[^a-z0-9]", "",
                                                                                          value.lower()):
            return False
    return all(_groups_found(_normalized(str(call.arguments.get(name, ""))), groups)
               for name, groups in turn.args_contain.items())


def judge(outcome: Outcome, cases: Cases) -> bool:
    turn, reply = outcome.turn, _normalized(outcome.reply)
    if turn.expect == "tool":
        return call_correct(turn, outcome.call)
    if outcome.call is not None:
        return False
    if turn.expect == "fact":
        return _groups_found(reply, turn.keywords) and not _matches_any(reply, turn.forbid)
    if turn.expect == "refusal":
        refused = any(_normalized(m) in reply for m in cases.refusal_markers)
        return refused and not _matches_any(reply, (*cases.invented, *turn.forbid))
    return True


@dataclass(frozen=True)
class Summary:
    model: str
    temperature: float
    isolated: bool
    turns: int
    fact: tuple[int, int]
    refusal: tuple[int, int]
    calls_made: int
    calls_correct: int
    calls_expected: int
    calls_rejected: int
    llm_turns: int
    median_llm_ms: float | None
    median_first_token_ms: float | None
    retrieval_p95_ms: float | None

    @property
    def precision(self) -> float | None:
        return self.calls_correct / self.calls_made if self.calls_made else None

    @property
    def recall(self) -> float | None:
        return self.calls_correct / self.calls_expected if self.calls_expected else None


def summarize(outcomes: list[Outcome], model: str, temperature: float, isolated: bool) -> Summary:
    def passed(kind: str) -> tuple[int, int]:
        of_kind = [o for o in outcomes if o.turn.expect == kind]
        return sum(o.passed for o in of_kind), len(of_kind)

    llm = [o.llm_ms for o in outcomes if o.llm_ms is not None]
    first = [o.first_token_ms for o in outcomes if o.first_token_ms is not None]
    retrieval = [o.retrieval_ms for o in outcomes if o.retrieval_ms is not None]
    return Summary(model, temperature, isolated, len(outcomes), passed("fact"), passed("refusal"),
                   calls_made=sum(o.call is not None for o in outcomes),
                   calls_correct=sum(call_correct(o.turn, o.call) for o in outcomes),
                   calls_expected=sum(o.turn.expect == "tool" for o in outcomes),
                   calls_rejected=sum(o.rejected is not None for o in outcomes), llm_turns=len(llm),
                   median_llm_ms=statistics.median(llm) if llm else None,
                   median_first_token_ms=statistics.median(first) if first else None,
                   retrieval_p95_ms=float(np.percentile(retrieval, 95)) if retrieval else None)


# -- report ------------------------------------------------------------------------------------------


def _show_call(call: ToolCall) -> str:
    return f"{call.name}({', '.join(f'{k}={v}' for k, v in call.arguments.items())})"


def _expected(turn: Turn) -> str:
    if turn.expect == "fact":
        return "fact: " + " + ".join("/".join(group) for group in turn.keywords)
    if turn.expect == "tool":
        shown = {**turn.args, **{k: "~" + "/".join(g[0] for g in v) for k, v in turn.args_contain.items()}}
        return _show_call(ToolCall(str(turn.tool), shown))
    return "no tool" if turn.expect == "none" else "refusal"


def _got(outcome: Outcome) -> str:
    parts = [outcome.reply.replace("\n", " ")]
    if outcome.call is not None:
        parts.append(f"**CALL {_show_call(outcome.call)}**")
    if outcome.rejected is not None:
        parts.append(f"(rejected {_show_call(outcome.rejected)})")
    if outcome.error is not None:
        parts.append(f"(invalid call: {outcome.error[:80]})")
    return " ".join(parts).replace("|", "\\|")


def print_table(outcomes: list[Outcome]) -> None:
    print("| # | conversation | caller | expected | route | got | pass |")
    print("|---:|---|---|---|---|---|---|")
    for i, o in enumerate(outcomes, 1):
        mark = "yes" if o.passed else "**no**"
        print(f"| {i} | {o.turn.conversation} | {o.turn.said} | {_expected(o.turn)} | {o.route} | {_got(o)} "
              f"| {mark} |")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _ms(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} ms"


def print_summary(s: Summary) -> None:
    (fp, fn), (rp, rn) = s.fact, s.refusal
    mode = ", every turn isolated" if s.isolated else ""
    print(f"\n**{s.model}** (temperature {s.temperature:g}{mode}, {s.turns} turns, {s.llm_turns} through the LLM): "
          f"fact accuracy {fp}/{fn} ({_pct(fp / fn if fn else None)}), "
          f"correct refusals {rp}/{rn} ({_pct(rp / rn if rn else None)}), "
          f"tool precision {s.calls_correct}/{s.calls_made} ({_pct(s.precision)}), "
          f"recall {s.calls_correct}/{s.calls_expected} ({_pct(s.recall)}), {s.calls_rejected} calls rejected; "
          f"median LLM {_ms(s.median_llm_ms)} per turn (first token {_ms(s.median_first_token_ms)}), "
          f"retrieval p95 {_ms(s.retrieval_p95_ms, 2)}")
    fields = {k: v for k, v in asdict(s).items() if k not in ("fact", "refusal")}
    print(json.dumps({**fields, "fact_passed": fp, "fact_turns": fn, "refusal_passed": rp, "refusal_turns": rn,
                      "fact_accuracy": fp / fn if fn else None, "refusal_accuracy": rp / rn if rn else None,
                      "tool_precision": s.precision, "tool_recall": s.recall}))


# -- main --------------------------------------------------------------------------------------------


def _progress(total: int) -> Any:
    done = [0]

    def report(outcome: Outcome) -> None:
        done[0] += 1
        print(f"[{done[0]}/{total}] {outcome.route:9} {'ok  ' if outcome.passed else 'FAIL'} {outcome.turn.said!r} -> "
              f"{outcome.reply[:90]!r}", file=sys.stderr, flush=True)

    return report


def run(cases: Cases, llm: LlamaCppLlm, temperature: float, isolated: bool = False) -> list[Outcome]:
    caller = Caller(cases.agent, llm, temperature, isolated)
    warm_s = llm.warm_up(caller.skills.system_prompt)
    total = sum(len(c) for c in cases.conversations)
    print(f"model {llm.model_path.name}: loaded in {llm.load_s:.1f} s, system prompt warmed up in {warm_s:.1f} s, "
          f"{total} turns", file=sys.stderr, flush=True)
    report = _progress(total)
    outcomes: list[Outcome] = []

    def judged(outcome: Outcome) -> None:
        outcome.passed = judge(outcome, cases)
        report(outcome)

    try:
        for turns in cases.conversations:
            outcomes += caller.conversation(turns, progress=judged)
    finally:
        caller.skills.close()
    return outcomes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--model", help="a GGUF file (default: the default Qwen2.5-Coder-0.5B)")
    which.add_argument("--smollm", action="store_true", help="SmolLM2-135M-Instruct (resolve_test_llm())")
    ap.add_argument("--cases", type=Path, default=ROOT / "bench" / "quality_cases.yaml")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (the agent's default: 0.3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isolated", action="store_true", help="every turn without history (a diagnostic, not the score)")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    cases = load_cases(args.cases)
    path = str(resolve_test_llm()) if args.smollm else args.model
    llm = LlamaCppLlm(LlamaConfig(model_path=path, n_ctx=2048, n_threads=args.threads))
    try:
        outcomes = run(cases, llm, args.temperature, args.isolated)
    finally:
        llm.close()
    print_table(outcomes)
    print_summary(summarize(outcomes, llm.model_path.name, args.temperature, args.isolated))


if __name__ == "__main__":
    main()
