"""The call's conversation as the LLM sees it, and what the caller said (for memory and messages).

Owned by the controller thread. A reply joins the history only once the caller has heard it (or
cut it short): after a barge-in only the words that went out are kept, never what the LLM
generated but nobody heard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.conversation.history import approx_tokens, fit_history
from gateway.conversation.reply import ReplyHandle, ReplyState
from models.base import ChatMessage

_HISTORY_KEPT = 80  # messages stored per call before the oldest are summarized away
_CALLER_LINES_KEPT = 300


class CallHistory:
    def __init__(self, system_prompt: str, history_tokens: int):
        self.history_tokens = history_tokens
        self.messages: list[ChatMessage] = [ChatMessage("system", system_prompt)]
        self.caller_lines: list[str] = []  # everything the caller said (memory, messages)
        self._spoken: list[ReplyHandle] = []  # released replies not yet in the history

    def add_system(self, text: str) -> None:
        self.messages.append(ChatMessage("system", text))

    def add_call_details(self, variables: Mapping[str, str]) -> None:
        """An originated call's details (a reminder's name and time). After the fixed system
        prompt, so its KV cache still serves this call."""
        if variables:
            self.add_system("Details for this call: " + "; ".join(f"{k}: {v}" for k, v in variables.items()) + ".")

    def snapshot(self) -> list[ChatMessage]:
        return list(self.messages)

    def released(self, reply: ReplyHandle) -> None:
        self._spoken.append(reply)

    def settle(self, has_audio: Callable[[int], bool], forget: Callable[[int], None],
               interrupted: Mapping[int, str] | None = None) -> None:
        """Move replies the caller has finished hearing (or cut short) into the history.

        After a barge-in `interrupted` holds, per turn, the words that went out before the
        flush: the rest of the reply was never heard and must not be remembered as said.
        """
        keep: list[ReplyHandle] = []
        for reply in self._spoken:
            if interrupted is None and (has_audio(reply.turn) or not reply.finished):
                keep.append(reply)
                continue
            if interrupted is not None:
                said = interrupted.get(reply.turn, "")
                if reply.state is not ReplyState.PLAYED:
                    reply.heard = said
            else:  # fixed lines stay out: after a few "One moment, please." the 0.5B model said nothing else
                said = " ".join(c for c in reply.spoken if c not in reply.phrases)
            if reply.caller_text:
                self.messages.append(ChatMessage("user", reply.caller_text))
                self.caller_lines.append(reply.caller_text)
            if said and not reply.fixed_line:
                # Fixed lines stay out: the 0.5B model given its greeting as its own last turn
                # repeated it word for word as the answer to the caller's first question.
                self.messages.append(ChatMessage("assistant", said))
            forget(reply.turn)
        self._spoken = keep
        self._bound()

    def transcript(self) -> str:
        return "\n".join(self.caller_lines)

    def everything_said(self) -> list[str]:
        """The caller's lines, including those of replies still playing (for the caller's memory)."""
        return self.caller_lines + [r.caller_text for r in self._spoken if r.caller_text]

    def _bound(self) -> None:
        """Keep a long call's stored history bounded, not just the prompt cut from it: measured over
        a simulated hour, `fit_history` re-read every dropped exchange each turn (5 ms per turn
        after an hour, on the way to the first token) and the lists grew without end."""
        if len(self.messages) > _HISTORY_KEPT:
            self.messages = fit_history(self.messages, 2 * self.history_tokens, approx_tokens)
        if len(self.caller_lines) > _CALLER_LINES_KEPT:  # the first lines carry name and reason
            self.caller_lines = self.caller_lines[:20] + self.caller_lines[-(_CALLER_LINES_KEPT - 40):]
