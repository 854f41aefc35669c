"""Speak stage: a reply's clauses -> TTS -> the playout queue, on the reply's speaker thread.

TTS each clause as soon as it is complete, while the LLM goes on with the next one. (The models'
compute gate lets a synthesis step go before the next LLM token: on 2 cores running both at once
would slow each of them down.) Fixed lines come from the phrase cache, with no TTS run. On a
wideband line (the playout says so) each clause is also resampled to 16 kHz from the TTS's own rate.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

from gateway.conversation.bot_audio import BotAudio
from gateway.conversation.generate import Phrase, Speech
from gateway.conversation.playout import Playout
from gateway.conversation.reply import ReplyHandle
from gateway.conversation.speech import clause_pause_ms, synthesize_line_audio, trim_silence
from models.base import Tts


class Speaker:
    def __init__(self, tts: Tts, phrase: Callable[[str], BotAudio], playout: Playout,
                 clock: Callable[[], float]):
        self.tts = tts
        self.phrase = phrase
        self.playout = playout
        self.clock = clock

    def run(self, reply: ReplyHandle, items: queue.Queue[Speech | None]) -> None:
        """Speak `items` until None (or the reply is cancelled)."""
        while True:
            item = items.get()
            if item is None or reply.cancelled.is_set():
                return
            if isinstance(item, Phrase):
                audio = self.phrase(item.text)
                reply.phrases.append(item.text)
            else:
                started = self.clock()
                audio = synthesize_line_audio(self.tts, item.text, cancel=reply.cancelled,
                                              wideband=self.playout.line_wideband.is_set())
                if reply.cancelled.is_set():
                    return
                if reply.timings.first_tts_s is None:
                    reply.timings.first_tts_s = self.clock() - started
                audio = trim_silence(audio, keep_lead_ms=5.0, keep_tail_ms=clause_pause_ms(item.text))
            if reply.timings.first_tts_audio is None:
                reply.timings.first_tts_audio = self.clock()
            reply.spoken.append(item.text)
            reply.bot_audio_s += audio.duration_s
            self.playout.push(reply.turn, audio, item.text)
            reply.first_audio.set()
