"""Render retrieved chunks as prompt text a small model uses well.

A 0.5B model copies facts reliably from short bullet lines and gets lost in long passages, so
each chunk becomes "- Heading: fact", sentences already given are not repeated (two files often
state the same opening hours), and the whole stays within a word budget: every word in the
prompt costs prefill time before the caller hears an answer.
"""

from __future__ import annotations

import re

from gateway.knowledge.chunking import split_sentences
from gateway.knowledge.index import Retrieval


def format_facts(retrieval: Retrieval, max_words: int = 120) -> str:
    """Bullet lines "- Heading: fact" for the retrieved chunks, best first, at most `max_words` words.

    Empty when nothing was found, so the caller can tell the model that it does not know.
    """
    lines: list[str] = []
    seen: set[str] = set()
    budget = max_words
    for chunk in retrieval.chunks:
        label = f"- {chunk.heading}:" if chunk.heading else "-"
        room = budget - len(label.split())
        sentences = _new_sentences(chunk.text, seen)
        if not sentences or room <= 0:
            continue
        kept = _within(sentences, room)
        if not kept:
            continue
        text = " ".join(kept)
        lines.append(f"{label} {text}")
        budget -= len(label.split()) + len(text.split())
        seen.update(_key(s) for s in kept)
    return "\n".join(lines)


def _new_sentences(text: str, seen: set[str]) -> list[str]:
    unique: dict[str, str] = {}
    for sentence in split_sentences(text):
        key = _key(sentence)
        if key and key not in seen and key not in unique:
            unique[key] = sentence
    return list(unique.values())


def _within(sentences: list[str], room: int) -> list[str]:
    """Whole sentences while they fit; the first one cut at a word if even it does not fit."""
    kept: list[str] = []
    used = 0
    for sentence in sentences:
        n = len(sentence.split())
        if used + n > room:
            if not kept:
                kept.append(" ".join(sentence.split()[:room]) + "...")
            break
        kept.append(sentence)
        used += n
    return kept


def _key(sentence: str) -> str:
    """Sentences that differ only in case, spacing or punctuation are the same fact."""
    return " ".join(re.findall(r"\w+", sentence.lower()))
