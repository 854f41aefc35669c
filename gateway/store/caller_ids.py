"""Caller IDs as keys: the one spelling of a caller that every backend stores and looks up.

A raw ``From`` header, a ``tel:`` URI and a bare number written with spaces must find the same
caller, on every gateway and in every backend, so normalization happens here, before SQL.
"""

from __future__ import annotations

import re

__all__ = ["compact_number", "do_not_call_key", "normalize_caller_id"]

_ANONYMOUS = frozenset({"", "anonymous", "unknown", "unavailable", "restricted", "private", "withheld", "none"})
_PHONE = re.compile(r"^\+?[\d\s().\-/]+$")  # a number written with visual separators
_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)


def normalize_caller_id(text: str | None) -> str | None:
    """The key a caller is remembered by: the user part of their SIP/tel URI, or None if anonymous.

    ``"Alice" <sip:+15551234@pbx;transport=udp>`` -> ``+15551234``; ``tel:+1-555-123-4567`` ->
    ``+15551234567``; ``1001`` -> ``1001``.  Phone numbers lose their visual separators so the
    same number written two ways is one caller.  None for empty input and for the placeholders
    PBXs use when the number is withheld ("anonymous", "unknown", "restricted", ...).  Idempotent.
    """
    if text is None:
        return None
    uri = text.strip()
    if "<" in uri:  # name-addr: the URI is between the angle brackets, the display name is not used
        uri = uri.split("<", 1)[1].split(">", 1)[0]
    uri = _SCHEME.sub("", uri.strip())
    user = re.split(r"[;?@]", uri, maxsplit=1)[0].strip()
    if _PHONE.match(user) and any(c.isdigit() for c in user):
        user = ("+" if user.startswith("+") else "") + re.sub(r"\D", "", user)
    if user.lower() in _ANONYMOUS or not user:
        return None
    return user


def compact_number(text: str | None) -> str | None:
    """A callback number as given, with a phone number's separators removed (so forget() can match it)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if _PHONE.match(text) and any(c.isdigit() for c in text):
        return ("+" if text.startswith("+") else "") + re.sub(r"\D", "", text)
    return text


def do_not_call_key(text: str | None) -> str | None:
    """The spelling a number is kept under on the do-not-call list, E.164-ish.

    As :func:`normalize_caller_id` (``sip:`` URIs, separators, brackets), plus an international
    ``00`` prefix written as ``+``: ``0049 30 123-4567``, ``+49 (30) 1234567`` and
    ``sip:+49301234567@pbx`` are one entry.  National numbers (``030 1234567``) are kept as written:
    without a country to assume, guessing one could block the wrong person or miss the right one.
    """
    key = normalize_caller_id(text)
    if key is not None and key.startswith("00") and key[2:].isdigit() and len(key) > 4:
        return "+" + key[2:]
    return key
