"""What the caller hears when a tool's outcome comes back: a fixed line, or a result to tell.

Pure functions of the outcome, so the controller only decides *when* it is said.
"""

from __future__ import annotations

import json
from collections.abc import Container

from gateway.conversation.actions import ToolOutcome
from gateway.conversation.reply import FollowUp
from gateway.conversation.settings import ConversationSettings


def outcome_line(outcome: ToolOutcome, settings: ConversationSettings,
                 http_tools: Container[str]) -> tuple[str, str] | None:
    """(text, why) of the fixed line an outcome calls for, or None."""
    if outcome.name == "hangup":
        return settings.goodbye, "tool_hangup"
    if outcome.ok:
        return None
    if outcome.name == "transfer":
        return settings.transfer_failed, "transfer_failed"
    if outcome.name == "take_message":
        return settings.tool_failed, "message_failed"
    if outcome.name in http_tools:
        return settings.tool_failed, "tool_failed"
    return None


def follow_up_for(outcome: ToolOutcome, http_tools: Container[str]) -> FollowUp | None:
    """An HTTP tool's result, for the LLM to tell in one sentence (read out as is if it cannot)."""
    if not outcome.ok or outcome.name not in http_tools:
        return None
    result = speakable(outcome.text)
    note = (f"The {outcome.name.replace('_', ' ')} lookup found: {result}. "
            "Tell the caller this in one short sentence of plain speech.")
    return FollowUp(note, fallback=f"Here is what I found: {result}.")


def speakable(text: str, limit: int = 200) -> str:
    """A tool's result as words: JSON objects become "key value, key value" (never braces read out)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:limit]
    if isinstance(data, dict):
        parts = [f"{str(k).replace('_', ' ')} {v}" for k, v in data.items() if isinstance(v, str | int | float)]
        return ", ".join(parts)[:limit]
    if isinstance(data, list):
        return ", ".join(speakable(json.dumps(item), limit) for item in data[:3])[:limit]
    return str(data)[:limit]
