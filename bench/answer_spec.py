"""The businesses of the answer benchmark (issue 13) and what their callers say, clean and misheard.

Each business is two files in ``bench/businesses/``: ``NAME.md``, its knowledge file, and ``NAME.yaml``:
the agent's role, greeting and tools, and the scripted calls (the turn format of
``bench/quality_cases.yaml``, plus ``chunk``: a phrase of the knowledge file that the chunk answering a
fact turn contains, for retrieval recall). The same facts reach the agent in two ways, as users write
them: in a knowledge file (``knowledge`` variant) or as a bullet list in ``instructions`` (``instructions``
variant, made from the same Markdown so the two never drift apart).

The split is fixed here, not chosen per run: changes are tried on ``tune`` and figures reported on
``held_out``, whose turns are not to be read while tuning.

Misheard turns: every caller line also goes through `misheard`, a deterministic stand-in for whisper
tiny.en on the 8 kHz line. Its errors are the kinds the listening benchmark shows (docs/benchmarks.md:
"patients" -> "patience", "close" -> "clone", "book" -> "work", "cleaning cost" -> "no cleaning card",
a dropped first word "do you take" -> "you take"): sound-alike substitutions from `SOUND_ALIKES`, a
dropped leading question word, a dropped small word ("a", "the", "to"). Two errors at most per turn, chosen by a hash of
the line, so a run is reproducible and no turn is tuned by hand.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from bench.bench_quality import AGENT, Cases, Turn, load_turn
from gateway.config import AgentConfig, parse_config

BUSINESSES_DIR = Path(__file__).resolve().parent / "businesses"
SPLIT = {
    "tune": ("garage", "hair_salon", "restaurant"),
    "held_out": ("vet_clinic", "plumber", "town_office", "bakery"),
}
VARIANTS = ("knowledge", "instructions")
NOISE = ("clean", "stt")

REFUSAL_MARKERS = ("don't know", "do not know", "not sure", "don't have", "do not have", "no information",
                   "not able to", "unable to", "can't help", "cannot help", "take a message", "leave a message",
                   "transfer you", "can't assist", "cannot assist")
INVENTED = (r"\d+\s*(dollars|bucks|usd)", r"\$\s*\d")

STYLE = "Answer in one or two short sentences, in plain spoken English. Be friendly and never make things up."
UNKNOWN = "If you do not know something, say so and offer to take a message."

SOUND_ALIKES: dict[str, str] = yaml.safe_load((BUSINESSES_DIR / "sound_alikes.yaml").read_text(encoding="utf-8"))
QUESTION_WORDS = ("do", "does", "is", "are", "can", "what", "how")
SMALL_WORDS = ("a", "an", "the", "to", "of", "for", "is", "on", "in", "my")  # what the narrow band swallows


@dataclass(frozen=True)
class Business:
    name: str
    split: str
    knowledge_file: Path
    role: str
    greeting: str
    tools: list[Any]
    turns: list[list[Turn]]
    chunks: dict[tuple[str, str], str]  # (conversation, said) of a fact turn -> phrase of the chunk that answers it

    def agent(self, variant: str, source: str) -> AgentConfig:
        """The agent as a user would configure it, facts in a knowledge file or in `instructions`."""
        raw = self.agent_yaml(variant)
        return parse_config({"sip": {"listen": "127.0.0.1:5060"}, "agents": {AGENT: raw}}, source=source).agents[AGENT]

    def agent_yaml(self, variant: str) -> dict[str, Any]:
        """The agent's entry of a gateway config (`agents: {name: ...}`), as `agent` reads it."""
        intro = f"You are {self.role}, answering the phone.\n{STYLE}"
        raw: dict[str, Any] = {"type": "conversation", "greeting": self.greeting, "tools": self.tools}
        if variant == "knowledge":
            raw |= {"instructions": intro, "knowledge": [str(self.knowledge_file)]}
        else:
            facts = "\n".join(facts_as_bullets(self.knowledge_file.read_text(encoding="utf-8")))
            raw["instructions"] = f"{intro}\nFacts:\n{facts}\n{UNKNOWN}"
        return raw

    def cases(self, variant: str, noise: str) -> Cases:
        turns = self.turns if noise == "clean" else [[replace(t, said=misheard(t.said)) for t in c] for c in self.turns]
        return Cases(self.agent(variant, f"bench/businesses/{self.name}.yaml"), REFUSAL_MARKERS, INVENTED, turns)


def load_business(name: str) -> Business:
    split = next(s for s, names in SPLIT.items() if name in names)
    data = yaml.safe_load((BUSINESSES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    turns, chunks = [], {}
    for conv in data["conversations"]:
        turns.append([load_turn(conv["name"], raw) for raw in conv["turns"]])
        for raw in conv["turns"]:
            if raw["expect"] == "fact":
                chunks[(conv["name"], str(raw["say"]))] = str(raw["chunk"])
    return Business(name, split, BUSINESSES_DIR / f"{name}.md", data["role"], data["greeting"], data["tools"],
                    turns, chunks)


def businesses(split: str) -> list[Business]:
    names = [n for names in SPLIT.values() for n in names] if split == "all" else SPLIT[split]
    return [load_business(name) for name in names]


def facts_as_bullets(markdown: str) -> list[str]:
    """The knowledge file as the fact list a user types into `instructions`: "- Opening hours: Saturday: ..."."""
    lines, heading = [], ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.startswith("- "):
            lines.append(f"- {heading}: {line[2:].strip()}" if heading else line)
    return lines


def misheard(said: str) -> str:
    """`said` as whisper tiny.en might hear it on the phone line (see the module doc): deterministic."""
    rng = random.Random(hashlib.sha256(said.encode()).digest())
    words = said.lower().split()
    edits = 0
    swappable = [i for i, w in enumerate(words) if w in SOUND_ALIKES and not w.isdigit()]
    rng.shuffle(swappable)
    for i in swappable[:2]:
        words[i] = SOUND_ALIKES[words[i]]
        edits += 1
    if edits < 2 and len(words) > 3 and words[0] in QUESTION_WORDS and rng.random() < 0.5:
        words = words[1:]
        edits += 1
    if edits < 2:
        small = [i for i, w in enumerate(words) if w in SMALL_WORDS]
        if small and len(words) > 3:
            del words[rng.choice(small)]
    return re.sub(r"\s+", " ", " ".join(words)).strip()
