"""Retrieval over the business's own documents, for the phone agent's prompt.

    kb = KnowledgeBase(["configs/knowledge"])
    kb.build()
    ...
    kb.maybe_refresh()                     # every turn: re-indexes edited files at most every 2 s
    retrieval = kb.retrieve(question)      # well under a millisecond for a few hundred chunks
    facts = format_facts(retrieval) if retrieval.found else ""
"""

from gateway.knowledge.facts import format_facts
from gateway.knowledge.index import Changes, Chunk, KnowledgeBase, KnowledgeError, Retrieval

__all__ = ["Changes", "Chunk", "KnowledgeBase", "KnowledgeError", "Retrieval", "format_facts"]
