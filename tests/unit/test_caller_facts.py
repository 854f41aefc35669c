"""Names and call reasons from transcribed caller speech: find the real ones, never invent one."""

from __future__ import annotations

import pytest

from gateway.conversation.caller_facts import MAX_NAME_WORDS, MAX_REASON_WORDS, call_reason, caller_name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("my name is John Smith", "John Smith"),
        ("My name is John Smith.", "John Smith"),
        ("this is Maria", "Maria"),
        ("it's Bob here", "Bob"),
        ("Hi it\u2019s Bob here", "Bob"),  # typographic apostrophe
        ("I'm Alice Jones calling about my bill", "Alice Jones"),
        ("hi my name is john smith i need to reschedule", "John Smith"),
        ("Hi, this is Maria, I'm calling about my appointment.", "Maria"),
        ("hello it's bob", "Bob"),
        ("yeah hi this is dr. o'brien calling", "Dr O'Brien"),
        ("MY NAME IS MARY ANNE SMITH JONES", "Mary Anne Smith"),  # at most three words
        ("hi I'm Alice", "Alice"),
        ("good morning this is Mohammed from Acme", "Mohammed"),
        ("you can call me Bob", "Bob"),
        ("my name's Ahmed", "Ahmed"),
        ("Hello, this is Jean-Luc Picard.", "Jean-Luc Picard"),
        ("this is DeShawn Williams speaking", "DeShawn Williams"),
        ("so my first name is Sarah and my last name is Lee", "Sarah"),
        ("um hi yes this is tom", "Tom"),
        ("I am Priya Patel and I'm calling about the invoice", "Priya Patel"),
        ("this is mrs garcia", "Mrs Garcia"),
        ("I'm Ana calling from the clinic", "Ana"),
        ("my name is john smith calling about my bill", "John Smith"),
        ("Yes, this is Kim with Northwind.", "Kim"),
        ("im alice", "Alice"),
    ],
)
def test_finds_names(text: str, name: str):
    assert caller_name(text) == name


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello?",
        "I'm calling about my bill",
        "I'm fine",
        "i'm fine thanks",
        "this is urgent",
        "Hi, this is urgent.",
        "I'm looking for a plumber",
        "it's broken",
        "this is about my order",
        "I'm having trouble with my internet",
        "the thing is this is ridiculous",
        "i'm sorry",
        "it's me",
        "I'm not sure",
        "because i'm locked out",
        "this is regarding my account",
        "please call me back",
        "call me at five",
        "it's about my bill",
        "I'm a new patient",
        "so i'm wondering if you're open",
        "my name is not important",
        "I'm just calling to ask",
        "I'm interested in a quote",
        "this is the third time i called",
        "Yes I'm here",
        "This is really frustrating",
        "I'm trying to book an appointment",
        "I'm good how are you",
        "it is what it is",
        "my order number is 4711",
        "the name is on the account",
        "I think it's leaking again",
    ],
)
def test_does_not_invent_names(text: str):
    assert caller_name(text) is None


def test_cased_transcript_needs_a_capitalized_name_after_a_weak_trigger():
    # Whisper capitalizes names; a lowercase word after "this is" in cased text is not one.
    assert caller_name("Hi, this is unacceptable.") is None  # not in the stop list: the case rule rejects it
    assert caller_name("Hi, this is Nancy Drew.") == "Nancy Drew"
    assert caller_name("Hi, my name is nancy.") == "Nancy"  # a strong trigger does not need the capital


def test_name_is_title_cased_and_bounded():
    name = caller_name("my name is ANNA MARIA DE LA CRUZ")
    assert name == "Anna Maria De"
    assert name is not None and len(name.split()) <= MAX_NAME_WORDS


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I'm calling about my bill", "my bill"),
        ("im calling about my bill", "my bill"),
        ("I am calling regarding the invoice", "the invoice"),
        ("I need to reschedule my appointment", "reschedule my appointment"),
        ("i want to cancel my order please", "cancel my order"),
        ("I'd like to book a cleaning for next week", "book a cleaning for next week"),
        ("id like to book a cleaning", "book a cleaning"),
        ("I would like to speak to someone about a leak. It's urgent.", "speak to someone about a leak"),
        ("I'm calling because I need to cancel my subscription", "cancel my subscription"),
        (
            "hi my name is John, I'm calling regarding the invoice you sent last month and my name is",
            "the invoice you sent last month",
        ),
        ("I was wondering if you're open on Saturday", "if you're open on Saturday"),
        ("I have a question about my bill", "a question about my bill"),
        ("I need help with my password", "help with my password"),
        ("the reason I'm calling is my heater broke", "my heater broke"),
        ("we need to move the delivery date um to friday", "move the delivery date to friday"),
        ("I need to know what time it is", "know what time it is"),
        ("I'm calling to ask about pricing", "ask about pricing"),
        ("Hi, this is Maria. I'm calling about my appointment tomorrow.", "my appointment tomorrow"),
        ("I want a refund", "a refund"),
    ],
)
def test_finds_reasons(text: str, reason: str):
    assert call_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "yes",
        "I'm fine",
        "I'm calling",
        "I need to",
        "I'd like to. Thanks",
        "I don't need to do anything",
        "I'm calling you back",
        "no I don't want to",
        "my name is John Smith",
        "what are your hours",
    ],
)
def test_no_reason(text: str):
    assert call_reason(text) is None


def test_reason_is_at_most_twelve_words():
    reason = call_reason(
        "i'm calling to ask about pricing for a new roof on a three bedroom house with a garage and a shed"
    )
    assert reason is not None
    assert len(reason.split()) <= MAX_REASON_WORDS
    assert reason.startswith("ask about pricing for a new roof")
    assert reason.split()[-1] not in {"a", "and", "with", "the"}  # no dangling word at the cut


def test_never_raises_on_odd_input():
    for text in [
        "...",
        "'",
        "my name is",
        "this is",
        "I'm",
        "\u2019s",
        "my name is -",
        "I'm calling about ,,,",
        "1 2 3",
    ]:
        caller_name(text)
        call_reason(text)
