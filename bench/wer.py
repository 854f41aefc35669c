"""Word error rate: how far what the bot heard is from what the caller said.

The listening benchmark scores the gateway's transcript of each caller turn against the text the
caller's audio was made from. Both sides are normalised first, so that the score counts words the
bot got wrong rather than how Whisper writes them: case and punctuation go, numbers written as
digits become words ("4271" and "four two seven one" are the same answer when a caller reads digits,
"9" and "nine" the same word), and hesitation sounds ("um", "uh") are dropped on both sides because
a transcript is not wrong for leaving them out. Then the standard word-level Levenshtein distance:
(substitutions + deletions + insertions) / reference words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HESITATIONS = frozenset({"um", "umm", "uh", "uhm", "er", "erm", "ah", "hmm", "mm", "mhm"})
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SPELLINGS = {"okay": "ok", "dr": "doctor", "mr": "mister"}
_TOKEN = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


@dataclass(frozen=True)
class WordErrors:
    """Edit counts of one hypothesis against its reference (kept as counts so a set can be pooled)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """WER; a hypothesis for an empty reference scores its insertions (1.0 per word) instead of dividing by 0."""
        return self.errors / self.reference_words if self.reference_words else float(self.insertions)

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(self.substitutions + other.substitutions, self.deletions + other.deletions,
                          self.insertions + other.insertions, self.reference_words + other.reference_words)


NO_ERRORS = WordErrors(0, 0, 0, 0)


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, digits spelt out one by one, hesitations removed."""
    words: list[str] = []
    for token in _TOKEN.findall(text.lower().replace("’", "'")):
        for part in token.split("-"):
            part = _SPELLINGS.get(part, part)
            if part.isdigit():
                words.extend(_DIGITS[int(d)] for d in part)
            elif part and part not in HESITATIONS:
                words.append(part)
    return words


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Minimal substitutions, deletions and insertions turning `reference` into `hypothesis` (normalised)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    # previous row of the DP table: cost and (subs, dels, ins) of the cheapest path to each cell
    row = [(j, (0, 0, j)) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, start=1):
        new = [(i, (0, i, 0))]
        for j, h in enumerate(hyp, start=1):
            cost, (s, d, n) = row[j - 1]
            best = (cost, (s, d, n)) if r == h else (cost + 1, (s + 1, d, n))
            cost, (s, d, n) = row[j]
            if cost + 1 < best[0]:
                best = (cost + 1, (s, d + 1, n))
            cost, (s, d, n) = new[j - 1]
            if cost + 1 < best[0]:
                best = (cost + 1, (s, d, n + 1))
            new.append(best)
        row = new
    s, d, n = row[-1][1]
    return WordErrors(s, d, n, len(ref))
