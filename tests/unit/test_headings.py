"""The facts' heading paths are not read out (gateway/conversation/headings.py)."""

from __future__ import annotations

from gateway.conversation.headings import HeadingFilter, fact_headings

CONTENT = ("Facts:\n- Prices > Bread: A sourdough loaf is 7 dollars.\n- Harbor Dental > Opening hours: We are open "
           "Monday to Friday, 8 am to 5 pm.\n- Opening hours: Saturday: 9 am to 1 pm.\n\nCaller: how much is bread")


def streamed(text: str, headings: tuple[str, ...] = fact_headings(CONTENT), step: int = 3) -> tuple[str, list[str]]:
    """What the filter lets through, fed in `step`-character pieces, and what it released per piece."""
    f = HeadingFilter(headings)
    released = [f.feed(text[i : i + step]) for i in range(0, len(text), step)]
    return "".join(released) + f.flush(), released


def test_the_headings_are_read_from_the_facts_block():
    assert fact_headings(CONTENT) == ("Prices > Bread", "Harbor Dental > Opening hours", "Opening hours")
    assert fact_headings("how much is bread") == ()


def test_a_reply_that_opens_with_a_heading_path_is_said_without_it():
    assert streamed("Prices > Bread: A sourdough loaf is 7 dollars.")[0] == "A sourdough loaf is 7 dollars."
    assert streamed("Harbor dental opening hours. We are open Monday to Friday.")[0] == "We are open Monday to Friday."
    assert streamed("Opening hours: We open at 8.")[0] == "We open at 8."
    assert streamed("Bread: a sourdough loaf is 7 dollars.")[0] == "a sourdough loaf is 7 dollars."  # one step of it


def test_any_other_reply_passes_unchanged_and_is_not_held():
    for reply in ("We are open Monday to Friday: 8 am to 5 pm.", "Opening hours are 8 to 5.", "Yes. Prices vary.",
                  "A sourdough loaf is 7 dollars."):
        assert streamed(reply)[0] == reply
    # released at once: not a heading's start
    assert streamed("We are open Monday to Friday.", step=3)[1][0] == "We "
    assert streamed("Sure.", headings=())[1] == ["Sur", "e."]  # no facts: nothing held
