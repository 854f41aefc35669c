"""Running a validated tool call for one call, off every latency-critical thread.

Each action runs on its own short-lived thread and reports back through `post` (a `ToolFinished`
event on the controller's queue), so the bot keeps listening and talking while a transfer waits for its NOTIFY
or an HTTP service takes seconds to answer. Nothing here speaks: the controller decides what
the caller hears when an outcome arrives (a result, an apology, a goodbye).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.agents.base import CallContext
from gateway.conversation.events import ToolFinished
from gateway.conversation.holding import hold_loop, warm_request
from gateway.store import Store, StoreError
from gateway.tools import ToolCall, ToolResult, ToolsConfig, run_http_tool
from gateway.tools.transfer_options import TransferMode

if TYPE_CHECKING:
    from gateway.conversation.briefing import Briefer


@dataclass(frozen=True)
class ToolOutcome:
    """What came of an action: posted to the controller as `ToolFinished(outcome)`."""

    name: str
    ok: bool
    text: str  # for the LLM (HTTP result) or the log
    arguments: dict
    started: float = 0.0  # time.time() the action began


@dataclass
class CallFacts:
    """What the actions may need to know about the call (kept up to date by the agent)."""

    caller_id: str | None
    caller_name: str | None = None
    transcript: Callable[[], str] = lambda: ""


class ToolExecutor:
    def __init__(self, context: CallContext, tools: ToolsConfig, store: Store | None, agent_name: str,
                 facts: CallFacts, post: Callable[[ToolFinished], None], stopped: threading.Event,
                 briefer: Briefer | None = None, hold_music: str = ""):
        self.context = context
        self.tools = tools
        self.store = store
        self.agent_name = agent_name
        self.facts = facts
        self._post = post
        self._stopped = stopped
        self.log = context.log
        self._started: dict[int, float] = {}
        self._briefer = briefer  # None: warm targets are transferred blind (e.g. `voicegate chat`)
        self._hold_music = hold_music  # the agent's, for slow HTTP tools ("": none)
        self.transferring = threading.Event()  # a transfer runs: the caller is not silent, just waiting

    def start(self, call: ToolCall, wait: Callable[[], bool] = lambda: True) -> None:
        """Run `call` on its own thread once `wait()` returns True (e.g. after the bot's notice
        has played); `wait()` returning False drops it (the caller interrupted, the call ended)."""
        threading.Thread(target=self._run, args=(call, wait), daemon=True,
                         name=f"tool-{call.name}-{self.context.call_id[:8]}").start()

    def _run(self, call: ToolCall, wait: Callable[[], bool]) -> None:
        try:
            if not wait():
                self.log.info("tool_call_dropped", tool=call.name)
                return
            self.log.info("tool_call", tool=call.name, arguments=call.arguments)
            self._started[id(call)] = time.time()
            self._execute(call)
        except Exception as exc:
            self.log.exception("tool_call_failed", tool=call.name)
            self._done(call, False, f"{type(exc).__name__}: {exc}")

    def _execute(self, call: ToolCall) -> None:
        name, args = call.name, call.arguments
        if name == "transfer":
            self._transfer(call, args["target"])
        elif name == "hangup":
            self._done(call, True, "")
        elif name == "send_dtmf":
            self.context.send_dtmf(args["digits"])
            self._done(call, True, "")
        elif name == "take_message":
            self._take_message(call)
        elif name in self.tools.http:
            if self._hold_music:  # after the acknowledgement (this thread waited for it), until the answer
                self.context.hold(hold_loop(self._hold_music, self.log))
            try:
                result: ToolResult = run_http_tool(self.tools.http[name], args, cancel=self._stopped)
            finally:
                if self._hold_music:
                    self.context.hold(None)
            self.log.info("tool_result", tool=name, ok=result.ok, status=result.status,
                          elapsed_ms=round(result.elapsed_ms, 1), error=result.error)
            self._done(call, result.ok, result.text if result.ok else (result.error or "failed"))
        else:  # the parser only returns calls to declared tools; this is a programming error
            self._done(call, False, f"unknown tool {name}")

    def _transfer(self, call: ToolCall, target: str) -> None:
        plan = self.tools.transfer_plans.get(target)
        self.transferring.set()

        def done(ok: bool, detail: str) -> None:
            self.transferring.clear()
            self._done(call, ok, detail)

        if plan is not None and plan.mode is TransferMode.WARM and self._briefer is not None:
            self.context.warm_transfer(warm_request(plan, self._briefer, self._stopped, self.log), done)
        else:
            self.context.transfer(self.tools.transfer_targets[target], done)

    def _take_message(self, call: ToolCall) -> None:
        args = self.facts
        if self.store is None:
            self._done(call, False, "no message store")
            return
        try:
            message_id = self.store.take_message(
                call.arguments["message"], caller_id=args.caller_id,
                caller_name=call.arguments.get("name") or args.caller_name,
                callback_number=call.arguments.get("callback_number") or args.caller_id,
                call_id=self.context.call_id, transcript=args.transcript(), agent=self.agent_name)
        except StoreError as exc:
            self._done(call, False, str(exc))
            return
        self.log.info("message_taken", message_id=message_id, caller_id=args.caller_id)
        self._done(call, True, f"message {message_id} saved")

    def _done(self, call: ToolCall, ok: bool, text: str) -> None:
        started = self._started.pop(id(call), time.time())
        self._post(ToolFinished(ToolOutcome(call.name, ok, text, dict(call.arguments), started)))
