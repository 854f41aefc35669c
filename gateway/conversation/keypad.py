"""Keys the caller presses, owned by the controller thread.

A key with an action in the agent's `dtmf` map acts at once; other keys are collected (an account
number, a menu choice typed as digits) until the caller pauses for `dtmf_gap_s`, then handed to the
LLM as one note. Split out of the controller so the collecting rule has one home and one test.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import DtmfAction
from gateway.conversation.reply import FollowUp


class Keypad:
    def __init__(self, actions: Mapping[str, DtmfAction], gap_s: float):
        self.actions = actions
        self.gap_s = gap_s
        self._digits: list[str] = []
        self._last_at = 0.0

    def press(self, digit: str, now: float) -> DtmfAction | None:
        """The key's action, or None when the key is collected for the next `due`."""
        action = self.actions.get(digit)
        if action is None:
            self._digits.append(digit)
            self._last_at = now
        return action

    def due(self, now: float) -> FollowUp | None:
        """The collected keys once the caller has paused for the gap, as a note for the LLM."""
        if not self._digits or now - self._last_at < self.gap_s:
            return None
        digits, self._digits = " ".join(self._digits), []
        return FollowUp(f"The caller pressed these keys on the keypad: {digits}. Respond briefly.")
