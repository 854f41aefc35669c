"""What the listening benchmark's callers say, in which voice, over which line: the corpus spec.

Issue 12: the gateway was tuned on one espeak voice on a silent line. This spec varies what real
calls vary (voice, speed, pauses to think, short answers, backchannels and coughs while the bot
talks, background noise, codec and network) and splits it in two fixed halves, by voice *and* by
sentence: `tune` is what changes may be tried against, `held_out` is what figures are reported on.
No voice, sentence or backchannel word of one half appears in the other (piper's joe, the only
neural voice here, is held out). The audio is generated from this spec at bench time
(`caller_audio.py`) and never committed.

A call has one caller (voice) on one line condition and asks a fixed pattern of turns drawn, seeded,
from its half's sentence pools, so every run asks exactly the same things.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Split(enum.Enum):
    TUNE = "tune"
    HELD_OUT = "held_out"


class Engine(enum.Enum):
    ESPEAK = "espeak-ng"
    PIPER = "piper"


class Background(enum.Enum):
    NONE = "none"
    BABBLE = "babble"  # several other voices talking at once
    PINK = "pink"  # pink noise
    HUM = "hum"  # 50 Hz mains hum with harmonics


class Line(enum.Enum):
    PCMU = "PCMU"
    PCMA = "PCMA"
    LOSS = "PCMU, 3 % loss"
    JITTER = "PCMU, 40 ms jitter"
    G722 = "G722"  # wideband: the caller speaks at 16 kHz (caller_audio.speech_wide)


class TurnKind(enum.Enum):
    QUESTION = "question"  # a complete short question
    MID_THOUGHT = "mid_thought"  # an incomplete phrase, a 0.5-1.5 s pause, then the rest
    ONE_WORD = "one_word"  # "yes", "Tuesday", digits


class Interjection(enum.Enum):
    """What the caller does while the bot answers: neither should stop the bot."""

    BACKCHANNEL = "backchannel"
    COUGH = "cough"  # synthetic: enveloped noise bursts (caller_audio.cough)


@dataclass(frozen=True)
class Voice:
    name: str
    engine: Engine
    speed: float  # espeak-ng words per minute; piper length scale (>1 is slower)
    split: Split


@dataclass(frozen=True)
class Condition:
    name: str
    background: Background = Background.NONE
    snr_db: float | None = None  # caller speech level over the background's
    line: Line = Line.PCMU


@dataclass(frozen=True)
class Turn:
    kind: TurnKind
    parts: tuple[str, ...]  # spoken with `pauses_s` between them
    pauses_s: tuple[float, ...] = ()
    interjection: Interjection | None = None
    backchannel: str = ""  # the word, for Interjection.BACKCHANNEL

    @property
    def reference(self) -> str:
        return " ".join(self.parts)


@dataclass(frozen=True)
class CallPlan:
    index: int
    split: Split
    condition: Condition
    voice: Voice
    turns: tuple[Turn, ...]
    seed: int


VOICES = (
    Voice("en-us", Engine.ESPEAK, 150, Split.TUNE),
    Voice("en-us+f3", Engine.ESPEAK, 175, Split.TUNE),
    Voice("en-gb+m3", Engine.ESPEAK, 130, Split.TUNE),
    Voice("en-gb-scotland+f2", Engine.ESPEAK, 160, Split.TUNE),
    Voice("en-029+Andy", Engine.ESPEAK, 145, Split.TUNE),
    Voice("en-gb-x-gbcwmd+Annie", Engine.ESPEAK, 190, Split.TUNE),
    Voice("en-us+m7", Engine.ESPEAK, 140, Split.HELD_OUT),
    Voice("en-gb-x-rp+f4", Engine.ESPEAK, 165, Split.HELD_OUT),
    Voice("en-gb-x-gbclan+Linda", Engine.ESPEAK, 150, Split.HELD_OUT),
    Voice("en-us+Mike", Engine.ESPEAK, 185, Split.HELD_OUT),
    Voice("en+Steph", Engine.ESPEAK, 130, Split.HELD_OUT),
    Voice("joe", Engine.PIPER, 1.1, Split.HELD_OUT),
)
BABBLE_VOICES = ("en-us+m2", "en-gb+f1", "en-029+Alex", "en-us+f5", "en-gb-x-rp+m5")  # no caller uses these

CONDITIONS = (
    Condition("clean µ-law"),
    Condition("clean A-law", line=Line.PCMA),
    Condition("3 % loss", line=Line.LOSS),
    Condition("40 ms jitter", line=Line.JITTER),
    *(Condition(f"{bg.value} {snr} dB", bg, snr) for bg in (Background.BABBLE, Background.PINK, Background.HUM)
      for snr in (20, 15, 10)),
    Condition("clean G.722", line=Line.G722),  # last, so the plans of the conditions before it do not change
)
QUICK_CONDITIONS = ("clean µ-law", "babble 10 dB", "3 % loss")

QUESTIONS = {
    Split.TUNE: (
        "What are your opening hours?", "Where is your office?", "How much does a cleaning cost?",
        "Which dentists work there?", "Is there parking near the office?", "Do you take new patients?",
        "What time do you close on Friday?", "Can I bring my son along?", "Do you see children?",
        "Is the office near the ferry?",
    ),
    Split.HELD_OUT: (
        "Are you open on Saturday?", "When do you open in the morning?", "What is your address?",
        "How much is a checkup?", "Is Doctor Smith in today?", "Can I pay by card?",
        "Do you do teeth whitening?", "How long does a cleaning take?", "Can I cancel my appointment?",
        "Is there a bus stop nearby?",
    ),
}
# (incomplete phrase, pause, the rest): the bot must wait through the pause
MID_THOUGHTS = {
    Split.TUNE: (
        ("Hi, I was wondering", 0.9, "do you take new patients?"),
        ("Um, let me see", 0.7, "what time do you close today?"),
        ("So my daughter needs", 1.2, "a cleaning next week."),
        ("I would like to book", 1.0, "an appointment with Doctor Patel."),
        ("My husband said that", 1.4, "you moved to a new office."),
        ("Could you tell me", 0.6, "how much a filling costs?"),
    ),
    Split.HELD_OUT: (
        ("Hi, I was wondering", 0.9, "are you open on Saturday?"),
        ("Let me think", 1.1, "is it twelve Harbor Street?"),
        ("I need to change", 0.8, "my appointment on Monday."),
        ("Uh, the thing is", 1.3, "my tooth hurts since yesterday."),
        ("Do you know if", 0.5, "Doctor Smith works on Fridays?"),
        ("I was going to ask about", 1.5, "the price of a crown."),
    ),
}
ONE_WORDS = {
    Split.TUNE: ("Yes.", "Tuesday.", "Four two seven one.", "No.", "Thursday.", "Eight."),
    Split.HELD_OUT: ("Yes, please.", "Friday.", "Nine one five three.", "Monday.", "Sure.", "Three."),
}
# What the sample business's facts (bench/sample_business.py: hours, address by the ferry, a cleaning's
# price, the two dentists) answer: the rest gets "I don't have that information" even when heard
# perfectly, so the listening benchmark tells a fair refusal from a garble refused (bench_listening).
ANSWERABLE = frozenset({
    "What are your opening hours?", "Where is your office?", "How much does a cleaning cost?",
    "Which dentists work there?", "What time do you close on Friday?", "Is the office near the ferry?",
    "Um, let me see what time do you close today?", "My husband said that you moved to a new office.",
    "Are you open on Saturday?", "When do you open in the morning?", "What is your address?",
    "Hi, I was wondering are you open on Saturday?", "Let me think is it twelve Harbor Street?",
})
BACKCHANNELS = {Split.TUNE: ("uh-huh", "okay"), Split.HELD_OUT: ("mm-hmm", "right", "yeah")}

# each call asks this pattern: what a short real call mixes
PATTERN = ((TurnKind.QUESTION, None), (TurnKind.MID_THOUGHT, None), (TurnKind.ONE_WORD, None),
           (TurnKind.QUESTION, Interjection.BACKCHANNEL), (TurnKind.MID_THOUGHT, None),
           (TurnKind.QUESTION, Interjection.COUGH))
QUICK_PATTERN = PATTERN[1:4]


def plan_calls(splits: tuple[Split, ...], quick: bool = False, seed: int = 12) -> list[CallPlan]:
    """Every call of the run, in order: per split one call per condition, voices in rotation; within a
    call no sentence is said twice."""
    plans: list[CallPlan] = []
    conditions = [c for c in CONDITIONS if not quick or c.name in QUICK_CONDITIONS]
    pattern = QUICK_PATTERN if quick else PATTERN
    for split in splits:
        voices = [v for v in VOICES if v.split is split]
        rng = random.Random(f"{seed}-{split.value}")
        for n, condition in enumerate(conditions):
            drawn = {kind: iter(rng.sample(range(len(_pool(split, kind))), sum(k is kind for k, _ in pattern)))
                     for kind in TurnKind}
            turns = tuple(_turn(split, kind, next(drawn[kind]), interjection, rng) for kind, interjection in pattern)
            plans.append(CallPlan(len(plans), split, condition, voices[n % len(voices)], turns,
                                  seed=rng.randrange(1 << 30)))
    return plans


def _pool(split: Split, kind: TurnKind) -> tuple[str, ...] | tuple[tuple[str, float, str], ...]:
    return {TurnKind.QUESTION: QUESTIONS, TurnKind.ONE_WORD: ONE_WORDS, TurnKind.MID_THOUGHT: MID_THOUGHTS}[kind][split]


def _turn(split: Split, kind: TurnKind, index: int, interjection: Interjection | None, rng: random.Random) -> Turn:
    backchannel = rng.choice(BACKCHANNELS[split]) if interjection is Interjection.BACKCHANNEL else ""
    if kind is TurnKind.MID_THOUGHT:
        head, pause, rest = MID_THOUGHTS[split][index]
        return Turn(kind, (head, rest), (pause,), interjection=interjection, backchannel=backchannel)
    return Turn(kind, (_pool(split, kind)[index],), interjection=interjection, backchannel=backchannel)
