"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def harness():
    """``harness(**kw) -> Harness``: a conversation agent on a fake clock (tests/unit/test_conversation.py);
    every one made is stopped at the end of the test."""
    from tests.unit.test_conversation import Harness

    made = []

    def make(**kw):
        h = Harness(**kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
