"""Turn a caller's transcribed question into safe FTS5 search terms.

A phone question is short, chatty and often misheard ("um, could you tell me how much a clean ing
is"). Only a few of its words say what it is about, so the question is cut into:

* content words ("cleaning", "saturday", "patel"): what the answer must be about; a chunk must
  contain enough of them to count as relevant;
* intents ("how much", "where", "open"): the kind of answer wanted, expanded to the words a
  document uses for it ("price", "dollar", "fee"); they rank chunks and can answer on their own
  ("where are you?"), but a document does not have to repeat them;
* light words ("sell", "take", "tomorrow"): verbs and times that a document rarely repeats; they
  help the ranking only;
* stop and filler words ("um", "please", "could", "you"): dropped.

Every term reaches MATCH as a double-quoted string built from word characters only, so no user
text can ever be parsed as FTS5 syntax (AND, NEAR, *, -, column filters, unbalanced quotes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher

from gateway.knowledge.sounds import sounds_alike

MAX_TERMS = 16  # a rambling turn: the first words carry the question well enough
PREFIX_MIN_LETTERS = 5  # "appointm" (cut off by STT) still finds "appointment"; "car*" would find "card"


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(text: str) -> frozenset[str]:
    """"how much|price|cost" -> the words and two-word phrases a question may contain."""
    return frozenset(text.split("|"))


STOP_WORDS = _wordset(
    """
    a about all am an and any are as at be because been being both but by can cannot could did do does doing
    each few for from had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself no nor not of on only or other our ours ourselves own same she should
    so some such than that the their theirs them themselves then there these they this those through to too
    very was we were what when which while why will with would you your yours yourself yourselves
    um umm uh uhh er erm ah eh hmm mm oh okay ok yeah yep yes nope hi hello hey please thanks thank thankyou
    tell say said know wondering wonder wondered question quick quickly sorry well right sure like just actually
    really maybe also ask asking asked anyone someone something anything guys kind sort bit lot much many
    dont doesnt didnt cant couldnt wont wouldnt isnt arent im ive id youre whats thats theres hows
    shes hes theyre theyve weve youve
    possible able way thing things good great fine hear heard mean
    office clinic practice place business company store shop near nearby
    exactly somewhere anywhere anything something everything happens happen happened recommend suggest must
    run runs fit give away arrive again guys folks whether though although unless either neither
    """
)
"""Words that never decide what a question is about. The "office/clinic/store" line is there
because callers name the business itself ("is there parking near the office?"), which says
nothing about the topic; "much/many" are taken by the "how much" intent."""

LIGHT_WORDS = _wordset(
    """
    sell sells selling buy buying offer offers offering provide provides take takes taking accept accepts
    accepting get gets getting got have has make makes making need needs needed want wants wanted work works
    working help helps use used come comes coming go goes going went see visit bring give cover covers covered do
    today tomorrow tonight yesterday week weeks weekly next last morning afternoon evening soon later now
    currently usually still already again first time times day days late later early earlier available
    before after during until above below between against under over off out up down once further
    fix fixes repair repairs treat treats serve serves eat drink brand brands type new
    """
)
"""Verbs and time words that help to rank but rarely appear in the document the answer is in:
"which dentists work there?" must still find "Dr. Smith: general dentistry". Position words
("before", "after") are here, not stop words, because headings use them ("Before the visit")."""


@dataclass(frozen=True)
class Intent:
    name: str
    triggers: frozenset[str]  # words (or two-word phrases) of the question that ask for it
    words: tuple[str, ...]  # words a document uses to give it


INTENTS = (
    Intent(
        "price",
        _phrases("how much|price|prices|pricing|priced|cost|costs|costing|fee|fees|charge|charges|expensive|"
                 "cheap|rate|rates"),
        ("price", "cost", "fee", "charge", "dollar", "euro", "rate"),
    ),
    Intent(
        "hours",
        _phrases("what time|hours|hour|open|opens|opening|close|closes|closing|closed"),
        ("hour", "open", "close"),
    ),
    Intent(
        "duration",
        _phrases("how long|duration|minutes|minute"),
        ("minute", "hour", "duration", "takes"),
    ),
    Intent(
        "location",
        _phrases("where|address|located|location|directions|direction|find you|get there"),
        ("address", "street", "location", "direction", "road", "avenue"),
    ),
    Intent(
        "emergency",
        _phrases("emergency|emergencies|urgent|urgently|asap|pain|painful|hurts|hurting|toothache|bleeding"),
        ("emergency", "urgent"),
    ),
    Intent(
        "person",
        _phrases("who|whom|staff|team"),
        ("dr", "doctor", "nurse", "staff", "team", "specialist"),
    ),
    Intent(
        "preparation",
        _phrases("prepare|preparing|preparation|ready"),
        ("before", "prepare", "preparation", "bring"),
    ),
    Intent(
        "booking",
        _phrases("book|booking|appointment|appointments|schedule|scheduling|reserve|reservation"),
        ("book", "appointment", "schedule", "reservation"),
    ),
    Intent(
        "payment",
        _phrases("pay|paying|payment|payments|paid"),
        ("pay", "payment", "card", "cash"),
    ),
)

SYNONYMS = {
    "doctor": ("doctor", "dr"),
    "doctors": ("doctor", "dr"),
    "dr": ("dr", "doctor"),
    "kids": ("kid", "child", "children"),
    "children": ("children", "child", "kid"),
    "weekend": ("weekend", "saturday", "sunday"),
    "weekends": ("weekend", "saturday", "sunday"),
    "weekday": ("weekday", "monday", "friday"),
    "weekdays": ("weekday", "monday", "friday"),
    "daughter": ("daughter", "child", "children", "kid"),
    "son": ("son", "child", "children", "kid"),
    "guarantee": ("guarantee", "guaranteed", "warranty"),
    "warranty": ("warranty", "guarantee", "guaranteed"),
    "bridal": ("bridal", "wedding"),
    "homemade": ("homemade", "fresh", "made"),
    "loan": ("loan", "courtesy"),
    "shampoo": ("shampoo", "products"),
    "man": ("man", "men"),
    "woman": ("woman", "women"),
}
"""Content words callers and documents spell differently ("Doctor Patel" / "Dr. Patel")."""

_WORD = re.compile(r"\w+(?:-\w+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


@dataclass(frozen=True)
class TermGroup:
    """One thing the question asks about, and the alternative words that mean it in a document."""

    name: str
    words: tuple[str, ...]

    def match_expression(self) -> str:
        """An FTS5 expression for the group: quoted words, OR'ed, with prefix forms for longer words."""
        terms: list[str] = []
        for word in self.words:
            quoted = '"' + word + '"'
            terms.append(quoted)
            if " " not in word and len(word) >= PREFIX_MIN_LETTERS:
                terms.append(quoted + "*")
        return "(" + " OR ".join(dict.fromkeys(terms)) + ")"


@dataclass(frozen=True)
class QueryPlan:
    content: tuple[TermGroup, ...]
    intents: tuple[TermGroup, ...]
    light: tuple[TermGroup, ...]

    @property
    def groups(self) -> tuple[TermGroup, ...]:
        return self.content + self.intents + self.light

    def match_expression(self) -> str:
        """The whole question as one OR query (for bm25 ranking); "" if nothing is left to search."""
        return " OR ".join(group.match_expression() for group in self.groups)


NUMBER_WORDS = _wordset(
    """
    zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
    seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred dozen couple
    """
)
"""Values a caller gives ("she's seven", "a table for two"): they rank like light words but are never the
topic, so a fact that does not repeat the caller's number still answers ("Children under 12: 20 dollars")."""

SYNONYM_SOUND_MIN = 5  # letters of a word (and key) matched to the synonyms by sound: short ones sound like too much

POSSESSIVES = frozenset({"my", "our", "his", "her", "their"})
HEARD_AS = {"wear": "where", "ware": "where", "wot": "what", "watt": "what", "wen": "when", "hoo": "who"}
"""Question words as speech-to-text writes them on a phone line ("wear are you" for "where are you"):
read as the question word, whose intent they carry. Only words a business caller hardly ever means."""


def words_of(question: str) -> list[str]:
    """Lower-case words of a question; "x-ray" stays one word (searched as a phrase), "Patel's" -> "patel"."""
    text = question.translate(_APOSTROPHES).lower()
    text = re.sub(r"'s\b", "", text).replace("'", "")
    words = (" ".join(word.replace("_", " ").replace("-", " ").split()) for word in _WORD.findall(text))
    return [word for word in words if word]


def join_split_words(words: list[str], known: Callable[[str], bool],
                     similar: Callable[[str], tuple[str, ...]] | None = None) -> list[str]:
    """Undo STT splitting a word in two ("clean ing" -> "cleaning") when the halves are not both known
    but the joined word is. `known(word)`: whether the knowledge base contains the word (cached there).
    With `similar` (see `plan_query`), a pair whose second half is unknown is also joined when the
    joined word sounds like a known one ("a dress" -> "adress", which finds "address").
    """
    out: list[str] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and (_joinable(words[i], words[i + 1], known)
                                   or _sound_joinable(words[i], words[i + 1], known, similar)):
            out.append(words[i] + words[i + 1])
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def plan_query(words: list[str], known: Callable[[str], bool] | None = None,
               similar: Callable[[str], tuple[str, ...]] | None = None) -> QueryPlan:
    """Sort the question's words into content words, intents and light words (see the module doc).

    `known`, if given, lets unknown two-letter fragments ("ex", "uh") be dropped as STT noise.
    `similar(word)`, if given with `known`, names the known words an unknown content word may stand
    for (misheard: "breaks" for "brakes"; inflected: "owns" for "owner"): the word's group takes them.
    """
    words = [HEARD_AS.get(word, word) for word in words]
    content: dict[str, TermGroup] = {}
    intents: dict[str, TermGroup] = {}
    light: dict[str, TermGroup] = {}
    i = 0
    while i < len(words) and len(content) + len(intents) + len(light) < MAX_TERMS:
        intent = _intent_for(" ".join(words[i : i + 2])) if i + 1 < len(words) else None
        if intent is not None:  # a two-word trigger: "how much"
            i += 2
        else:
            word = words[i]
            intent = _intent_for(word)
            i += 1
        if intent is not None:
            intents.setdefault(intent.name, TermGroup(intent.name, intent.words))
        elif word in STOP_WORDS or (len(word) < 2 and not word.isdigit()):
            continue
        elif word in LIGHT_WORDS or word in NUMBER_WORDS or (word.isdigit() and len(word) <= 2):
            light.setdefault(word, TermGroup(word, (word,)))
        elif len(word) < 3 and not word.isdigit() and known is not None and not known(word):
            continue
        elif word not in content:
            alternatives = SYNONYMS.get(word) or _misheard_synonym(word, similar) or (word,)
            if similar is not None and known is not None and not any(known(w) for w in alternatives):
                alternatives = (*alternatives, *similar(word))
                if len(alternatives) == 1 and i >= 2 and words[i - 2] in POSSESSIVES:
                    # "where can I park my car?": the caller's own things, unknown to the business,
                    # say nothing about the topic ("can you fix my windscreen" still has no topic word).
                    light.setdefault(word, TermGroup(word, (word,)))
                    continue
            content[word] = TermGroup(word, alternatives)
    return QueryPlan(tuple(content.values()), tuple(intents.values()), tuple(light.values()))


def _misheard_synonym(word: str, similar: Callable[[str], tuple[str, ...]] | None) -> tuple[str, ...] | None:
    """A misheard synonym key ("guaranty" for "guarantee"): the word and the key's alternatives."""
    if similar is None or len(word) < SYNONYM_SOUND_MIN:
        return None
    keys = [key for key in SYNONYMS if len(key) >= SYNONYM_SOUND_MIN and sounds_alike(word, key)]
    if not keys:
        return None
    key = max(keys, key=lambda k: SequenceMatcher(None, word, k).ratio())  # "weakdays": weekdays, not weekends
    return (word, *SYNONYMS[key])


def _intent_for(words: str) -> Intent | None:
    return next((intent for intent in INTENTS if words in intent.triggers), None)


def _sound_joinable(first: str, second: str, known: Callable[[str], bool],
                    similar: Callable[[str], tuple[str, ...]] | None) -> bool:
    if similar is None or not (first.isalpha() and second.isalpha()):
        return False
    if first in LIGHT_WORDS or _intent_for(first) is not None:
        return False  # a word with its own part in the question: "cost me" is not "customer"
    if known(second) and (known(first) or first in STOP_WORDS or len(first) < 3):
        return False  # two words of the facts; "saturn days" (an unknown first half) may still be one
    if first != "a" and (first in STOP_WORDS or known(first)):  # "a dress" -> "address"; not "my breaks"
        return False
    return bool(similar(first + second)) or _misheard_synonym(first + second, similar) is not None


def _joinable(first: str, second: str, known: Callable[[str], bool]) -> bool:
    if not (first.isalpha() and second.isalpha()) or first in STOP_WORDS or second in STOP_WORDS:
        return False  # "any one", "to day", "a part": too often two real words
    if known(first) and known(second):
        return False
    return known(first + second)
