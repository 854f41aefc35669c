"""Requests clear enough to act on without asking the LLM.

A 0.5B model picks the wrong tool often enough (asked to pass a message on, it hung up) that
the plainest requests are recognised here first: "put me through to billing" transfers, with
no model in the loop and no chance of a hallucinated target. Everything else still goes to
the LLM, whose tool calls are validated before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TRANSFER_VERB = re.compile(
    r"\b(transfer|connect|put\s+me\s+(through|on)|speak\s+(to|with)|talk\s+(to|with)|get\s+me|"
    r"forward|redirect|reach|patch\s+me)\b", re.IGNORECASE)
_HUMAN = re.compile(r"\b(a\s+(real\s+)?(person|human)|someone|somebody|an?\s+agent|a\s+representative)\b",
                    re.IGNORECASE)
_HUMAN_TARGETS = ("operator", "reception", "receptionist", "front desk", "frontdesk", "staff", "agent")
_QUESTION_START = re.compile(
    r"^\s*(what|when|where|which|who|whom|whose|why|how|do|does|did|is|are|was|were|can|could|will|would|"
    r"should|have|has|may)\b", re.IGNORECASE)
_NOT_A_LOOKUP = re.compile(
    r"\b(message|transfer|connect|speak|talk|bye|goodbye|thank|thanks|hear\s+me|repeat|you\s+there|"
    r"my\s+name|call\s+me\s+back|book|appointment|schedule|order)\b", re.IGNORECASE)


def transfer_target(text: str, targets: Iterable[str]) -> str | None:
    """The transfer target a caller plainly asks for ("can you transfer me to billing"), or None."""
    if not _TRANSFER_VERB.search(text):
        return None
    words = text.lower()
    for target in targets:
        name = target.lower().replace("_", " ").replace("-", " ")
        stem = name[:-1] if name.endswith("s") else name
        if re.search(rf"\b{re.escape(stem)}", words):
            return target
    if _HUMAN.search(text):
        for target in targets:
            if target.lower() in _HUMAN_TARGETS:
                return target
    return None


def asks_for_transfer(text: str, target: str) -> bool:
    """Whether the caller's words support a transfer to `target` the LLM chose: they asked to be
    put through somewhere, or named the target."""
    return bool(_TRANSFER_VERB.search(text)) or transfer_target(f"transfer {text}", [target]) is not None


def is_information_question(text: str) -> bool:
    """A question asking the business for information (not a request, a goodbye or small talk):
    the kind that must be answered from the knowledge base or not at all."""
    stripped = text.strip()
    if not stripped or _NOT_A_LOOKUP.search(stripped):
        return False
    return stripped.endswith("?") or bool(_QUESTION_START.match(stripped))
