"""Requests clear enough to act on without asking the LLM.

A 0.5B model picks the wrong tool often enough (asked to pass a message on, it hung up) that
the plainest requests are recognised here first: "put me through to billing" transfers, and
"tell Sara I'll pick the car up at five" is a message, with no model in the loop and no chance
of a hallucinated target. Everything else still goes to the LLM, whose tool calls are validated
before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from difflib import SequenceMatcher

from gateway.tools import BUILTIN_TOOLS, ToolCall, ToolError, ToolSpec, validate_arguments

_TRANSFER_VERB = re.compile(
    r"\b(transfer|connect|put\s+me\s+(through|on)|speak\s+(to|with)|talk\s+(to|with)|get\s+me|"
    r"forward|redirect|reach|patch\s+me)\b", re.IGNORECASE)
_HUMAN = re.compile(r"\b(a\s+(real\s+)?(person|human)|someone|somebody|an?\s+agent|a\s+representative)\b",
                    re.IGNORECASE)
_HUMAN_TARGETS = ("operator", "reception", "receptionist", "front desk", "frontdesk", "staff", "agent")
_QUESTION_START = re.compile(
    r"^\s*(what|when|where|which|who|whom|whose|why|how|do|does|did|is|are|was|were|can|could|will|would|"
    r"should|have|has|may)\b", re.IGNORECASE)
_NOT_A_LOOKUP = re.compile(
    r"\b(message|transfer|connect|speak|talk|bye|goodbye|thank|thanks|hear\s+me|repeat|you\s+there|"
    r"my\s+name|name\s+is|this\s+is|call\s+me\s+back|book|appointment|schedule|order|i\s+need|i\s+want|"
    r"i'd\s+like|i\s+would\s+like)\b", re.IGNORECASE)


# Who a message is for: a name, a role ("the chef"), a pronoun for one; never the caller or the bot
# ("tell me", "let us know" ask to be told) nor a question word ("tell what time").
_RECIPIENT = r"(?!(?:me|us|you|what|how|when|where|why|which|who|if|whether)\b)(?:the\s+|my\s+)?[a-z']+"
# What starts the message itself: "tell Sara *I* will...", "tell the chef (my) wife *is* allergic"
# (one word of slack for a garbled or dropped word).
_MESSAGE_START = (r"(that|i|i'm|i'll|i've|i'd|we|we're|we'll|we've|my|our|he|she|they|it|it's|there|"
                  r"is|are|was|will|won't|can't|has|have|had)")
# Only a request that carries the message: "can I leave a message for the doctor?" has none yet (the
# model asks for it).
_MESSAGE_REQUEST = re.compile(
    rf"\btell\s+{_RECIPIENT}(\s+[a-z']+)?\s+{_MESSAGE_START}\b|"
    rf"\blet\s+{_RECIPIENT}\s+know\s+[a-z']+\s+[a-z']+|"
    rf"\bask\s+{_RECIPIENT}\s+to\s+(call|ring|phone|get\s+back|contact)\b", re.IGNORECASE)
_PHONE_NUMBER = re.compile(r"\d[\d\s-]{5,}\d")


def message_request(text: str) -> bool:
    """The caller plainly asks for a message to be passed on, and says it ("please let Kim know that
    Anna will be late", "can you tell the chef my wife is allergic to nuts"). Left to the model, such turns
    were answered with the caller's own words read back or "One moment, please", and no message
    was taken (tune split: 3 of 3 messages lost, docs/benchmarks.md)."""
    return bool(_MESSAGE_REQUEST.search(text))


def callback_number(text: str) -> str | None:
    """A phone number the caller says in their words ("my number is 555 0173"): seven digits or more,
    grouped as they said them (as staff would write it down)."""
    for match in _PHONE_NUMBER.finditer(text):
        if len(re.sub(r"\D", "", match.group())) >= 7:
            return " ".join(match.group().split())
    return None


_ID_WORDS = frozenset({"number", "no", "num", "id", "code", "reference", "ref"})
_DIGITS = r"(\d[\d\s-]*\d)"
NUMBER_REACH_WORDS = 3  # "the job number is 4417", "job number four-four..." (digits from STT): words between


def numbered_lookup(text: str, specs: Mapping[str, ToolSpec]) -> ToolCall | None:
    """A lookup the caller plainly asks for by its number: "could you check on my car, the job number
    is 4417" for a tool whose one parameter is `job_number`. Such a request names the kind of number
    ("job", "order", "reservation") and says it; the 0.5B model, asked, answered "Job number: 4417"
    and called nothing. One tool must match, with arguments its spec accepts; else None (the model's)."""
    found: list[ToolCall] = []
    for name, spec in specs.items():
        if name in BUILTIN_TOOLS or len(spec.parameters) != 1:
            continue
        (param,) = spec.parameters
        words = [w for w in re.split(r"[^a-z]+", param.lower()) if w]
        kind = [w for w in words if w not in _ID_WORDS]
        if not kind or len(kind) == len(words):
            continue  # not a number of some kind ("job_number", "order_id"), or a bare "number"
        match = re.search(rf"\b{re.escape(kind[-1])}s?\b(?:\W+[a-z']+){{0,{NUMBER_REACH_WORDS}}}?\W+{_DIGITS}",
                          text, re.IGNORECASE)
        if match is None or len(digits := re.sub(r"\D", "", match.group(1))) < 3:
            continue
        try:
            found.append(ToolCall(name, validate_arguments(spec, {param: digits})))
        except ToolError:
            continue
    return found[0] if len(found) == 1 else None


_SMALL_TALK = re.compile(
    r"^\W*(hi|hello|hey|yes|yeah|yep|no|nope|okay|ok|sure|great|fine|good|alright|all right|right|perfect|"
    r"thanks|thank you|i see|got it|cool|wait|hold on|one moment|sorry|pardon|excuse me|uh|um|hmm)\b[\W\w]{0,12}$",
    re.IGNORECASE)


def transfer_target(text: str, targets: Iterable[str]) -> str | None:
    """The transfer target a caller plainly asks for ("can you transfer me to billing"), or None."""
    if not _TRANSFER_VERB.search(text):
        return None
    words = text.lower()
    spoken = re.findall(r"[a-z]+", words)
    for target in targets:
        name = target.lower().replace("_", " ").replace("-", " ")
        stem = name[:-1] if name.endswith("s") else name
        if re.search(rf"\b{re.escape(stem)}", words):
            return target
    for target in targets:  # the department's word stem: "my bill" for billing
        stem = re.sub(r"(ing|er|s)$", "", target.lower())
        if len(stem) >= 4 and any(w.startswith(stem) for w in spoken):
            return target
    for target in targets:  # speech-to-text near misses: "building" for "billing"
        name = target.lower()
        if len(name) >= 5 and any(SequenceMatcher(None, name, w).ratio() >= 0.75 for w in spoken if len(w) >= 4):
            return target
    if _HUMAN.search(text):
        for target in targets:
            if target.lower() in _HUMAN_TARGETS:
                return target
    return None


def names_a_transfer(text: str) -> bool:
    """The caller asks to be put through, to whom or not ("can I talk to the manger")."""
    return bool(_TRANSFER_VERB.search(text))


def asks_for_transfer(text: str, target: str) -> bool:
    """Whether the caller's words support a transfer to `target` the LLM chose: they asked to be
    put through somewhere, or named the target."""
    return names_a_transfer(text) or transfer_target(f"transfer {text}", [target]) is not None


def is_information_question(text: str) -> bool:
    """Whether the caller asks the business for information (not a request, their name, a goodbye
    or small talk): what must be answered from the knowledge base or not at all. Speech-to-text
    drops question marks and first words ("do you repair cars" came back as "You repair cars."),
    so anything but small talk and requests counts."""
    stripped = text.strip()
    if not stripped or _NOT_A_LOOKUP.search(stripped) or _SMALL_TALK.match(stripped):
        return False
    return stripped.endswith("?") or bool(_QUESTION_START.match(stripped)) or len(stripped.split()) >= 3
