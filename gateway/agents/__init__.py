"""Agents: what talks on a call. Built from the `agents:` section of the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.agents.base import Agent, CallContext, RecordKind
from gateway.agents.echo import EchoAgent
from gateway.config import AgentConfig

if TYPE_CHECKING:
    from gateway.conversation.speech import ConversationServices


def create_agent(config: AgentConfig, context: CallContext, services: ConversationServices | None = None,
                 remember_callers: bool = True) -> Agent:
    if config.type == "echo":
        return EchoAgent(context)
    if config.type == "conversation":
        from gateway.conversation.agent import ConversationAgent
        from gateway.conversation.settings import conversation_settings

        if services is None:
            raise RuntimeError(f"agent {config.name!r} needs the models, which are not loaded")
        return ConversationAgent(context, conversation_settings(config, remember_callers), services)
    raise ValueError(f"agent {config.name!r}: unknown type {config.type!r}")


__all__ = ["Agent", "CallContext", "EchoAgent", "RecordKind", "create_agent"]
