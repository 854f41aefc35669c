"""The words a caller of this agent is likely to say that Whisper is likely to get wrong.

Whisper tiny.en on the 8 kHz line hears names and trade words as common English ("billing" as
"the building", "Doctor Patel" as "not her but hell"). Conditioning the decoder on a short list of
the agent's own terms (faster-whisper's `hotwords`: the terms after `<|startofprev|>`) moves those
words back, and the agent's configuration already holds them: its instructions, its knowledge
files, its transfer targets and HTTP tools. This module picks them out, without models or I/O
beyond reading the knowledge files once at start-up.

Why a list of terms and not sentences: a prompt is text Whisper believes came just before the
audio, and with the greeting as its prompt tiny.en repeated whole utterances ("Where is your
office? Where is your office?"); a comma-separated list of names reads as no sentence it could
continue. The list is capped (`max_terms`): every prompt token is decoded once per transcript and
a long list dilutes the bias (docs/benchmarks.md, "Hearing the words").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.tools import ToolsConfig

# Capitalised words that are no names: sentence openers and the words of instructions.
_COMMON_WORDS = """
a an the and or but if then so to of in on at by for from with as is are was were be been am do does did
you your we our us i me my he she it they them their this that these those there here what when where which
who whom why how can could will would shall should may might must not no yes please thank thanks hello hi
keep answer answers ask say tell never always only also just one two three four five six seven eight nine
ten all any each every some many more most other such than too very facts fact note notes example
"""
_COMMON = frozenset(_COMMON_WORDS.split())
_TITLES = ("Dr.", "Mr.", "Mrs.", "Ms.", "St.", "Prof.")
_TITLE = "|".join(re.escape(t) for t in _TITLES)
_WORD = rf"(?:(?:{_TITLE})(?=[ \t])|[A-Z][\w'&-]*|[A-Z]\.)"
_PROPER = re.compile(rf"{_WORD}(?:[ \t]+{_WORD})*")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BULLET_KEY = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+\**([^:\n*]{2,40}?)\**\s*:", re.MULTILINE)
_SENTENCE_START = re.compile(r"(?:^|[.!?;]\s+|\n\s*(?:[-*+#]+|\d+\.)?\s*)$")
MAX_TERMS = 24


@dataclass(frozen=True)
class Vocabulary:
    """The agent's terms, most useful first; `prompt` is what Whisper is conditioned on."""

    terms: tuple[str, ...]

    @property
    def prompt(self) -> str | None:
        return ", ".join(self.terms) + "." if self.terms else None


def agent_vocabulary(instructions: str, knowledge: Sequence[str | Path] = (), tools: ToolsConfig | None = None,
                     explicit: Sequence[str] = (), max_terms: int = MAX_TERMS) -> Vocabulary:
    """The agent's vocabulary: `explicit` terms (`stt_hotwords`) first, then transfer targets and
    HTTP tool names, then names and headings from the instructions and knowledge, most frequent
    first. `max_terms` 0 keeps only the explicit terms."""
    picked: list[str] = [t.strip() for t in explicit if t.strip()]
    derived: list[str] = []
    if tools is not None:
        derived += list(tools.transfer_targets)
        for name, http in tools.http.items():
            derived.append(name.replace("_", " "))
            for spec in http.parameters.values():
                derived += [str(v) for v in spec.get("enum", ()) if isinstance(v, str)]
    texts = [instructions, *read_knowledge(knowledge)]
    derived += ranked_terms(texts)
    for term in derived:
        if len(picked) >= len(explicit) + max_terms:
            break
        picked.append(term)
    return Vocabulary(_dedupe(picked))


def ranked_terms(texts: Iterable[str]) -> list[str]:
    """Names (capitalised phrases not merely opening a sentence), then headings and bullet keys,
    each group by how often it occurs."""
    names: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for text in texts:
        for m in _PROPER.finditer(text):
            phrase = _clean(m.group(0))
            words = phrase.split()
            at_start = bool(_SENTENCE_START.search(text[: m.start()]))
            if at_start and words and words[0].lower() in _COMMON:
                words = words[1:]  # "If Harbor Dental ..." -> "Harbor Dental"
                phrase = " ".join(words)
            if not words or (len(words) == 1 and (at_start or words[0].lower() in _COMMON)):
                continue
            if all(w.lower().rstrip(".") in _COMMON for w in words):
                continue
            names[phrase] += 1
        for pattern in (_HEADING, _BULLET_KEY):
            for m in pattern.finditer(text):
                label = _clean(m.group(1))
                if label and len(label.split()) <= 4 and label.lower() not in _COMMON:
                    labels[label] += 1
    return [t for t, _ in names.most_common()] + [t for t, _ in labels.most_common()]


def read_knowledge(sources: Sequence[str | Path]) -> list[str]:
    """The text of the agent's knowledge files (Markdown and text, folders searched recursively)."""
    texts = []
    for source in sources:
        path = Path(source)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                      and p.suffix.lower() in (".md", ".markdown", ".txt")
                                                      and not any(part.startswith(".") for part in p.parts))
        for f in files:
            try:
                texts.append(f.read_text(errors="replace"))
            except OSError:
                continue  # the knowledge index reports unreadable files; vocabulary is best effort
    return texts


def _clean(phrase: str) -> str:
    phrase = re.sub(r"[*_`]+", "", phrase).strip().rstrip(".,;:!?")
    return re.sub(r"\s+", " ", phrase)


def _dedupe(terms: Sequence[str]) -> tuple[str, ...]:
    """Case-insensitive duplicates out, and a term inside a longer kept one ("Harbor" of "Harbor Dental")."""
    kept: list[str] = []
    for term in terms:
        low = term.lower()
        if any(low == k.lower() or re.search(rf"\b{re.escape(low)}\b", k.lower()) for k in kept):
            continue
        kept = [k for k in kept if not re.search(rf"\b{re.escape(k.lower())}\b", low)] + [term]
    return tuple(kept)
