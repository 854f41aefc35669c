"""Cheap facts from what the caller said: their name and why they are calling.

Used to remember callers between calls (see :mod:`gateway.store`) and to summarize turns that
no longer fit the LLM's context (see :mod:`gateway.conversation.history`).  It runs on every
caller turn, so it is plain regular expressions: no model call, microseconds, and it never
raises.  It reads speech-to-text output, which may be all lowercase, may lack punctuation and
may write "I'm" as "im"; it errs on the side of returning None, because greeting a caller with
a wrong name ("Welcome back, Urgent") is worse than not greeting them by name at all.

Names, two kinds of evidence:

* A *strong* trigger ("my name is X") is trusted: X is a name unless it is a known non-name.
* A *weak* trigger ("this is X", "I'm X", "it's X", "call me X") is ambiguous ("this is
  urgent", "I'm fine"), so it also needs context: the trigger opens the utterance (after a
  greeting), or the words after X confirm it ("... X calling / here / speaking / from").
  When the transcript is cased (Whisper capitalizes names), X must also be capitalized.
"""

from __future__ import annotations

import re

__all__ = ["call_reason", "caller_name"]

MAX_NAME_WORDS = 3
MAX_REASON_WORDS = 12


def _wordset(words: str) -> frozenset[str]:
    """A set from a whitespace-separated word list (easier to read and extend than a list literal)."""
    return frozenset(words.split())


# Words that are never (part of) a name in "this is X" / "I'm X".  Not exhaustive: together with
# the context rules above it only has to cover what callers commonly say after those phrases.
_NOT_NAMES = _wordset(
    """
    a an the this that these those it its it's is are am was were be been being do does did done
    i i'm im i'd i've i'll me my mine you you're your yours he him his she her hers we us our they
    them their someone somebody anyone anybody everyone nobody no one nothing something everything
    and or but so because if then than as of to for from with without about regarding concerning
    re at in on into onto by over under up down out off here there where when what why how who which
    calling call called calls speaking looking having trying going getting wondering waiting hoping
    phoning ringing checking following reaching writing asking
    fine good great okay ok alright well bad terrible awful sorry sure unsure not just only also
    still already really very quite actually basically literally probably maybe perhaps again too
    urgent important serious ridiculous crazy weird strange frustrating annoying broken wrong right
    correct true false possible impossible late early new old existing current former regular
    customer client patient member caller guest tenant owner resident student parent friend
    interested worried concerned confused upset afraid glad happy pleased tired busy free ready
    done finished stuck locked back away home outside inside available unavailable able unable
    hi hello hey yes yeah yep no nope um uh er ah oh hmm thanks thank please welcome bye goodbye
    morning afternoon evening night today tomorrow yesterday now
    need needs want wants like would could should can will may might must have has had get got
    know think see say said tell told ask let make take give go come
    one two three four five six seven eight nine ten
    mister mr mrs ms miss dr doctor sir madam maam
    """
)
_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mister", "dr", "doctor"})
# Words after a candidate name that confirm it: "this is Maria *calling*", "it's Bob *here*".
_CONFIRMING = frozenset({"calling", "speaking", "here", "from", "with"})
# Openers allowed before a weak trigger that still counts as "opening the utterance".
_OPENERS = r"(?:(?:hi|hello|hey|yes|yeah|yep|oh|um|uh|so|well|okay|ok|good\s+(?:morning|afternoon|evening))\W*\s*)*"

_STRONG = re.compile(r"\b(?:my|the)\s+(?:full\s+|first\s+)?name(?:'s|\s+is)\s+", re.IGNORECASE)
_WEAK = re.compile(
    r"\b(?P<trigger>this\s+is|it'?s|it\s+is|i'?m|i\s+am|(?:you\s+can\s+|please\s+)?call\s+me)\s+", re.IGNORECASE
)
_OPENING = re.compile(rf"^\W*{_OPENERS}$", re.IGNORECASE)
_WORD = re.compile(r"\s*([^\W\d_]+(?:['-][^\W\d_]+)*)")
_HONORIFIC_DOT = re.compile(r"\b(mrs?|ms|dr)\.", re.IGNORECASE)


def _clean(text: str) -> str:
    """Straighten typographic apostrophes and drop the dot of "Dr." so it does not end the name."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return _HONORIFIC_DOT.sub(r"\1", text)


def _is_cased(text: str) -> bool:
    """True when the transcript carries case information (mixed case), so capitals mean something."""
    letters = [c for c in text if c.isalpha()]
    return any(c.isupper() for c in letters) and any(c.islower() for c in letters)


def _title(word: str) -> str:
    """Title-case a name word but keep deliberate inner capitals ("McDonald", "DeShawn")."""
    if word.islower() or word.isupper():
        return "-".join("'".join(p[:1].upper() + p[1:].lower() for p in part.split("'")) for part in word.split("-"))
    return word[:1].upper() + word[1:]


def _words_at(text: str, pos: int) -> list[tuple[str, int]]:
    """Words starting at ``pos`` up to the first punctuation mark (a comma ends a name)."""
    words: list[tuple[str, int]] = []
    while len(words) < MAX_NAME_WORDS + 2:
        m = _WORD.match(text, pos)
        if m is None:
            break
        words.append((m.group(1), m.end()))
        pos = m.end()
    return words


def _read_name(text: str, pos: int, *, weak: bool, at_opening: bool) -> str | None:
    """The name that starts at ``pos``, or None if what is there does not look like one."""
    cased = _is_cased(text)
    words = _words_at(text, pos)
    if not words:
        return None
    first = words[0][0]
    if weak and cased and not first[:1].isupper():
        return None
    caps_matter = cased and first[:1].isupper()
    name: list[str] = []
    end = pos
    for word, word_end in words:
        low = word.lower()
        if len(name) == MAX_NAME_WORDS or (caps_matter and not word[:1].isupper()):
            break
        if low in _HONORIFICS and not name:
            name.append(word)
            end = word_end
            continue
        if low in _NOT_NAMES or len(word) < 2:
            break
        if not name and weak and low.endswith("ing") and len(low) >= 6:  # "regarding", "wondering"
            break
        name.append(word)
        end = word_end
    if not name or all(w.lower() in _HONORIFICS for w in name):
        return None
    if weak and not at_opening:
        after = _WORD.match(text, end)
        next_word = after.group(1).lower() if after else None  # None when punctuation or the end follows
        if next_word not in _CONFIRMING:
            return None
    return " ".join(_title(w) for w in name)


def caller_name(text: str) -> str | None:
    """The name the caller gave in ``text`` ("my name is John Smith" -> "John Smith"), or None.

    Title-cased, at most three words.  Returns None rather than guess (see the module docstring).
    """
    if not text:
        return None
    text = _clean(text)
    m = _STRONG.search(text)
    if m is not None and (name := _read_name(text, m.end(), weak=False, at_opening=True)):
        return name
    for m in _WEAK.finditer(text):
        prefix = text[: m.start()]
        at_opening = _OPENING.match(prefix) is not None
        if m.group("trigger").lower().startswith("it") and not re.search(r"\w", prefix):
            # A bare "it's X" opening is too often "it's broken": it needs a greeting or a confirmation.
            at_opening = False
        name = _read_name(text, m.end(), weak=True, at_opening=at_opening)
        if name:
            return name
    return None


# --------------------------------------------------------------------------- reasons

_I_M = r"(?:i'?m|i\s+am|i\s+was|we'?re|we\s+are|we\s+were)"
_REASON = re.compile(
    r"\b(?:"
    rf"{_I_M}\s+(?:just\s+|only\s+)?calling\s+(?:you\s+)?"
    r"(?:about|regarding|concerning|because(?:\s+of)?|for|to|in\s+regards?\s+to|with\s+regards?\s+to|re)\s+"
    r"|the\s+reason\s+(?:i'?m\s+calling|for\s+(?:my|the|this)\s+call|i\s+called)\s+is\s+(?:that\s+|about\s+)?"
    r"|(?:i|we)\s+(?:really\s+|just\s+)?(?:need|want|wanted|have|had)\s+to\s+"
    r"|(?:i|we)'?d\s+(?:really\s+)?like\s+to\s+|(?:i|we)\s+would\s+(?:really\s+)?like\s+to\s+"
    r"|(?:i'?m|i\s+am|we'?re)\s+trying\s+to\s+"
    r"|(?:i|we)\s+(?:need|want)\s+(?=(?:help|a|an|some|someone|somebody|my|the|information|info)\b)"
    r"|(?:i|we)\s+have\s+(?=(?:a|an)\s+(?:question|problem|issue|complaint|appointment|emergency|leak)\b)"
    rf"|{_I_M}\s+(?:just\s+)?wondering\s+(?=(?:if|whether|about)\b)"
    r"|(?:it'?s|this\s+is)\s+(?:about|regarding|concerning)\s+"
    r")",
    re.IGNORECASE,
)
# Where a reason stops even without punctuation: the caller moved on to another sentence.
_REASON_END = re.compile(
    r"[.?!;]|\b(?:and\s+)?(?:my\s+name\s+is|thank\s+you|thanks|can\s+you|could\s+you|"
    r"is\s+that\s+possible|if\s+possible|please)\b",
    re.IGNORECASE,
)
_FILLER = re.compile(r"\b(?:um+|uh+|er+|ah+|you\s+know)\b\s*", re.IGNORECASE)
_DANGLING = _wordset("a an the and or but so because to of for with about at in on my your our their some um uh i we")


def call_reason(text: str) -> str | None:
    """Why the caller is calling, in at most twelve of their own words, or None.

    "I'm calling about my bill" -> "my bill"; "I need to reschedule my appointment" ->
    "reschedule my appointment".  A reason that itself opens with a reason phrase is unwrapped
    ("I'm calling because I need to cancel" -> "cancel").
    """
    if not text:
        return None
    reason = _clean(text)
    found = False
    for _ in range(3):  # unwrap nested phrasings, bounded
        # The first phrase may be anywhere; an inner one only unwraps when it opens the reason.
        m = _REASON.match(reason) if found else _REASON.search(reason)
        if m is None:
            break
        candidate = _cut(reason[m.end() :])
        if candidate is None:
            break
        reason, found = candidate, True
    return reason if found else None


def _cut(rest: str) -> str | None:
    """Shorten the text after a reason phrase to its first clause, at most MAX_REASON_WORDS words."""
    end = _REASON_END.search(rest)
    if end is not None:
        rest = rest[: end.start()]
    rest = _FILLER.sub("", rest)
    words = rest.replace(",", " ").split()[:MAX_REASON_WORDS]
    while words and words[-1].lower().strip("'") in _DANGLING:
        words.pop()
    return " ".join(words) if words else None
