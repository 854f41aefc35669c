"""The listening benchmark's word error rate: normalisation and the edit distance."""

from __future__ import annotations

import pytest

from bench.wer import NO_ERRORS, WordErrors, normalise, word_errors


def test_normalise_drops_case_punctuation_and_hesitations() -> None:
    assert normalise("Um, are you open on Saturday?") == ["are", "you", "open", "on", "saturday"]
    assert normalise("Uh... let me see. Dr. Patel's") == ["let", "me", "see", "doctor", "patel's"]


def test_digits_are_words_one_by_one() -> None:
    assert normalise("4271") == normalise("four two seven one") == ["four", "two", "seven", "one"]
    assert normalise("9") == ["nine"]


def test_identical_after_normalising_is_zero() -> None:
    errors = word_errors("Are you open on Saturday?", "are you open on saturday")
    assert errors == WordErrors(0, 0, 0, 5)
    assert errors.rate == 0.0


def test_counts_each_kind_of_edit() -> None:
    assert word_errors("what time do you close", "what time do you clone") == WordErrors(1, 0, 0, 5)
    assert word_errors("where is your office", "where your office") == WordErrors(0, 1, 0, 4)
    assert word_errors("yes", "yes please") == WordErrors(0, 0, 1, 1)
    assert word_errors("how much does a cleaning cost", "") == WordErrors(0, 6, 0, 6)


def test_minimal_distance_not_greedy() -> None:
    # one deletion and one insertion are cheaper than four substitutions
    assert word_errors("a b c d e", "b c d e f").errors == 2


def test_rate_pools_over_turns_and_handles_empty_reference() -> None:
    pooled = word_errors("one two", "one three") + word_errors("four", "four")
    assert pooled.rate == pytest.approx(1 / 3)
    assert sum([word_errors("yes", "no")], NO_ERRORS).rate == 1.0
    assert word_errors("", "hello there").rate == 2.0
