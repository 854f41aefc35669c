"""`voicegate chat`: talk to an agent by typing, to iterate on its instructions and knowledge.

Each line goes through the very stages a caller's transcript goes through
(gateway/conversation/text_reply.py: planner, retrieval, the generate stage with its tool-call
checks, the call's history rules, the configured LLM), and the terminal shows what a call's log
only hints at: the facts retrieved for the turn, and the tool the agent would call with its
arguments. Tools are a dry run unless `--live-tools`: then HTTP tools really run and messages
are really stored, through the agent's own executor (gateway/conversation/actions.py), and the
result is told as in a call. Reads stdin line by line, so it can be piped (tests, scripts).
"""

from __future__ import annotations

import queue
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import TextIO

import structlog

from gateway.agents.base import CallContext
from gateway.config import AgentConfig, Config, ConfigError
from gateway.conversation.actions import CallFacts, ToolExecutor
from gateway.conversation.events import ToolFinished
from gateway.conversation.settings import conversation_settings, model_set_config
from gateway.conversation.skills import AgentSkills
from gateway.conversation.text_reply import Route, TextConversation, TextReply
from gateway.conversation.tool_replies import follow_up_for, outcome_line
from gateway.store import Store
from gateway.tools import ToolCall

log = structlog.get_logger("chat")

TOOL_WAIT_MARGIN_S = 5.0  # beyond the tool's own timeout, before a live tool is given up


def pick_agent(config: Config, source: str, name: str | None,
               kinds: tuple[str, ...] = ("conversation",)) -> AgentConfig:
    """The agent named on the command line, else the default agent, else the first of `kinds`;
    a clear ConfigError when there is none of that type."""
    if name is None:
        default = config.agents.get(config.sip.default_agent or "")
        name = default.name if default is not None and default.type in kinds else next(
            (a.name for a in config.agents.values() if a.type in kinds), None)
    agent = config.agents.get(name) if name is not None else None
    if agent is None or agent.type not in kinds:
        have = [a.name for a in config.agents.values() if a.type in kinds]
        raise ConfigError(source, f"agents.{name}" if name else "agents", f"a {' or '.join(kinds)} agent", have)
    return agent


@dataclass(frozen=True)
class Style:
    """ANSI styling when the output is a terminal, nothing when it is piped."""

    on: bool

    def __call__(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def dim(self, text: str) -> str:
        return self("2", text)

    def bot(self, text: str) -> str:
        return self("1;36", text)

    def tool(self, text: str) -> str:
        return self("33", text)


def show_call(call: ToolCall) -> str:
    return f"{call.name}({', '.join(f'{k}={v!r}' for k, v in call.arguments.items())})"


class Chat:
    """One text conversation with one agent (the terminal is its only thread)."""

    def __init__(self, config: Config, agent: AgentConfig, llm, *, live_tools: bool = False,
                 store: Store | None = None, out: TextIO | None = None):
        self.agent = agent
        self.settings = conversation_settings(agent, remember_callers=False)
        self.skills = AgentSkills.build(agent)
        self.conversation = TextConversation(self.skills, self.settings, llm, log=log.bind(agent=agent.name))
        self.out = out or sys.stdout
        isatty = getattr(self.out, "isatty", None)
        self.style = Style(bool(isatty is not None and isatty()))
        self.live_tools = live_tools
        self.store = store
        self.call_id = f"chat-{uuid.uuid4().hex[:12]}"
        self.ended = False

    def close(self) -> None:
        self.skills.close()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def greet(self) -> None:
        if self.settings.greeting:
            self.say(f"{self.style.bot('bot:')} {self.settings.greeting}")

    def turn(self, said: str) -> TextReply:
        """Answer one typed line and show what the agent retrieved, said and would do."""
        reply = self.conversation.turn(said)
        self._show_retrieval(reply)
        self.say(f"{self.style.bot('bot:')} {reply.text}")
        if reply.rejected is not None:
            self.say(self.style.dim(f"  tool refused by the agent's checks: {show_call(reply.rejected)}"))
        if reply.error is not None and reply.route is not Route.LLM_ERROR:
            self.say(self.style.dim(f"  malformed tool call: {reply.error[:120]}"))
        if reply.route is Route.LLM_ERROR:
            self.say(self.style.dim(f"  the model failed: {reply.error}"))
        if reply.call is not None:
            self._tool(reply.call, said)
        if reply.route is Route.BYE or (reply.call is not None and reply.call.name == "hangup"):
            self.ended = True
        return reply

    def _show_retrieval(self, reply: TextReply) -> None:
        plan = reply.plan
        if plan is None:
            return
        ms = f" ({plan.retrieval_ms:.1f} ms)" if plan.retrieval_ms is not None else ""
        if plan.unknown:
            self.say(self.style.dim(f"  retrieved: nothing that answers this{ms}: the agent says its unknown_answer"))
        elif reply.facts:
            loose = ", loosely" if plan.loose else ""
            self.say(self.style.dim(f"  retrieved{loose}{ms}:"))
            for line in reply.facts.splitlines():
                self.say(self.style.dim(f"    {line}"))
        elif self.skills.knowledge is not None and plan.say is None:
            self.say(self.style.dim(f"  retrieved: nothing{ms}"))

    def _tool(self, call: ToolCall, said: str) -> None:
        if not self.live_tools:
            self.say(self.style.tool(f"  tool (dry run, --live-tools to run it): {show_call(call)}"))
            return
        self.say(self.style.tool(f"  tool: {show_call(call)}"))
        outcome = self._execute(call)
        if outcome is None:
            self.say(f"{self.style.bot('bot:')} {self.settings.tool_failed}")
            return
        self.say(self.style.dim(f"  tool {'ok' if outcome.ok else 'failed'}: {outcome.text[:200]}"))
        http = self.skills.tools.http
        line = outcome_line(outcome, self.settings, http)
        if line is not None and call.name != "hangup":
            self.say(f"{self.style.bot('bot:')} {line[0]}")
        follow_up = follow_up_for(outcome, http)
        if follow_up is not None:
            told = self.conversation.follow_up(follow_up.note, follow_up.fallback or follow_up.note)
            self.say(f"{self.style.bot('bot:')} {told.text}")

    def _execute(self, call: ToolCall):
        """Run the call with the agent's own executor; a chat has no SIP call to transfer or key."""
        results: queue.Queue[ToolFinished] = queue.Queue()
        context = CallContext(call_id=self.call_id, direction="chat", local_uri="chat", remote_uri="chat",
                              agent_name=self.agent.name, hangup=lambda reason: None,
                              send_dtmf=lambda digits: None,
                              transfer=lambda uri, done: done(False, "a chat has no call to transfer"),
                              log=log.bind(call_id=self.call_id))
        history = self.conversation.history
        facts = CallFacts(caller_id=None, transcript=lambda: "\n".join(m.content for m in history
                                                                        if m.role == "user"))
        stopped = threading.Event()
        executor = ToolExecutor(context, self.skills.tools, self.store, self.agent.name, facts, results.put, stopped)
        executor.start(call)
        http = self.skills.tools.http.get(call.name)
        wait_s = (http.timeout_s if http is not None else 0.0) + TOOL_WAIT_MARGIN_S
        try:
            return results.get(timeout=wait_s).outcome
        except queue.Empty:
            stopped.set()
            return None


def run_chat(config: Config, source: str, agent_name: str | None, live_tools: bool,
             stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """The `voicegate chat` command: 0 when the conversation ended (goodbye or end of input)."""
    from models.loader import LoadProgress, load_llm

    agent = pick_agent(config, source, agent_name)
    stdin = stdin or sys.stdin
    progress = LoadProgress(2)
    progress.step("loading the language model")
    llm = load_llm(model_set_config(config.models))
    store = None
    if live_tools:
        from gateway.store import open_store

        store = open_store(config.memory.database)
    chat = Chat(config, agent, llm, live_tools=live_tools, store=store, out=out)
    try:
        progress.step("warming up the language model (the agent's prompt)")
        llm.warm_up(chat.skills.system_prompt)
        progress.done(f"agent {agent.name!r} ready")
        interactive = bool(getattr(stdin, "isatty", lambda: False)())
        if interactive:
            chat.say(chat.style.dim(f"Chatting with {agent.name!r}: type what a caller would say; "
                                    "an empty line or Ctrl-D ends."))
        chat.greet()
        while not chat.ended:
            said = _read_line(stdin, chat, interactive)
            if said is None:
                break
            if not said.strip():
                if interactive:
                    break
                continue
            if not interactive:
                chat.say(f"{chat.style('1', 'you:')} {said}")
            chat.turn(said)
    finally:
        chat.close()
        if store is not None:
            store.close()
        close = getattr(llm, "close", None)
        if close is not None:
            close()
    return 0


def _read_line(stdin: TextIO, chat: Chat, interactive: bool) -> str | None:
    if interactive and stdin is sys.stdin:
        try:
            return input(chat.style("1", "you: "))
        except EOFError:
            chat.say("")
            return None
    line = stdin.readline()
    return None if line == "" else line.rstrip("\n")
