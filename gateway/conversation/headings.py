"""The knowledge's heading paths kept out of what the caller hears.

The facts reach the model as ``- Prices > Bread: A sourdough loaf is 7 dollars.``, and the 0.5B
model often opens its reply with that label: "Prices > Bread: a sourdough loaf is ...", "Harbor
dental opening hours. We are open ..." (docs/benchmarks.md, `voicegate dial`), which TTS reads
aloud. `HeadingFilter` holds the start of a streamed reply only while it could still be such a
label, drops it if it is one, and otherwise lets the text through unchanged: a reply that starts
"We are open" is released at its first word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_FACT_LINE = re.compile(r"^-\s*([^\n]{1,120}?):\s")
_LABEL = re.compile(r"^\s*([^.!?:\n]{1,120}?)\s*[:.]\s+")
_MAX_LABEL_CHARS = 120


def fact_headings(content: str) -> tuple[str, ...]:
    """The heading paths of the facts block in the model's user message ("Facts:\\n- H > S: text")."""
    if not content.startswith("Facts:\n"):
        return ()
    block = content.removeprefix("Facts:\n").partition("\n\nCaller: ")[0]
    return tuple(dict.fromkeys(m.group(1) for line in block.splitlines() if (m := _FACT_LINE.match(line.strip()))))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class HeadingFilter:
    """Streaming: `feed` returns the text that may be said now, `flush` the rest at the reply's end."""

    def __init__(self, headings: Iterable[str]) -> None:
        labels: set[tuple[str, ...]] = set()
        for heading in headings:
            parts = [p for p in (_words(part) for part in heading.split(">")) if p]
            labels.add(tuple(w for part in parts for w in part))  # "harbor dental opening hours"
            labels.update(tuple(part) for part in parts)  # "opening hours"
        self.labels = {label for label in labels if label}
        self.buffer = ""
        self.decided = not self.labels

    def feed(self, text: str) -> str:
        if self.decided:
            return text
        self.buffer += text
        match = _LABEL.match(self.buffer)
        if match:
            return self._decide(self.buffer[match.end():] if self._is_label(match.group(1)) else self.buffer)
        if len(self.buffer) > _MAX_LABEL_CHARS or not self._may_be_label(self.buffer):
            return self._decide(self.buffer)
        return ""

    def flush(self) -> str:
        if self.decided:
            return ""
        return self._decide(self.buffer)

    def _decide(self, text: str) -> str:
        self.decided, self.buffer = True, ""
        return text

    def _is_label(self, text: str) -> bool:
        return ">" in text or tuple(_words(text)) in self.labels

    def _may_be_label(self, text: str) -> bool:
        """Whether `text` (no ':' or '.' yet) can still grow into a label: a heading path's start."""
        if ">" in text:
            return True
        words = _words(text)
        if not words:
            return True
        partial = not text[-1:].isspace()  # the last word may still be growing
        for label in self.labels:
            if len(words) > len(label):
                continue
            whole, last = words[:-1] if partial else words, words[-1]
            if list(label[: len(whole)]) == whole and (not partial or label[len(whole)].startswith(last)):
                return True
        return False
