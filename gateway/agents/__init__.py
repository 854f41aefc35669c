"""Agents: what talks on a call. Built from the `agents:` section of the config."""

from __future__ import annotations

from gateway.agents.base import Agent, CallContext
from gateway.agents.echo import EchoAgent
from gateway.config import AgentConfig


def create_agent(config: AgentConfig, context: CallContext) -> Agent:
    if config.type == "echo":
        return EchoAgent(context)
    raise ValueError(f"agent {config.name!r}: unknown type {config.type!r}")


__all__ = ["Agent", "CallContext", "EchoAgent", "create_agent"]
