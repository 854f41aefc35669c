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
from gateway.knowledge import KnowledgeBase, Retrieval, format_facts
from gateway.knowledge.chunking import chunk_fact_list
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
        listed = chunk_fact_list(agent.instructions)
        if agent.knowledge or listed:
            # Facts listed in the instructions are retrieved like a knowledge file's: the 0.5B model
            # does not find them in a long system prompt (it answered four questions with the opening
            # hours), but it repeats a fact handed to it with the question.
            knowledge = KnowledgeBase(list(agent.knowledge), texts={"instructions": agent.instructions}
                                      if listed else None)
            chunks = knowledge.build()
            log.info("knowledge_indexed", agent=agent.name, sources=list(agent.knowledge), chunks=chunks,
                     instruction_facts=len(listed))
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

    def facts_for(self, question: str, loose: bool = False) -> tuple[str | None, float]:
        """Facts for this turn's prompt, and the retrieval time in ms. None: the agent has a
        knowledge base and nothing in it is relevant (the caller asked something it cannot answer)."""
        retrieval = self.retrieve(question, loose)
        if retrieval is None:
            return "", 0.0
        if not retrieval.found:
            return None, retrieval.elapsed_ms
        return format_facts(retrieval), retrieval.elapsed_ms

    def retrieve(self, question: str, loose: bool = False) -> Retrieval | None:
        """The chunks retrieved for a question (None: the agent has nothing to retrieve from)."""
        if self.knowledge is None:
            return None
        self.knowledge.maybe_refresh()
        return self.knowledge.retrieve(question, loose=loose)

    def unknown_words(self, question: str) -> tuple[str, ...]:
        """Content words of the question that the agent's facts never mention (see KnowledgeBase)."""
        return () if self.knowledge is None else self.knowledge.unknown_words(question)

    def topic_words(self, question: str) -> tuple[str, ...]:
        """Content words of the question, known or not (see KnowledgeBase)."""
        return () if self.knowledge is None else self.knowledge.topic_words(question)

    def as_known(self, question: str) -> str:
        """The question in the facts' own words (see KnowledgeBase.as_known)."""
        return question if self.knowledge is None else self.knowledge.as_known(question)

    def close(self) -> None:
        if self.knowledge is not None:
            self.knowledge.close()
