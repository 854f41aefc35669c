"""The conversation agent: a caller talks, the bot answers like a person would.

This module only wires the conversation core together and is the call's `Agent`:

* media clock thread (every 20 ms): `on_audio` feeds the `TurnTaker` (VAD, echo guard, turn
  policy) and posts its turn events to the controller; on a barge-in it silences the bot *at
  once* (the playout queue is flushed right there, not after a round trip to another thread);
  `next_frame` hands out the bot's next frame;
* the controller thread (`controller.py`): owns the conversation's state and reacts to events;
* reply threads (`pipeline.py`): transcribe -> plan -> generate -> speak, one per reply, each
  reporting back through its `ReplyHandle` and one `ReplyFinished` event;
* the SIP thread: `on_start` / `on_stop` post an event and return (no join, no database write).

Replies start speculatively when the caller pauses: the utterance so far is transcribed at every
pause while the caller is still speaking, so when they stop the transcript is usually already
under way; the reply's audio is held until the turn is confirmed and dropped if the caller goes
on. While the bot talks, the echo guard keeps its own voice coming back on the line from being
taken for the caller (see echo_guard.py).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from gateway.agents.base import CallContext
from gateway.conversation.answer_detection import ShapeAnswerPolicy
from gateway.conversation.controller import Controller
from gateway.conversation.end_of_turn import CallVerdicts
from gateway.conversation.events import (
    BargedIn,
    CallStarted,
    CallStopped,
    DtmfPressed,
    Held,
    Observation,
    Unheld,
    Utterance,
)
from gateway.conversation.outbound_start import AnswerListener, Transcribe
from gateway.conversation.pipeline import ReplyPipeline
from gateway.conversation.playout import Playout
from gateway.conversation.semantic_turn import SemanticTurnPolicy
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.skills import AgentSkills
from gateway.conversation.speak import Speaker
from gateway.conversation.speech import ConversationServices
from gateway.conversation.turn_taker import TurnTaker
from gateway.conversation.turns import TurnDetector, TurnPolicy
from gateway.conversation.utterance_audio import utterance_audio16k
from rtp.jitter import JitterFrame
from rtp.outbound import OutboundFrame


class ConversationAgent:
    # The STT hears the echo-cancelled line while the bot talks (turn_taker.py); turn-taking itself
    # judges the line as received, with the echo guard (echo_guard.py).
    uses_echo_canceller = True

    def __init__(self, context: CallContext, settings: ConversationSettings, services: ConversationServices,
                 clock: Callable[[], float] = time.monotonic, policy: TurnPolicy | None = None,
                 observe: Callable[[Observation], None] = lambda o: None):
        self.context = context
        self.settings = settings
        self.clock = clock
        self.log = context.log
        models = services.models
        self.playout = Playout(clock=clock)
        self._turn_verdicts: CallVerdicts | None = None  # set by _turn_policy when it reads transcripts
        self.turn_taker = TurnTaker(models.vad.new_stream(8000), policy or self._turn_policy(services),
                                    settings.preroll_ms // 20, speech_threshold=settings.vad_threshold,
                                    reach_back_frames=settings.onset_reach_back_ms // 20)
        skills = services.skills_for(settings.agent_name) or AgentSkills(settings.agent_name, settings.instructions)
        speaker = Speaker(models.tts, services.phrase, self.playout, clock)

        def pipeline(controller: Controller) -> ReplyPipeline:
            return ReplyPipeline(skills, settings, models.llm, speaker, self.playout, self.log, clock,
                                 context.call_id, controller.post, context.record)

        self.controller = Controller(context, settings, services, skills, self.playout, pipeline, clock, observe)
        if self._turn_verdicts is not None:
            self.controller.transcriber.listeners.append(self._turn_verdicts.heard)
        # outbound calls: who answered, before the turn taker's events reach the controller
        self.answer = AnswerListener(ShapeAnswerPolicy(settings.amd.answer(settings.vad_threshold)),
                                     settings.amd.enabled, first_words(services)) \
            if context.direction == "outbound" else None
        self._thread = threading.Thread(target=self.controller.run, name=f"call-{context.call_id[:12]}", daemon=True)

    def _turn_policy(self, services: ConversationServices) -> TurnPolicy:
        """Silence alone (the VAD policy), or silence with the end-of-turn model and/or the words of
        the speculative transcript (semantic_turn.py)."""
        settings = self.settings
        if settings.turn_model == "none":
            return TurnDetector(settings.turn)
        model = services.turn_model if settings.turn_audio_model else None
        if settings.turn_audio_model and model is None:  # a test or tool that built its services without it
            self.log.warning("turn_model_not_loaded", turn_model=settings.turn_model)
            if not settings.turn_text:
                return TurnDetector(settings.turn)
        log = self.log

        def failed(error: str) -> None:  # once per call, on the media thread
            log.warning("turn_model_failed", error=error, fallback="vad")

        verdicts = model.for_call() if model is not None else CallVerdicts(None)
        if settings.turn_text:
            self._turn_verdicts = verdicts  # the controller, built next, tells it of every transcript
        return SemanticTurnPolicy(settings.turn, settings.semantic_turn, verdicts, failed)

    # -- SIP thread ----------------------------------------------------------------------------

    def on_start(self) -> None:
        self._thread.start()
        self.controller.post(CallStarted())

    def on_stop(self) -> None:
        """Tell the controller and return: it cancels the reply and writes the caller's memory on
        its own thread. (The echo guard's figures are read here: the media clock has let go of
        the call, and a tuple copy of them is taken in one step.)"""
        summary = self.turn_taker.echo_summary()
        if summary is not None:
            self.log.info("echo_guard", **summary)
        self.controller.stopping.set()
        self.controller.post(CallStopped())

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the controller to finish (tests and tools; the gateway never waits)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- media clock thread ----------------------------------------------------------------------

    def on_audio(self, frame: JitterFrame, echo_cancelled: np.ndarray | None = None) -> None:
        now = self.clock()
        if (frame.wideband is not None) != self.playout.line_wideband.is_set():  # the codec (re)negotiated
            if frame.wideband is not None:
                self.playout.line_wideband.set()
            else:
                self.playout.line_wideband.clear()
        signals = self.turn_taker.feed(now, frame.pcm, frame.type, self.playout.speaking(now), echo_cancelled,
                                       frame.wideband)
        if signals and self.turn_taker.last_cues is not None:
            cues = self.turn_taker.last_cues
            self.log.debug("turn_levels", probability=round(cues.probability, 2), loud=cues.loud,
                           raw_db=round(cues.level_db, 1), background_db=round(cues.background_db, 1),
                           echo_correlation=round(cues.echo_correlation, 2))
        answer = self.answer
        if answer is not None:
            cues = self.turn_taker.last_cues
            for found in answer.feed(now, frame.pcm, cues.probability if cues is not None else 0.0):
                self.controller.post(found)
            signals = [s for s in signals if answer.passes(s)]
        for signal in signals:
            if isinstance(signal, Held):
                self.playout.hold()  # silence from the very next tick, nothing lost yet
            elif isinstance(signal, Unheld):
                self.playout.resume()  # not an interruption: the bot goes on where it stopped
            elif isinstance(signal, BargedIn):
                signal = dataclasses.replace(signal, heard=self.playout.flush())  # the interruption is real: cut it
            self.controller.post(signal)

    def next_frame(self) -> OutboundFrame | None:
        frame = self.playout.next_frame()
        self.turn_taker.heard_bot(None if frame is None else frame.pcm)  # the echo guard works at 8 kHz
        return frame

    def on_dtmf(self, digit: str) -> None:
        self.controller.post(DtmfPressed(digit))


def first_words(services: ConversationServices) -> Transcribe:
    """An outbound callee's first words to text, on the models' pool (answer detection's check)."""
    models = services.models

    def transcribe(frames: tuple[np.ndarray, ...]) -> Future[str]:
        return models.executor.submit(lambda: models.stt.transcribe(utterance_audio16k(Utterance(0, frames))).text)

    return transcribe
