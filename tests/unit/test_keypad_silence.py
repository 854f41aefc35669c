"""The controller's two small timers: collected keys and the caller's silence (no real time)."""

from gateway.config import DtmfAction
from gateway.conversation.keypad import Keypad
from gateway.conversation.silence import SilenceAction, SilenceTimer


def test_keys_without_an_action_are_handed_over_together_after_the_gap() -> None:
    keypad = Keypad({"0": DtmfAction(say="Connecting you.")}, gap_s=1.5)
    assert keypad.press("4", 10.0) is None
    assert keypad.press("2", 10.5) is None
    assert keypad.due(11.9) is None  # 1.4 s since the last key
    note = keypad.due(12.0)
    assert note is not None and "4 2" in note.note
    assert keypad.due(20.0) is None  # handed over once


def test_a_key_with_an_action_acts_at_once_and_is_not_collected() -> None:
    action = DtmfAction(say="Connecting you.")
    keypad = Keypad({"0": action}, gap_s=1.5)
    assert keypad.press("0", 1.0) is action
    assert keypad.due(10.0) is None


def test_silence_reprompts_once_then_hangs_up_and_restarts_when_the_caller_speaks() -> None:
    timer = SilenceTimer(reprompt_after_s=8, hangup_after_s=20, now=0.0)
    assert timer.check(7.9) is SilenceAction.NONE
    assert timer.check(8.0) is SilenceAction.REPROMPT
    assert timer.check(9.0) is SilenceAction.NONE
    timer.caller_spoke(10.0)
    assert timer.check(18.0) is SilenceAction.REPROMPT  # a new silence earns a new re-prompt
    timer.busy(25.0)  # the bot talked until 25 s
    assert timer.check(44.9) is SilenceAction.NONE
    assert timer.check(45.0) is SilenceAction.HANG_UP
