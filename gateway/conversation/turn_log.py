"""The `turn` log line and the call record's turn, caller-speech and bot-speech entries.

A turn is logged once its first audio went out (so `first_rtp_ms` is known) or it can no longer
go out. Owned by the controller thread; the field names are what `gateway/report.py`, the
integration tests and the docs read, so they stay as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.agents.base import RecordKind
from gateway.conversation.events import Held, Unheld
from gateway.conversation.reply import ReplyHandle, ReplyState


class TurnLog:
    def __init__(self, log: Any, record: Callable[..., None], clock: Callable[[], float]):
        self.log = log
        self.record = record
        self.clock = clock
        self._pending: list[ReplyHandle] = []
        self._held_at = 0.0  # onset of what holds the bot's audio (bot_held), for the bot_resumed line

    def add(self, reply: ReplyHandle) -> None:
        self._pending.append(reply)

    def flush(self, has_audio: Callable[[int], bool]) -> list[ReplyHandle]:
        """Log the turns that are ready; returns them."""
        pending, done = [], []
        for reply in self._pending:
            cut = interrupted(reply)
            if reply.timings.first_rtp is None and has_audio(reply.turn) and not cut:
                pending.append(reply)
                continue
            self.log.info("turn", turn=reply.turn, speculative=reply.timings.speculative, caller=reply.caller_text,
                          bot=" ".join(reply.spoken), cancelled=cut, failed=reply.failed,
                          retrieval_ms=None if reply.retrieval_ms is None else round(reply.retrieval_ms, 2),
                          **_end_of_turn_field(reply.timings.end_of_turn_model),
                          **reply.timings.as_ms(), **_llm_fields(reply.llm_stats), **_tts_field(reply))
            self._record(reply)
            done.append(reply)
        self._pending = pending
        return done

    def hold(self, event: Held | Unheld) -> None:
        """The bot_held / bot_resumed lines of a hold-then-confirm barge-in (turn_taker.py)."""
        if isinstance(event, Held):
            self._held_at = event.at
            self.log.info("bot_held", onset_to_silence_ms=round((event.held_at - event.at) * 1000, 1))
        else:
            self.log.info("bot_resumed", held_ms=round((event.at - self._held_at) * 1000, 1))

    def phrase(self, why: str, text: str, seconds: float) -> None:
        """A fixed line said now (greeting, re-prompt, a tool's outcome): logged and recorded."""
        self.log.info("bot_phrase", why=why, text=text)
        start = time.time()
        self.record(RecordKind.BOT_SPEECH, start=start, end=start + seconds, text=text, interrupted=False)

    def wall(self, t: float) -> float:
        """A time on the agent's clock as Unix time (records are read by people and other tools)."""
        return time.time() - (self.clock() - t)

    def _record(self, reply: ReplyHandle) -> None:
        end = self.wall(reply.timings.speech_end)
        cut = interrupted(reply)
        if reply.caller_text:
            audio = reply.caller_audio
            start = end - (max(0, audio.length - audio.lead) * 0.02 if audio is not None else 0.0)
            self.record(RecordKind.CALLER_SPEECH, start=start, end=end, text=reply.caller_text)
        self.record(RecordKind.TURN, turn=reply.turn, caller=reply.caller_text, bot=" ".join(reply.spoken),
                    speech_end=end, stages=reply.timings.as_ms(), cancelled=cut)
        if reply.timings.first_rtp is not None:
            start = self.wall(reply.timings.first_rtp)
            self.record(RecordKind.BOT_SPEECH, start=start, end=start + reply.bot_audio_s, text=" ".join(reply.spoken),
                        interrupted=cut)


def interrupted(reply: ReplyHandle) -> bool:
    """Cancelled, or cut short by the caller (a barge-in may come after the reply had finished)."""
    return reply.state is ReplyState.CANCELLED or reply.heard is not None


def _end_of_turn_field(probability: float | None) -> dict[str, float]:
    """P(finished) from the end-of-turn model, on the turns it judged (to tune `turn_model_threshold`)."""
    return {} if probability is None else {"end_of_turn_p": round(probability, 3)}


def _llm_fields(stats: object | None) -> dict[str, float]:
    """Prompt size, KV-cache reuse and slot wait of the turn's LLM stream: why a first token was slow.

    With an engine that keeps them (models/llama.py): the prefill (first step: the uncached prompt
    tokens and one token), the compute gate's wait on the way to the first token, the time per later
    token, and how many pieces the first spoken clause took: first clause ~ wait + prefill + pieces
    x per-token."""
    if stats is None:
        return {}
    fields: dict[str, float] = {"llm_prompt_tokens": getattr(stats, "prompt_tokens", 0),
                                "llm_cached_tokens": getattr(stats, "cached_tokens", 0),
                                "llm_wait_ms": round(getattr(stats, "wait_s", 0.0) * 1000, 1)}
    if hasattr(stats, "prefill_s"):
        steps = getattr(stats, "decode_steps", 0)
        fields.update(llm_prefill_ms=round(stats.prefill_s * 1000, 1),
                      llm_gate_wait_ms=round(getattr(stats, "first_gate_wait_s", 0.0) * 1000, 1),
                      llm_ms_per_token=round(getattr(stats, "decode_s", 0.0) * 1000 / steps, 1) if steps else 0.0)
    pieces = getattr(stats, "pieces_to_clause", None)
    if pieces is not None:
        fields["llm_pieces_to_clause"] = pieces
    return fields


def _tts_field(reply: ReplyHandle) -> dict[str, float]:
    """How long the first clause's synthesis took (the last stage before the audio is queued)."""
    took = reply.timings.first_tts_s
    return {} if took is None else {"first_tts_ms": round(took * 1000, 1)}
