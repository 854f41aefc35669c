"""The constrained tool step: on a turn that asks for something done, the model picks a tool or none.

Why a step of its own: asked "please let Kim know that Anna will be late", the 0.5B model
answered "Sure, I'll let her know!" and called nothing: in a free reply a polite first word
outweighs ``CALL``. Here the model's next words are held by a GBNF grammar
(`gateway.tools.tool_choice_grammar`) to ``NONE`` or one well-formed CALL line with a known tool and
valid arguments, so its preference between acting and not acting is what decides, and a call it
writes cannot be malformed.

Only turns whose words ask for an action (pass a message on, check or look something up, be put
through, hang up) take the step: a plain question goes straight to the answer and pays nothing.
The step's prompt is the conversation plus one short note, so it shares the KV cache with the
answer that follows a ``NONE``. Engines that cannot constrain their output (an OpenAI-compatible
server, models/openai_compat.py) skip it: the agent then relies on the free reply's CALL line, as
before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from gateway.conversation.intents import names_a_transfer, transfer_target
from gateway.conversation.planner import BYE, asks_for_action, unasked_tool_call
from gateway.tools import BUILTIN_TOOLS, ToolCall, ToolSpec, parse_tool_call, tool_choice_grammar
from models.base import CancelToken, ChatMessage, ConstrainedLlm, Llm

CHOICE_NOTE = ("Does my last message ask you to use one of your tools? If it does, write only the CALL line "
               "for it. If it does not, write NONE.")
CHOICE_MAX_TOKENS = 96  # a take_message call with a two-sentence message


def asks_for_tool(text: str) -> bool:
    """The caller's words ask for something done, not told: the only turns worth the step."""
    return asks_for_action(text) or names_a_transfer(text) or bool(BYE.search(text))


def choose_tool(llm: Llm, messages: Sequence[ChatMessage], specs: Mapping[str, ToolSpec], caller_said: str, *,
                cancel: CancelToken | None = None, affinity: str | None = None) -> ToolCall | None:
    """The call the model chooses for this turn under the grammar, or None (no tool, no step taken,
    or the engine cannot constrain). The call is well-formed; whether the caller's words support
    it is the generate stage's check, as for any call."""
    if not specs or not isinstance(llm, ConstrainedLlm) or not asks_for_tool(caller_said):
        return None
    allowed = admissible(specs, caller_said)
    if not allowed:
        return None
    text = llm.constrained_chat([*messages, ChatMessage("user", CHOICE_NOTE)], tool_choice_grammar(allowed),
                                max_tokens=CHOICE_MAX_TOKENS, cancel=cancel, affinity=affinity)
    return parse_tool_call(text, allowed).call


def admissible(specs: Mapping[str, ToolSpec], caller_said: str) -> dict[str, ToolSpec]:
    """The tools a call to which the caller's words could support (the generate stage's own checks:
    `unasked_tool_call`, `ungrounded_arguments`), transfer targets narrowed to those asked for.

    The grammar offers only these: asked to pass a message on, the 0.5B model chose `hangup`, and
    asked to check job 4417, `take_message`; both refused afterwards, the turn lost its tool."""
    allowed: dict[str, ToolSpec] = {}
    said_digits = bool(re.search(r"\d", caller_said))
    for name, spec in specs.items():
        if name == "transfer":
            known = spec.parameters.get("target", {}).get("enum", ())
            # named, not merely a transfer verb: "can I pay by bank transfer" chose `emergency`
            targets = [t for t in known if transfer_target(f"transfer {caller_said}", [t]) is not None]
            if targets:
                target = {**spec.parameters["target"], "enum": targets}
                allowed[name] = replace(spec, parameters={**spec.parameters, "target": target})
        elif name == "take_message":
            if not unasked_tool_call(ToolCall(name, {}), caller_said):
                allowed[name] = _verbatim_message(spec, caller_said)
        elif name in BUILTIN_TOOLS:
            if not unasked_tool_call(ToolCall(name, {}), caller_said):
                allowed[name] = spec
        elif said_digits or not spec.parameters:  # a lookup's arguments come from the caller's numbers
            allowed[name] = spec
    return allowed


def _verbatim_message(spec: ToolSpec, caller_said: str) -> ToolSpec:
    """take_message whose `message` can only be the caller's own words: the 0.5B model, left to word
    it, wrote messages that lost what the caller said ("please let kim know that anna will be late
    tomorrow" became a message without "late"); the staff reading it want the caller's words anyway."""
    if "message" not in spec.parameters:
        return spec
    words = " ".join(caller_said.split())
    message = {**spec.parameters["message"], "enum": [words]}
    return replace(spec, parameters={**spec.parameters, "message": message})
