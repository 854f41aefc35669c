"""The caller's silence: when to ask "are you still there?" and when to say goodbye.

Silence counts only while nobody talks and no reply is on its way; it restarts whenever the
caller speaks, and the re-prompt is said once per silence (a caller who answers it earns a new
one). Owned by the controller thread; split out so the rule reads in one place.
"""

from __future__ import annotations

import enum


class SilenceAction(enum.Enum):
    NONE = "none"
    REPROMPT = "reprompt"
    HANG_UP = "hang_up"


class SilenceTimer:
    def __init__(self, reprompt_after_s: float, hangup_after_s: float, now: float):
        self.reprompt_after_s = reprompt_after_s
        self.hangup_after_s = hangup_after_s
        self._since = now
        self._reprompted = False

    def caller_spoke(self, now: float) -> None:
        self._since = now
        self._reprompted = False

    def busy(self, now: float) -> None:
        """Someone is talking or a reply is coming: not silence."""
        self._since = now

    def check(self, now: float) -> SilenceAction:
        idle = now - self._since
        if idle >= self.hangup_after_s:
            return SilenceAction.HANG_UP
        if idle >= self.reprompt_after_s and not self._reprompted:
            self._reprompted = True
            return SilenceAction.REPROMPT
        return SilenceAction.NONE
