"""The answering-machine detection set: who picks up an outbound call, as a spec (issue 14).

Voicemail greetings of 2-20 s in many wordings (personal, business, carrier voicemail, a carrier's
"not in service" announcement after its three information tones), with a beep of 400-2000 Hz and
0.2-1.5 s (or none) after them, and people answering: "Hello?", "Yes?", "This is Anna", "Hello, who
is this?", after a moment of silence or at once, on a quiet line or over pink noise, babble or hum.
Two fixed halves, by voice (the listening corpus's split, `listening_spec.VOICES`, so piper's joe
is held out) and by wording: `tune` is what thresholds may be tried against, `held_out` is what
figures are reported on. The audio is made at bench time (`amd_audio.py`), never committed.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from bench.listening_spec import VOICES, Background, Split, Voice


class Who(enum.Enum):
    MACHINE = "machine"
    HUMAN = "human"


@dataclass(frozen=True)
class Beep:
    frequency_hz: float
    length_s: float
    gap_s: float  # silence between the greeting's last word and the beep


@dataclass(frozen=True)
class Answer:
    """One answered call: what the callee's side sends from the moment of answer."""

    index: int
    split: Split
    who: Who
    voice: Voice
    sentences: tuple[str, ...]  # spoken with `pauses_s` between them
    pauses_s: tuple[float, ...]
    lead_s: float  # silence from the answer to the first word
    beep: Beep | None  # machines only; None: a machine without a beep
    sit_tones: bool  # a carrier's three information tones before the words
    background: Background
    snr_db: float
    seed: int

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


NAMES = {Split.TUNE: ("Mark", "Julia", "Peter", "Sofia"), Split.HELD_OUT: ("Anna", "David", "Maria", "Tom")}
COMPANIES = {Split.TUNE: ("Baker and Sons", "Northside Clinic"),
             Split.HELD_OUT: ("Green Valley Dental", "Acme Plumbing")}

# Greetings as sentence lists ({name}, {company}); each rendered in several voices and speeds.
GREETINGS = {
    Split.TUNE: (
        ("Hi, you've reached {name}.", "I can't take your call right now.", "Please leave a message after the tone."),
        ("Hello, this is {name}.", "Sorry I missed you.", "Leave your name and number and I'll call you back."),
        ("You have reached the voicemail of {name}.", "Please leave a message."),
        ("{name} here, leave a message.",),
        ("Thank you for calling {company}.", "Our office is currently closed.",
         "Our hours are Monday to Friday, nine to five.",
         "Please leave a message after the tone and we will return your call as soon as possible."),
        ("The person you are calling is not available.", "Please leave a message after the tone."),
        ("Hi, it's {name}.", "I'm probably out walking the dog.", "Leave a message!"),
        ("Welcome to the voice mailbox of {name}.", "Record your message after the tone.",
         "When you are finished, hang up or press pound for more options."),
    ),
    Split.HELD_OUT: (
        ("Hi, you've reached {name}.", "I can't take your call right now,",
         "please leave a message after the tone."),
        ("Hey, it's {name}.", "I'm not available at the moment.", "Leave a message and I'll get back to you."),
        ("Hello, you have reached {name} at {company}.", "I am either on the phone or away from my desk.",
         "Please leave your name, number and a brief message, and I will return your call."),
        ("Please leave a message for {name}.",),
        ("Your call has been forwarded to an automatic voice message system.", "{name} is not available.",
         "At the tone, please record your message.", "When you have finished recording, you may hang up."),
        ("Hi, {name} and {other} can't come to the phone right now.", "Leave a message after the beep."),
        ("You've called {company}.", "All of our staff are busy helping other customers.",
         "Please leave a message and we will call you back today."),
        ("This is {name}.", "Leave a message."),
    ),
}
CARRIER = {  # after the three information tones, no beep
    Split.TUNE: (("The number you have dialed is not in service.", "Please check the number and try again."),),
    Split.HELD_OUT: (("We're sorry, the subscriber you have called is not available.", "Please try again later."),),
}
# What people say when they pick up (a name they may give: {name}).
HUMAN_ANSWERS = {
    Split.TUNE: (("Hello.",), ("Yes?",), ("Hi, this is {name}.",), ("Hello, who's calling?",), ("{name} speaking.",),
                 ("Hello, {name}'s phone.",), ("Yeah?",), ("Good morning.",)),
    Split.HELD_OUT: (("Hello?",), ("Yes, hello?",), ("This is {name}.",), ("Hello, who is this?",),
                     ("{name} speaking.",), ("Hi, {name} here.",), ("Yes?",), ("Good afternoon?",)),
}
# Lines for people: on a quiet line, or over noise at these SNRs (speech over the background)
LINES = ((Background.NONE, 0.0), (Background.PINK, 15.0), (Background.BABBLE, 15.0), (Background.HUM, 20.0),
         (Background.BABBLE, 10.0))
PER_CLASS = 40  # answers of each kind per split


def plan_answers(splits: tuple[Split, ...] = (Split.TUNE, Split.HELD_OUT), seed: int = 14) -> list[Answer]:
    """Every answer of the set, in order: per split PER_CLASS machines then PER_CLASS people, seeded."""
    answers: list[Answer] = []
    for split in splits:
        rng = random.Random(f"{seed}-{split.value}")
        voices = [v for v in VOICES if v.split is split]
        for i in range(PER_CLASS):
            answers.append(_machine(len(answers), split, i, voices[i % len(voices)], rng))
        for i in range(PER_CLASS):
            answers.append(_human(len(answers), split, i, voices[(i + 1) % len(voices)], rng))
    return answers


def _fill(sentences: tuple[str, ...], split: Split, rng: random.Random) -> tuple[str, ...]:
    name, other = rng.sample(NAMES[split], 2)
    company = rng.choice(COMPANIES[split])
    return tuple(s.format(name=name, other=other, company=company) for s in sentences)


def _machine(index: int, split: Split, i: int, voice: Voice, rng: random.Random) -> Answer:
    carrier = i % 10 == 9  # one in ten: a carrier's announcement
    pool = CARRIER[split] if carrier else GREETINGS[split]
    sentences = _fill(pool[(i // 10) % len(pool)] if carrier else pool[i % len(pool)], split, rng)
    pauses = tuple(round(rng.uniform(0.15, 0.6), 2) for _ in sentences[1:])
    beep = None
    if not carrier and i % 7 != 3:  # some voicemails have no beep
        beep = Beep(round(rng.uniform(400, 2000)), round(rng.uniform(0.2, 1.5), 2), round(rng.uniform(0.2, 1.0), 2))
    noisy = i % 4 == 1  # a little line noise on some (a recorded greeting is mostly clean)
    background, snr = (Background.PINK, 25.0) if noisy else (Background.NONE, 0.0)
    return Answer(index, split, Who.MACHINE, voice, sentences, pauses, round(rng.uniform(0.1, 1.0), 2), beep,
                  carrier, background, snr, rng.randrange(1 << 30))


def _human(index: int, split: Split, i: int, voice: Voice, rng: random.Random) -> Answer:
    pool = HUMAN_ANSWERS[split]
    sentences = _fill(pool[i % len(pool)], split, rng)
    silent_first = i % 5 == 2  # silence-then-hello: they pick up, then speak a moment later
    lead = rng.uniform(0.8, 1.3) if silent_first else rng.uniform(0.1, 0.6)
    background, snr = LINES[(i // len(pool) + i) % len(LINES)]
    return Answer(index, split, Who.HUMAN, voice, sentences, (), round(lead, 2), None, False, background, snr,
                  rng.randrange(1 << 30))
