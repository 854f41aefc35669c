"""What one conversation agent knows and can do, built once at start-up and shared by its calls.

The system prompt is fixed per agent (instructions, then the tool list) so its KV cache is
reused across turns and calls; whatever changes per turn (retrieved facts) goes into the
caller's message at the end of the prompt, where it costs only its own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from gateway.config import AgentConfig
from gateway.conversation.vocabulary import agent_vocabulary
from gateway.knowledge import KnowledgeBase, format_facts
from gateway.tools import ToolsConfig, tool_instructions

log = structlog.get_logger("conversation")

_KNOWLEDGE_RULE = ("Answer questions about the business only from the facts given with the caller's message. "
                   "If they do not contain the answer, say you do not know and offer to take a message.")


@dataclass
class AgentSkills:
    name: str
    system_prompt: str
    tools: ToolsConfig = field(default_factory=lambda: ToolsConfig({}))
    knowledge: KnowledgeBase | None = None
    stt_prompt: str | None = None  # the agent's vocabulary, for Whisper (vocabulary.py)

    @classmethod
    def build(cls, agent: AgentConfig) -> AgentSkills:
        knowledge = None
        if agent.knowledge:
            knowledge = KnowledgeBase(list(agent.knowledge))
            chunks = knowledge.build()
            log.info("knowledge_indexed", agent=agent.name, sources=list(agent.knowledge), chunks=chunks)
        parts = [agent.instructions.strip()]
        if knowledge is not None:
            parts.append(_KNOWLEDGE_RULE)
        if agent.tools.specs:
            parts.append(tool_instructions(agent.tools.specs))
        settings = agent.conversation
        vocabulary = agent_vocabulary(agent.instructions, agent.knowledge, agent.tools, settings.stt_hotwords,
                                      settings.stt_vocabulary)
        log.info("stt_vocabulary", agent=agent.name, terms=list(vocabulary.terms))
        return cls(agent.name, "\n\n".join(p for p in parts if p), agent.tools, knowledge, vocabulary.prompt)

    def facts_for(self, question: str) -> tuple[str | None, float]:
        """Facts for this turn's prompt, and the retrieval time in ms. None: the agent has a
        knowledge base and nothing in it is relevant (the caller asked something it cannot answer)."""
        if self.knowledge is None:
            return "", 0.0
        self.knowledge.maybe_refresh()
        retrieval = self.knowledge.retrieve(question)
        if not retrieval.found:
            return None, retrieval.elapsed_ms
        return format_facts(retrieval), retrieval.elapsed_ms

    def close(self) -> None:
        if self.knowledge is not None:
            self.knowledge.close()
