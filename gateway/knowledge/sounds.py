"""Words of the knowledge base that a caller's unknown word may stand for: misheard or inflected.

Speech-to-text on an 8 kHz line turns "brakes" into "breaks", "colour" into "collar", "patients"
into "patience", and callers say "owns" where the document says "owner". A content word the
knowledge base does not contain counts against relevance (it usually means another topic:
"do you sell car insurance?"), so before that verdict an unknown word is matched against the
words the knowledge base does contain: same crude stem, or spelled and sounding alike. A word
with no such neighbour stays unknown, which keeps refusals for topics the business never mentions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from difflib import SequenceMatcher

MIN_LETTERS = 4  # shorter words have too many neighbours ("car" ~ "card", "bar")
SPELLING = 0.85  # SequenceMatcher ratio of two spellings that are one mishearing apart (same first sound)
SPELLING_SHORT = 0.75  # ... for 4-letter words, which also need the same sound key
SOUND = 0.85  # ratio of the sound keys, with at least SPELLING_LOOSE of the spellings and lengths within 1
SPELLING_LOOSE = 0.6
MAX_LENGTH_GAP = 3  # letters: "weather" is not "wet"
MAX_NEIGHBOURS = 3

_SUFFIXES = ("ings", "ing", "ers", "er", "ies", "es", "ed", "ly", "s")
_SOUNDS = (("ph", "f"), ("ck", "k"), ("qu", "kw"), ("q", "k"), ("x", "ks"), ("wh", "w"), ("gh", ""),
           ("th", "t"), ("dg", "j"), ("z", "s"), ("d", "t"), ("b", "p"), ("g", "k"), ("v", "f"))


def crude_stem(word: str) -> str:
    """"owns"/"owner" -> "own", "motorbikes" -> "motorbik": a suffix off, at least 3 letters kept."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def sound_key(word: str) -> str:
    """A rough English sound key: similar consonants merged, vowels after the first letter dropped,
    a plural s dropped ("colour"/"collar" -> "klr", "gluten"/"glutton" -> "kltn")."""
    w = re.sub(r"c(?=[eiy])", "s", word.lower())
    w = w.replace("c", "k")
    for old, new in _SOUNDS:
        w = w.replace(old, new)
    if len(w) > 3 and w.endswith("s"):
        w = w[:-1]
    head, tail = w[:1], re.sub(r"[aeiouy]", "", w[1:])
    return re.sub(r"(.)\1+", r"\1", head + tail)


def sounds_alike(heard: str, known: str) -> bool:
    """Whether `heard` is plausibly `known` misheard or inflected."""
    if heard == known:
        return True
    if crude_stem(heard) == crude_stem(known):
        return True
    spelling = SequenceMatcher(None, heard, known).ratio()
    heard_key, known_key = sound_key(heard), sound_key(known)
    if min(len(heard), len(known)) == MIN_LETTERS:
        return heard_key == known_key and spelling >= SPELLING_SHORT
    if spelling >= SPELLING and heard_key[:1] == known_key[:1]:  # "iphones" is not "phones"
        return True
    return (abs(len(heard) - len(known)) <= 1 and spelling >= SPELLING_LOOSE
            and SequenceMatcher(None, heard_key, known_key).ratio() >= SOUND)  # "weather" is not "water"


def vocabulary_of(words: Iterable[str]) -> dict[str, str]:
    """Each distinct alphabetic word with its sound key: computed once per index version."""
    return {w: sound_key(w) for w in set(words) if w.isalpha()}


def neighbours(word: str, vocabulary: Mapping[str, str]) -> tuple[str, ...]:
    """The knowledge base's words `word` may stand for, closest first (at most MAX_NEIGHBOURS).
    `vocabulary`: its words and their `sound_key`s (see `vocabulary_of`)."""
    if len(word) < MIN_LETTERS or not word.isalpha():
        return ()
    first = sound_key(word)[:1]
    stem = crude_stem(word)
    found = [(SequenceMatcher(None, word, v).ratio(), v) for v, key in vocabulary.items()
             if len(v) >= MIN_LETTERS and v != word and abs(len(v) - len(word)) <= MAX_LENGTH_GAP
             and (key[:1] == first or v.startswith(stem)) and sounds_alike(word, v)]
    if not found:  # "bark" for "parking": the misheard word is the stem of an inflected one
        found = [(SequenceMatcher(None, word, v).ratio(), v) for v in vocabulary
                 if len(v) > len(word) and crude_stem(v) != v and sounds_alike(word, crude_stem(v))]
    found.sort(key=lambda pair: -pair[0])
    if found:
        return tuple(v for _, v in found[:MAX_NEIGHBOURS])
    known = vocabulary
    for cut in range(3, len(word) - 2):  # a compound the document writes apart: "haircut" -> "hair", "cut"
        if word[:cut] in known and word[cut:] in known:
            return (word[:cut], word[cut:])
    return ()
