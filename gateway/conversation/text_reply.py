"""A caller's turn answered from its words alone: the agent's own stages, without audio or threads.

`voicegate chat` (gateway/chat.py) and the quality benchmarks (bench/bench_quality.py's `Caller`,
bench/bench_answers.py) both run a conversation through here, so what a user tries at the
terminal, what the benchmarks score and what a caller meets are one code path: a goodbye ends
the call, `plan_turn` settles plain transfers and questions the knowledge cannot answer with a
fixed line, anything else goes to the LLM with the retrieved facts through the generate stage
(`Generator`: clause cutting, the answer check, tool-call detection and the checks that refuse
an unasked transfer or an invented number). The history is kept as `CallHistory` keeps a call's:
the caller's words (never the facts block) and what the bot said, fixed lines left out.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.conversation.generate import Generation, Generator
from gateway.conversation.history import HistoryShape, approx_tokens, fit_history, shape_history
from gateway.conversation.planner import TurnPlan, is_goodbye, plan_turn
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.skills import AgentSkills
from gateway.tools import ToolCall
from models.base import ChatMessage, Llm, ModelError


class Route(enum.StrEnum):
    """Which way a turn went (the values are what the benchmarks print)."""

    BYE = "bye"  # the caller said goodbye: the agent hangs up
    FIXED = "fixed"  # settled by the planner with a fixed line (transfer notice, don't-know answer)
    LLM = "llm"  # the model answered, with no facts retrieved
    LLM_FACTS = "llm+facts"  # the model answered with retrieved facts
    LLM_ERROR = "llm-error"  # the model failed


@dataclass
class TextReply:
    """What the agent did with one turn."""

    route: Route
    spoken: list[str]  # the reply's clauses and fixed lines, in order
    call: ToolCall | None = None  # the tool call the agent would execute
    rejected: ToolCall | None = None  # a call its checks refused
    error: str | None = None  # a malformed CALL line, or the model's failure
    plan: TurnPlan | None = None  # retrieval and the planner's decision (None for a goodbye)
    llm_ms: float | None = None
    first_token_ms: float | None = None

    @property
    def text(self) -> str:
        return " ".join(self.spoken)

    @property
    def facts(self) -> str | None:
        """The facts block the model was given this turn (None: none was retrieved)."""
        content = self.plan.content if self.plan is not None else None
        if content is None or not content.startswith("Facts:\n"):
            return None
        return content.removeprefix("Facts:\n").partition("\n\nCaller: ")[0]


class _QuietLog:
    """For callers that report the generate stage's refusals themselves (they are in `TextReply`)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


QUIET_LOG: Any = _QuietLog()


@dataclass
class TextConversation:
    """One call's worth of turns against one agent and one LLM."""

    skills: AgentSkills
    settings: ConversationSettings
    llm: Llm
    shape: HistoryShape = HistoryShape.FULL  # what of the bot's earlier answers the model sees
    isolated: bool = False  # every turn starts a new call (no history): tells history effects apart
    log: Any = QUIET_LOG
    clock: Callable[[], float] = time.perf_counter
    history: list[ChatMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append(ChatMessage("system", self.skills.system_prompt))

    def fixed_lines(self) -> set[str]:
        s = self.settings
        return {s.acknowledgement, s.not_understood, s.message_taken, s.unknown_answer,
                *(s.transfer_notice.format(target=t) for t in self.skills.tools.transfer_targets)}

    def turn(self, said: str) -> TextReply:
        """Answer `said` and keep the exchange in the history."""
        reply = self.answer(said.strip())
        if not self.isolated:  # a fixed line (goodbye, don't-know, apology) stays out, as in a call
            self.remember(said.strip(), reply.spoken if reply.route in (Route.LLM, Route.LLM_FACTS) else ())
        return reply

    def answer(self, said: str) -> TextReply:
        """The agent's reply to `said` given the history so far (the history is not changed)."""
        s = self.settings
        if is_goodbye(said):
            return TextReply(Route.BYE, [s.goodbye], call=ToolCall("hangup", {}))
        plan = plan_turn(self.skills, said, transfer_notice=s.transfer_notice, unknown_answer=s.unknown_answer,
                         history=self.history, message_taken=s.message_taken,
                         acknowledgement=s.acknowledgement)
        if plan.say is not None:
            return TextReply(Route.FIXED, [plan.say], call=plan.action, plan=plan)
        assert plan.content is not None
        route = Route.LLM_FACTS if plan.content.startswith("Facts:") else Route.LLM
        messages = fit_history(shape_history([*self.history, ChatMessage("user", plan.content)], self.shape),
                               s.history_tokens, approx_tokens)
        generator = Generator(self.llm, self.skills.tools.specs, s, self.log, self.clock)
        out = Generation()
        started, started_at = time.perf_counter(), self.clock()
        try:
            spoken = [item.text for item in generator.reply(messages, said, plan.best_fact, out,
                                                            sentences=plan.sentences)]
        except ModelError as exc:
            return TextReply(Route.LLM_ERROR, [s.apology], error=str(exc), plan=plan)
        stats = getattr(self.llm, "thread_stats", None)  # llama.cpp's own; a server engine keeps none
        ttft = getattr(stats, "ttft_s", None)
        if ttft and out.chosen is None:  # a tool step the answer came after delayed its first token
            ttft += out.choice_s
        if not ttft and out.first_token_at is not None:  # the first piece's arrival, round trip included
            ttft = out.first_token_at - started_at
        return TextReply(route, spoken, call=out.call, rejected=out.rejected, error=out.error, plan=plan,
                         llm_ms=(time.perf_counter() - started) * 1000,
                         first_token_ms=ttft * 1000 if ttft else None)

    def follow_up(self, note: str, fallback: str) -> TextReply:
        """Tell a tool's result (`note`, as the agent's tool_replies words it) the way a call does:
        the whole answer checked before it is said, `fallback` when it is unusable."""
        messages = fit_history([*self.history, ChatMessage("user", note)], self.settings.history_tokens,
                               approx_tokens)
        generator = Generator(self.llm, self.skills.tools.specs, self.settings, self.log, self.clock)
        try:
            spoken = [item.text for item in generator.checked_follow_up(messages, fallback, Generation())]
        except ModelError as exc:
            return TextReply(Route.LLM_ERROR, [self.settings.apology], error=str(exc))
        said = " ".join(spoken)
        if said and not self.isolated:
            self.history.append(ChatMessage("assistant", said))
        return TextReply(Route.LLM, spoken)

    def remember(self, said: str, spoken: Sequence[str]) -> None:
        """Add an exchange as the agent's call history keeps it (fixed lines left out)."""
        self.history.append(ChatMessage("user", said))
        kept = " ".join(c for c in spoken if c not in self.fixed_lines())
        if kept:
            self.history.append(ChatMessage("assistant", kept))


def with_temperature(settings: ConversationSettings, temperature: float | None) -> ConversationSettings:
    """The settings with another sampling temperature (benchmarks run at 0 to be reproducible)."""
    return settings if temperature is None else replace(settings, temperature=temperature)
