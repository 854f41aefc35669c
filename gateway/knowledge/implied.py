"""Words a fact says without spelling them: the days inside "Tuesday to Saturday", the days of "weekends".

Retrieval and the answer check match words, and a business writes its facts in general terms
that a caller asks about in particular ones: "Closed on weekends" answers "open on Saturday?",
"Tuesday to Saturday: 7 am to 3 pm" answers "open on Wednesday?", "Open daily" answers "on
Sunday?". Matched word for word, the caller's day is a word the facts never contain, which
counts as another topic (`index._Scorer`), so the turn was refused as unknown. A synonym per
caller word ("saturday" -> "weekend") cannot cover it: "wednesday" is in no fact at all, only
inside a range. So the general terms of a fact are spelled out in the specific words they
cover, once, where the fact is indexed (an extra FTS5 column) and where a reply is checked
against it (`answer_check`); the caller's question is taken as said.

Only the general-to-specific direction is spelled out here: a caller who asks in general terms
("open at the weekend?") is handled by the query's `SYNONYMS`, which name the days.
"""

from __future__ import annotations

import re

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_FORMS = {day: day for day in DAYS} | {day[:3]: day for day in DAYS} | {"tues": "tuesday", "weds": "wednesday",
                                                                              "thur": "thursday", "thurs": "thursday"}
_DAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues?|weds?|thur?s?|fri|sat|sun)s?"
_RANGE = re.compile(rf"\b{_DAY}\.?\s*(?:to|through|thru|till|until|-|\u2013|\u2014)\s*{_DAY}\b", re.IGNORECASE)

COVERS: dict[str, tuple[str, ...]] = {
    "weekend": ("saturday", "sunday"),
    "weekday": DAYS[:5],
    "workday": DAYS[:5],
    "daily": DAYS,
    "everyday": DAYS,
}
"""A general word of a fact (its singular, lower case) and the particular words it stands for."""

_PHRASES = ((re.compile(r"\b(every|each|any)\s+day\b|\b7\s+days\b|\bseven\s+days\b", re.IGNORECASE), DAYS),)


def implied_words(text: str) -> tuple[str, ...]:
    """The specific words `text` covers without containing them, in a stable order, each once."""
    found: dict[str, None] = {}
    lowered = text.lower()
    for match in _RANGE.finditer(lowered):
        found.update(dict.fromkeys(_days_between(match.group(1), match.group(2))))
    for word in re.findall(r"[a-z]+", lowered):
        covered = COVERS.get(word) or COVERS.get(word.removesuffix("s"))
        if covered:
            found.update(dict.fromkeys(covered))
    for pattern, covered in _PHRASES:
        if pattern.search(lowered):
            found.update(dict.fromkeys(covered))
    named = set(re.findall(r"[a-z]+", lowered))
    return tuple(w for w in found if w not in named and f"{w}s" not in named)


def _days_between(first: str, last: str) -> list[str]:
    """The days from `first` to `last` inclusive, across the week's end ("Friday to Monday")."""
    start, end = DAYS.index(_DAY_FORMS[_day_form(first)]), DAYS.index(_DAY_FORMS[_day_form(last)])
    span = (end - start) % 7
    return [DAYS[(start + i) % 7] for i in range(span + 1)]


def _day_form(word: str) -> str:
    return word if word in _DAY_FORMS else word.removesuffix("s")
