"""End of turn from the words: does the transcript at a pause read like a finished turn?

smart-turn hears intonation, and on the narrowband, flat synthetic voices of the listening corpus
it hears it badly (docs/benchmarks.md: about a third of the thinking pauses after "I was
wondering" sound finished to it, a third of the complete questions unfinished). The words of an
unfinished phrase give it away more plainly: a sentence does not end on "and", "the", "to", "if",
"about", "my", on a filler ("um"), on a verb that needs its object ("I would like to book",
"could you tell me") or on a lead-in ("I was wondering", "the thing is", "let me see"). Whisper's
punctuation helps the other way: it writes "?" after a question it heard as one. It also ends
almost every fragment with "." so a full stop says nothing.

The rules are grammar, not a list of the benchmark's sentences: a word class at the end of the
transcript, or a short lead-in. Four answers: INCOMPLETE (hold the turn open), COMPLETE (a
question mark after words that can end a sentence: end it early), ANSWER (one or two words: silence
alone decides, as for any turn before) and UNSURE (the audio model decides); a question word or
inverted auxiliary at the start of three words or more counts as a question mark. Pure and cheap
(microseconds): it runs on whatever thread finished the transcript.
"""

from __future__ import annotations

import enum
import re


class TextVerdict(enum.Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNSURE = "unsure"
    ANSWER = "answer"  # one word ("Yes.", "Tuesday."): an answer, whatever the sound; silence decides


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words a sentence does not end on, whatever the punctuation: articles, possessives, "to", most
# prepositions, conjunctions, subject pronouns, fillers. ("you", "it", "no", "so" and "well" end
# sentences: "Thank you.", "No.", "I think so.")
_OPEN_ENDINGS = _words("""
a an the my your his our their its every each of to for from with about at into onto than between
toward towards without upon during and or but because if whether unless although though whereas nor
i we they he she i'm i'd i'll we're we'd they're there's um uh er erm
""")
# Words that end a question ("Can I come in?", "Which one is that?", "Can I book?") but leave a
# statement open: demonstratives, particles that are also prepositions, and verbs that need an
# object or a clause ("I would like to book", "so my daughter needs", "I was wondering").
_OPEN_UNLESS_ASKED = _words("""
this that these those in on over by through after before since like when while where
need needs needed want wants wanted wonder wondering book schedule make get change cancel bring find check
""")
# A verb, then a pronoun object, still open: "could you tell me", "let me", "can I ask you".
_OBJECT_VERBS = frozenset({"tell", "ask", "let", "give", "show", "send", "remind"})
_OBJECT_PRONOUNS = frozenset({"me", "you", "us", "him", "her", "them"})
# Lead-ins that announce the turn rather than make it, matched at the end of the transcript.
_LEAD_INS = (
    re.compile(r"\blet me (see|think|check|ask|just)$"),
    re.compile(r"\b(the )?(thing|problem|question|reason|point|issue) is$"),
    re.compile(r"\b(i|we) (was|were|am|are|have been) (wondering|thinking|hoping|calling)( if| whether| about)?$"),
    re.compile(r"\b(i|we) (have|had|got) a (quick )?question( about| on| for)?$"),
    re.compile(r"\b(you know|i mean|kind of|sort of|said that)$"),
)
# A question without its "?": it opens with a question word or an inverted auxiliary (after a
# greeting or filler) and runs on to a word a sentence can end on: "what are your opening hours".
_QUESTION_OPENERS = _words("""
what where when which who whom whose why how is are was were do does did can could will would should may
""")
_PREAMBLE = _words("hi hello hey oh okay ok so and yes yeah um uh er well")
_QUESTION_MIN_WORDS = 3
_WORD = re.compile(r"[a-z0-9']+")
_FILLERS = _words("um uh er erm hmm mm so well and but or because")  # one of these alone is a start
# Two words that neither end open nor ask are an answer ("Yes, please.", "Thank you.", "Next
# Tuesday.") far more often than the start of a longer turn, and whisper often hears a one-word
# answer as two ("Tuesday." as "Two days."): silence decides them, as it does one word.
_ANSWER_MAX_WORDS = 2


def judge_text(transcript: str) -> TextVerdict:
    """What the words say about the end of the turn (see the module doc)."""
    text = transcript.strip().lower()
    if not text:
        return TextVerdict.UNSURE
    words = _WORD.findall(text.replace("’", "'"))
    if len(words) == 1 and words[0] not in _FILLERS:
        return TextVerdict.ANSWER  # an answer ("Yes.", "Eight." heard as "A.") more often than a start
    if text.endswith(("...", "…", ",", "-", "—", ":", ";")):
        return TextVerdict.INCOMPLETE
    if not words:
        return TextVerdict.UNSURE
    tail = " ".join(words[-6:])
    last = words[-1]
    asked = text.rstrip("\"') ").endswith("?")
    if last in _OPEN_ENDINGS or (last in _OPEN_UNLESS_ASKED and not asked):
        return TextVerdict.INCOMPLETE
    if last in _OBJECT_PRONOUNS and len(words) >= 2 and words[-2] in _OBJECT_VERBS:
        return TextVerdict.INCOMPLETE
    if any(lead_in.search(tail) for lead_in in _LEAD_INS):
        return TextVerdict.INCOMPLETE
    if asked:
        return TextVerdict.COMPLETE
    if len(words) <= _ANSWER_MAX_WORDS and not any(w in _FILLERS for w in words):
        return TextVerdict.ANSWER  # "Yes, please.", "Next Tuesday.", a one-word answer misheard as two
    body = words[next((i for i, w in enumerate(words) if w not in _PREAMBLE), len(words)):]
    if len(body) >= _QUESTION_MIN_WORDS and body[0] in _QUESTION_OPENERS:
        return TextVerdict.COMPLETE
    return TextVerdict.UNSURE
