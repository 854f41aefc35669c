"""Cutting a streamed LLM reply into pieces for TTS: early first piece, no false boundaries."""

import re

from gateway.conversation.clauses import ClauseSplitter, split_stream


def tokens(text: str) -> list[str]:
    """Like an LLM stream: words with their leading space, punctuation attached."""
    return re.findall(r"\s*\S+", text)


def test_first_piece_is_cut_early_then_sentences():
    pieces = list(split_stream(tokens("A cleaning costs 90 dollars. We are open on weekdays, from 8 am to 5 pm.")))
    assert pieces[0] == "A cleaning"  # at most two words before the first synthesis starts
    assert " ".join(pieces) == "A cleaning costs 90 dollars. We are open on weekdays, from 8 am to 5 pm."
    assert "costs 90 dollars." in pieces


def test_short_first_clause_is_cut_at_its_boundary():
    assert list(split_stream(tokens("Sure, we can do that.")))[0] == "Sure,"


def test_numbers_and_abbreviations_are_not_boundaries():
    splitter = ClauseSplitter(first_max_words=50)
    pieces = list(split_stream(tokens("It costs $3.50 per visit and Dr. Smith sees 1,200 patients. Bye."), splitter))
    assert pieces == ["It costs $3.50 per visit and Dr. Smith sees 1,200 patients.", "Bye."]


def test_long_run_without_punctuation_is_cut():
    splitter = ClauseSplitter(first_max_words=10, max_words=10)
    text = " ".join(f"word{i}" for i in range(30))
    pieces = list(split_stream(tokens(text), splitter))
    assert len(pieces) >= 3 and all(len(p.split()) <= 11 for p in pieces)
    assert " ".join(pieces) == text


def test_markdown_is_not_spoken():
    assert list(split_stream(tokens("**Hours:** 8 am."), ClauseSplitter(first_max_words=50))) == ["Hours: 8 am."]
