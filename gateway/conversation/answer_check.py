"""Checks on a small model's answer against the facts it was given, without another model call.

The 0.5B model, handed the right fact, still answers four different questions with the opening
hours it said before, or says it cannot help. Two cheap checks catch that while the reply streams:

* `says_fact`: the reply carries what the best matching fact sentence answers with (its numbers,
  days, times, names; or, if it has none, its own words) - else the agent says the fact itself;
* `parrots`: the reply repeats what the bot already answered to a different question of the call.

Both work on words only (microseconds), so the reply's first clause is not delayed by them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from gateway.knowledge.chunking import split_sentences
from gateway.knowledge.implied import implied_words
from gateway.knowledge.query import HEARD_AS, NUMBER_WORDS, STOP_WORDS, SYNONYMS
from gateway.knowledge.sounds import sounds_alike
from models.base import ChatMessage

SAME_ANSWER = 0.8  # SequenceMatcher ratio of two replies (or of a clause and an earlier one) that say the same
MIN_PARROT_WORDS = 4  # "Yes, we do." said twice is not parroting
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "noon", "midnight")
_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                 "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "fifteen": "15",
                 "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
                 "eighty": "80", "ninety": "90", "hundred": "100"}
_ASKS_VALUE = re.compile(r"\b(how (much|many|long|early|late|soon)|when|what time|cost|price|charge|until|hours?|"
                         r"which day|what day)\b", re.IGNORECASE)
_REFUSAL = re.compile(r"\b(don'?t|do not|can'?t|cannot|unable to|not able to|no information|not sure|"
                      r"i'?m sorry)\b", re.IGNORECASE)
_NEGATIVE = re.compile(r"\b(no|not|never|closed|except|cannot|can'?t|don'?t|doesn'?t|isn'?t|aren'?t|won'?t)\b",
                       re.IGNORECASE)
_HEADING = re.compile(r"^-\s*([^.!?]{1,80}?):\s+(.*)$")


@dataclass(frozen=True)
class FactSentence:
    text: str  # one sentence of a retrieved fact, "Oil change: 65 dollars, about 45 minutes."
    overlap: float  # how much of the question it speaks to (0: nothing)
    loose: bool = False  # retrieved loosely: no chunk covered the question (planner.py)


def best_sentences(facts: str | None, question: str, limit: int = 2) -> list[FactSentence]:
    """The sentences of the retrieved facts that best answer `question`, best first (retrieval
    order breaks ties); sentences sharing no word with the question are left out unless none does."""
    if not facts:
        return []
    asked = _content(question)
    alternatives = {a: {a, *SYNONYMS.get(a, ())} for a in asked}
    wants_value = bool(_ASKS_VALUE.search(question))
    scored: list[tuple[float, int, str]] = []
    for line in facts.strip().splitlines():
        match = _HEADING.match(line.strip())
        body = match.group(2) if match else line.strip().removeprefix("- ")
        heading = _content(match.group(1)) if match else set()
        for sentence in split_sentences(body):
            words = _content(sentence) | set(implied_words(sentence))  # "weekends" answers "saturday"
            hits = sum(any(sounds_alike(alt, w) for alt in alternatives[a] for w in words | heading) for a in asked)
            score = hits / len(asked) if asked else 0.0
            if wants_value and re.search(r"\d", sentence):
                score += 0.25
            scored.append((score, len(scored), sentence))
    scored.sort(key=lambda s: (-s[0], s[1]))
    top = scored[0][0] if scored else 0.0
    best = [FactSentence(text, score) for score, _, text in scored if score > 0 and score >= top - 1e-9][:limit]
    return best or [FactSentence(scored[0][2], 0.0)] if scored else []


def answer_words(sentence: str, question: str) -> set[str]:
    """What a right answer has to say of `sentence`: its numbers if it has any the question does not,
    else its days and names not in the question, else its content words not in the question."""
    asked = _content(question) | set(_numbers(question))
    numbers = set(_numbers(sentence)) - asked
    if numbers:
        return numbers
    salient = {d for d in _DAYS if re.search(rf"\b{d}", sentence.lower())}
    salient |= {w.lower() for w in re.findall(r"(?<!^)(?<![.!?:]\s)\b[A-Z][a-z]{2,}", sentence)}
    salient = {w for w in salient if not any(sounds_alike(w, a) for a in asked)}  # "mondays" when asked "monday"
    if salient:
        return salient
    return {w for w in _content(sentence) if len(w) >= 4 and not any(sounds_alike(w, a) for a in asked)}


def says_fact(reply: str, sentences: Sequence[FactSentence], question: str) -> bool:
    """Whether `reply` gives what one of the fact sentences answers (see `answer_words`), with the
    same polarity: "Closed on Mondays." is not answered by "Yes, we are open on Monday"."""
    said = _content(reply) | set(_numbers(reply)) | {d for d in _DAYS if d in reply.lower()}
    for sentence in sentences:
        if _negative(sentence.text) and not _negative(reply):
            continue
        needed = answer_words(sentence.text, question)
        if not needed or any(any(w == s or (len(w) > 3 and sounds_alike(w, s)) for s in said) for w in needed):
            return True
    return False


def _negative(text: str) -> bool:
    return bool(_NEGATIVE.search(text))


def is_refusal(reply: str) -> bool:
    return bool(_REFUSAL.search(reply))


def fact_reply(sentence: FactSentence) -> str:
    """The fact itself, as a short sentence the TTS reads well."""
    text = sentence.text.strip()
    return text if text[-1:] in ".!?" else text + "."


def parrots(reply: str, caller_said: str, history: Sequence[ChatMessage]) -> bool:
    """Whether `reply` repeats an earlier bot answer given to a different question of this call."""
    mine = _norm(reply)
    if len(mine.split()) < MIN_PARROT_WORDS:
        return False
    question = _norm(caller_said)
    asked = ""
    for message in history:
        if message.role == "user":
            asked = _norm(message.content)
        elif message.role == "assistant" and asked and asked != question:
            before = _norm(message.content)
            if SequenceMatcher(None, mine, before).ratio() >= SAME_ANSWER:
                return True
            if len(before) > len(mine) and SequenceMatcher(None, mine, before[: len(mine)]).ratio() >= SAME_ANSWER:
                return True  # the first clause of the same answer
    return False


def _starts_an_answer(prefix: str, caller_said: str, history: Sequence[ChatMessage]) -> bool:
    """Whether an earlier answer (to another question) begins with these words."""
    start, question, asked = _norm(prefix), _norm(caller_said), ""
    for message in history:
        if message.role == "user":
            asked = _norm(message.content)
        elif message.role == "assistant" and asked != question and _norm(message.content).startswith(start):
            return True
    return False


def _content(text: str) -> set[str]:
    words = (HEARD_AS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower().replace("'", "")))
    return {w for w in words if w not in STOP_WORDS and w not in NUMBER_WORDS and len(w) >= 3 and not w.isdigit()}


def _numbers(text: str) -> list[str]:
    lowered = text.lower()
    found = re.findall(r"\d+(?::\d+)?", lowered)
    found += [digit for word, digit in _NUMBER_WORDS.items() if re.search(rf"\b{word}\b", lowered)]
    for tens, units in re.findall(r"\b(twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)[- ](one|two|three|"
                                  r"four|five|six|seven|eight|nine)\b", lowered):  # "sixty-five" -> 65
        found.append(str(int(_NUMBER_WORDS[tens]) + int(_NUMBER_WORDS[units])))
    return [n.split(":")[0] if n.endswith(":00") else n for n in found]


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


HOLD_MAX_WORDS = 12  # a reply this long that still lacks the fact will not give it: decide now, not at its end
STRONG_OVERLAP = 0.5  # a fact sentence this close to the question answers it: said instead of a reply that lacks it


class AnswerGate:
    """Holds a streaming reply's clauses until they are known to be a fresh, factual answer.

    `feed(clause)` returns the clauses that may be spoken now; `finish()` what to say once the
    model is done (the fact itself when the reply never gave it; nothing if it did). A reply that
    starts to repeat an earlier answer to another question is cut (`parroted`) and the rest of the
    model's stream is dropped. With no retrieved facts only the parroting check applies.

    A fact found only loosely (no chunk covered the question) that hardly touches it (under
    `STRONG_OVERLAP` of its words: "do you sell used cars?" against "we service all makes of cars")
    never replaces the model's words: saying it turns a question the business does not answer into
    a wrong answer. So is a weak fact tied with another as weak. The model's own "I don't know" is
    kept (for any weak fact), and any other reply that lacks such a fact is `declined`: the caller
    gets the agent's don't-know line. A weak fact
    the caller already heard as the answer to another question is not said again (`unheard`): the
    caller is asked to repeat.
    """

    def __init__(self, sentences: Sequence[FactSentence], caller_said: str, history: Sequence[ChatMessage]):
        self.sentences = tuple(sentences)
        self.caller_said = caller_said
        self.history = tuple(history)
        self.held: list[str] = []
        self.spoken: list[str] = []
        self.open = not self.sentences
        self.parroted = False
        self.declined = False
        self.unheard = False  # the only fact to say instead was an answer already given: ask again
        self.gave_up = False  # the held words are long enough to judge: the rest of the model's stream is not needed

    def feed(self, clause: str) -> list[str]:
        if self.parroted:
            return []
        so_far = " ".join([*self.spoken, *self.held, clause])
        if parrots(so_far, self.caller_said, self.history):
            self.parroted = True
            return []
        self.held.append(clause)
        if len(_norm(so_far).split()) < MIN_PARROT_WORDS and _starts_an_answer(so_far, self.caller_said, self.history):
            return []  # "We are" may be the start of the hours said before: wait for a few more words
        if not self.open and not says_fact(" ".join(self.held), self.sentences, self.caller_said):
            # Held until the end, a reply that never gives the fact kept the caller waiting for the
            # whole generation (5-8 s on a loaded box, past the controller's reply timeout): once it
            # has said this much without the fact, `finish()` decides and the stream can stop.
            self.gave_up = len(_norm(" ".join(self.held)).split()) >= HOLD_MAX_WORDS
            return []
        self.open = True
        return self._release()

    def peek(self, pending: str) -> list[str]:
        """The held clauses, released now if they and the words still being generated (`pending`,
        not yet a clause: the splitter cuts later pieces at a sentence end) give the fact.

        Held clauses otherwise wait until the clause that carries the fact is complete: "Based on"
        held, then "the facts provided, the closing time for Friday is 5 pm." cut at its full stop,
        several tokens (~33 ms each) after the "5". Only whole words of `pending` count (a "9" may
        become "90"), and the parroting checks of `feed` apply to them as well: a reply found to
        repeat an earlier answer is cut now (`parroted`), not at the end of its clause. The pending
        words themselves stay with the splitter and pass `feed` later (the gate is open by then)."""
        if self.open or self.parroted or not self.held:
            return []
        words = pending[: max(pending.rfind(" "), 0)]  # its last word may not be complete yet
        if not words.strip():
            return []
        so_far = " ".join([*self.spoken, *self.held, words])
        if parrots(so_far, self.caller_said, self.history):
            # Decided on whole words, as `feed` would on a clause cut here: the fact is said the
            # sooner (tune split: 6 of 9 answers parroted, found ~12 pieces in at the clause's end).
            self.parroted = True
            return []
        if len(_norm(so_far).split()) < MIN_PARROT_WORDS and _starts_an_answer(so_far, self.caller_said, self.history):
            return []
        if not says_fact(" ".join([*self.held, words]), self.sentences, self.caller_said):
            return []
        self.open = True
        return self._release()

    def flush(self) -> list[str]:
        """Whatever is held, unchecked (the reply ends in a tool call: its words go with it)."""
        return [] if self.parroted else self._release()

    def finish(self) -> list[str]:
        if self.open and not self.parroted:
            return self._release()
        if not self.sentences:
            return []  # parroted with no fact to say instead: the caller regenerates
        held = " ".join(self.held)
        weak = self.sentences[0].overlap < STRONG_OVERLAP
        if not self.parroted and held and is_refusal(held) and weak:
            return self._release()  # "I don't know" to a question the facts hardly touch: believe it
        self.held = []
        if weak and self.sentences[0].loose:
            self.declined = True
            return []
        # A fact the caller was already given for another question is said again only when it
        # answers this one well (asked again in other words). Found weakly, it is retrieval's guess
        # on words Whisper garbled ("Time done, location, closed." found the parking line the
        # caller had just heard through its heading "Location"): the same answer twice says
        # nothing new and tells the caller they were not heard. They are asked to say it again.
        # Nor is another sentence as weak as it taken instead: that is one more guess.
        fact = fact_reply(self.sentences[0])
        if weak and parrots(fact, self.caller_said, self.history):
            self.unheard = True
            return []
        # Tied with another sentence as weak, it is a guess as much as a loose one: retrieval cannot
        # tell which of two half-matching facts answers ("do you sell used cars" found a courtesy
        # car and a loan car). The caller gets the don't-know line, not one of the guesses.
        if weak and len(self.sentences) > 1:
            self.declined = True
            return []
        return [fact]

    @property
    def replaced(self) -> bool:
        """The model's words were not (all) said: parroted, or the fact was missing."""
        return self.parroted or not self.open

    def _release(self) -> list[str]:
        out, self.held = self.held, []
        self.spoken += out
        return out
