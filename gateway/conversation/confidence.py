"""Did the bot hear the caller well enough to answer? From the transcript's own confidence.

Why: on the 8 kHz line Whisper turns mumbled or noisy speech into fluent nonsense ("You'll treat
all of you"), and the planner then answers it: usually "I'm sorry, I don't have that information",
which tells a caller who asked a fair question that the business cannot help. Asking them to say
it again is the honest answer to a transcript the bot does not trust. What Whisper gives for free
decides it, with no second model: the decoder's mean log-probability per token, its no-speech
probability and the gzip compression ratio of the text (Whisper's own loop test).

Three verdicts: `NOTHING` (no words: the turn is ignored, as before: a cough or the line's noise
must not make the bot talk), `DOUBTFUL` (ask the caller to repeat), `UNSURE` (heard, but not well:
answered if the agent can answer it, asked again if it would otherwise be "I don't know"), `CLEAR`.
The thresholds were fitted on the listening corpus's tune split (docs/benchmarks.md, "Hearing the
words"); the rule never asks twice in a row (`pipeline.py`).

A CLEAR verdict is not always right: tiny.en on 8 kHz turns a question into fluent nonsense it is
sure of ("Can I bring my feel in the long?", mean log-probability -0.3), and the planner, finding
nothing, would say "I don't have that information". On that path only, `doubted_words` looks at the
words that made the question unanswerable (the knowledge's unknown words): when Whisper barely
believed one of them (its word probability, `Transcript.word_probs`), the caller is asked to repeat.
A well-heard question the business cannot answer ("Can I bring my child along?") has its odd word
heard with confidence and still gets the don't-know answer.
"""

from __future__ import annotations

import enum
import re
import zlib
from dataclasses import dataclass

from models.base import Transcript

_FILLERS = frozenset({"uh", "um", "hmm", "mm", "you", "ah", "oh", "er"})
# Short answers a caller gives to a question: Whisper scores a lone "Yes." or "No." low (-1.0 on
# clean lines) although it is right, and asking a caller to repeat "yes" is worse than a wrong yes.
_ANSWER_WORDS = """
yes yeah yep no nope okay ok sure right correct fine great
zero oh one two three four five six seven eight nine ten eleven twelve
monday tuesday wednesday thursday friday saturday sunday today tomorrow morning afternoon evening
"""
_ANSWERS = frozenset(_ANSWER_WORDS.split())
_WORD = re.compile(r"[A-Za-z0-9']+")


class Hearing(enum.Enum):
    CLEAR = "clear"
    UNSURE = "unsure"  # answered when the agent knows the answer; asked again instead of "I don't know"
    DOUBTFUL = "doubtful"  # asked again
    NOTHING = "nothing"  # no words at all: no reply


@dataclass(frozen=True)
class ConfidenceRule:
    """Where the verdicts change (Whisper's own defaults are -1.0, 0.6 and 2.4)."""

    doubtful_logprob: float = -1.0  # mean token log-probability below this: doubtful
    unsure_logprob: float = -0.6  # below this: unsure
    no_speech: float = 0.6  # no-speech probability above this with a logprob below `unsure_logprob`: doubtful
    compression_ratio: float = 2.4  # a looping transcript: doubtful
    short_answer_logprob: float = -1.6  # a short answer ("Yes.") is trusted down to this (not noise's "Okay.")
    # a word the knowledge does not know, heard with a probability below this: probably not what was said
    # (fitted on tune: docs/benchmarks.md, "Did Whisper really hear it?")
    unknown_word_prob: float = 0.4


def _key(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


def doubted_words(transcript: Transcript, unknown: tuple[str, ...], rule: ConfidenceRule | None = None) -> bool:
    """Whisper barely believed a word that makes the question unanswerable: `unknown` are the
    question's words the agent's knowledge never mentions (`AgentSkills.unknown_words`). Only those
    count: a question's first word is often scored low however well it was heard ("Can" at 0.38 in
    "Can I pay my card?", which names no unknown word). False when the engine gives no word
    probabilities (the rule is then off) or they do not line up with the text's words."""
    rule = rule or ConfidenceRule()
    said = transcript.text.split()
    if not transcript.word_probs or len(transcript.word_probs) != len(said):
        return False
    keys = {_key(w) for w in unknown}
    probs = [p for w, p in zip(said, transcript.word_probs, strict=True) if _key(w) in keys]
    return bool(probs) and min(probs) < rule.unknown_word_prob


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def judge(transcript: Transcript, prompt: str | None = None, rule: ConfidenceRule | None = None) -> Hearing:
    """The verdict on one transcript. `prompt` is what Whisper was conditioned on: a transcript made
    only of the prompt's words is the prompt leaking into noise, not the caller."""
    rule = rule or ConfidenceRule()
    said = words(transcript.text)
    if not said or (len(said) == 1 and said[0].lower() in _FILLERS):
        return Hearing.NOTHING
    if len(said) <= 4 and all(w.lower() in _ANSWERS or w.isdigit() for w in said) \
            and transcript.avg_logprob >= rule.short_answer_logprob and transcript.no_speech_prob <= rule.no_speech:
        return Hearing.CLEAR
    if compression_ratio(transcript.text) > rule.compression_ratio:
        return Hearing.DOUBTFUL
    if prompt and len(said) >= 2 and {w.lower() for w in said} <= {w.lower() for w in words(prompt)}:
        return Hearing.DOUBTFUL
    if transcript.avg_logprob < rule.doubtful_logprob:
        return Hearing.DOUBTFUL
    if transcript.no_speech_prob > rule.no_speech and transcript.avg_logprob < rule.unsure_logprob:
        return Hearing.DOUBTFUL
    if transcript.avg_logprob < rule.unsure_logprob:
        return Hearing.UNSURE
    return Hearing.CLEAR
