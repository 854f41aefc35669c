"""Cut a streaming LLM reply into pieces TTS can speak while the rest is still generated.

Waiting for a whole sentence before synthesis cost Pipecat ~0.38 s per turn here; the first
piece is therefore cut at the first clause boundary (, ; : . ! ? or a dash) once it has a few
words, and the later ones at sentence ends (longer pieces sound more natural and cost TTS less
per word). A boundary inside a number ("3.50", "1,200") or an abbreviation ("Dr.") is not one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "st", "no", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "jr", "sr"}
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s[-\u2013\u2014]\s")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass
class ClauseSplitter:
    first_min_words: int = 1  # the first piece: short, to start speaking early ...
    first_max_words: int = 2  # ... and cut even without punctuation once it is this long
    min_words: int = 6  # later pieces: at a sentence end, or a clause end once this long
    max_words: int = 28  # never hold more than this without speaking

    def __post_init__(self) -> None:
        self._buffer = ""
        self._pieces = 0

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the pieces that are complete now."""
        self._buffer += text
        out: list[str] = []
        while True:
            piece = self._cut()
            if piece is None:
                return out
            out.append(piece)

    @property
    def pending(self) -> str:
        """Text fed that is not a piece yet (the answer gate reads it: answer_check.AnswerGate.peek)."""
        return self._buffer

    def flush(self) -> list[str]:
        """The reply ended: whatever is left is the last piece."""
        rest, self._buffer = _clean(self._buffer), ""
        if rest:
            self._pieces += 1
            return [rest]
        return []

    def _cut(self) -> str | None:
        text = self._buffer
        need = self.first_min_words if self._pieces == 0 else self.min_words
        boundaries = sorted(
            [(m.end(), True) for m in _SENTENCE_END.finditer(text) if not _is_false_boundary(text, m.start())]
            + [(m.end(), False) for m in _CLAUSE_END.finditer(text) if not _is_false_boundary(text, m.start())]
        )
        for end, is_sentence in boundaries:
            words = _words(_clean(text[:end]))
            if words >= need or (is_sentence and words >= 1):
                return self._take(end)
        limit = self.first_max_words if self._pieces == 0 else self.max_words
        if _words(text) > limit:
            cut = text.rfind(" ", 0, len(text) - 1)
            if cut > 0:
                return self._take(cut)
        return None

    def _take(self, end: int) -> str | None:
        piece, self._buffer = _clean(self._buffer[:end]), self._buffer[end:]
        if not piece:
            return None
        self._pieces += 1
        return piece


def split_stream(tokens: Iterable[str], splitter: ClauseSplitter | None = None) -> Iterator[str]:
    splitter = splitter or ClauseSplitter()
    for token in tokens:
        yield from splitter.feed(token)
    yield from splitter.flush()


def _words(text: str) -> int:
    return len(text.split())


def _clean(text: str) -> str:
    return " ".join(text.replace("*", " ").replace("#", " ").split())


def _is_false_boundary(text: str, index: int) -> bool:
    """A '.' or ',' between digits, or after a known abbreviation, does not end anything."""
    char = text[index]
    if char in ".," and 0 < index < len(text) - 1 and text[index - 1].isdigit() and text[index + 1].isdigit():
        return True
    if char == ".":
        word = text[:index].rsplit(None, 1)[-1].lower() if text[:index].strip() else ""
        if word in _ABBREVIATIONS:
            return True
    return False
