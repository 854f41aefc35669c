"""One reply's own thread: transcribe -> plan -> generate -> speak.

The controller starts it with everything it needs (the reply handle, the transcript under way, a
copy of the history) and hears back once, through a `ReplyFinished` event; in between the reply
thread writes only to its own handle. Speaking runs on a second thread per reply so synthesis of
one clause overlaps the generation of the next.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from gateway.agents.base import RecordKind
from gateway.conversation.answer_check import FactSentence
from gateway.conversation.confidence import Hearing, doubted_words
from gateway.conversation.events import CallEvent, ReplyFinished
from gateway.conversation.generate import Clause, Generation, Generator, Phrase, Speech
from gateway.conversation.history import approx_tokens, fit_history
from gateway.conversation.planner import asks_again, is_goodbye, plan_turn
from gateway.conversation.playout import Playout
from gateway.conversation.reply import ReplyHandle
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.skills import AgentSkills
from gateway.conversation.speak import Speaker
from gateway.conversation.transcribe import Heard
from models.base import CancelToken, ChatMessage, Llm, ModelError

_FIRST_AUDIO_WAIT_S = 0.3  # longest the LLM pauses for the first clause's TTS


@dataclass(frozen=True)
class LlmTurn:
    """The plan stage's output when the model is to answer: its user message and a safe fallback."""

    content: str
    best_fact: str | None = None
    sentences: tuple[FactSentence, ...] = ()  # the fact sentences the reply must carry (answer_check)


class ReplyPipeline:
    def __init__(self, skills: AgentSkills, settings: ConversationSettings, llm: Llm, speaker: Speaker,
                 playout: Playout, log: Any, clock: Callable[[], float], call_id: str,
                 post: Callable[[CallEvent], None], record: Callable[..., None]):
        self.skills = skills
        self.settings = settings
        self.llm = llm
        self.speaker = speaker
        self.playout = playout
        self.log = log
        self.clock = clock
        self.call_id = call_id
        self.post = post
        self.record = record

    def start(self, reply: ReplyHandle, transcript: Future[Heard] | None, history: list[ChatMessage]) -> None:
        threading.Thread(target=self._work, args=(reply, transcript, history), daemon=True,
                         name=f"reply-{reply.turn}").start()

    def _work(self, reply: ReplyHandle, transcript: Future[Heard] | None, history: list[ChatMessage]) -> None:
        try:
            self.run(reply, transcript, history)
        except ModelError as exc:
            reply.failed = True
            self.log.error("reply_failed", turn=reply.turn, error=str(exc))
            self.record(RecordKind.MODEL_ERROR, role=type(exc).__name__.removesuffix("Error").lower() or "model")
        except Exception:
            reply.failed = True
            self.log.exception("reply_failed", turn=reply.turn)
        finally:
            reply.finish(lambda: self.playout.has_audio(reply.turn))
            self.post(ReplyFinished(reply))

    def run(self, reply: ReplyHandle, transcript: Future[Heard] | None, history: list[ChatMessage]) -> None:
        """The whole reply, on the calling thread (tests and benchmarks may call it directly)."""
        planned = self.plan(reply, transcript, history)
        if planned is None:
            return
        items: queue.Queue[Speech | None] = queue.Queue()
        # A TTS server that dies mid-reply: its error, raised here once, and the LLM stopped at once
        # (nothing it says can be spoken; the apology must not wait for the watchdog).
        failed: list[ModelError] = []
        speaker_failed = threading.Event()

        def speak() -> None:
            try:
                self.speaker.run(reply, items)
            except ModelError as exc:
                failed.append(exc)
                speaker_failed.set()

        speaker = threading.Thread(target=speak, daemon=True, name=f"speaker-{reply.turn}")
        speaker.start()
        try:
            if isinstance(planned, Phrase):
                items.put(planned)
            else:
                self.generate(reply, history, planned, items, cancel=_Either(reply.cancelled, speaker_failed))
        finally:
            items.put(None)
            speaker.join()
        if failed:
            raise failed[0]

    def plan(self, reply: ReplyHandle, transcript: Future[Heard] | None,
             history: list[ChatMessage] | None = None) -> LlmTurn | Phrase | None:
        """What the LLM is asked this turn (or a fixed line to say instead; None: say nothing).

        Plain transfer requests and questions the knowledge base cannot answer are handled here,
        without the model: faster, and a small model cannot get them wrong.
        """
        if reply.follow_up is not None:
            self.log.info("follow_up", turn=reply.turn, note=reply.follow_up.note[:200])
            return LlmTurn(reply.follow_up.note)
        assert transcript is not None
        heard = transcript.result()
        if reply.cancelled.is_set():
            return None
        reply.caller_text = heard.text
        reply.timings.transcript_final = self.clock()
        if not meaningful(reply.caller_text) or heard.hearing is Hearing.NOTHING:
            self.log.info("turn_ignored", turn=reply.turn, transcript=reply.caller_text)
            reply.caller_text = ""
            return None
        if asks_again(heard.hearing, None, after_repeat_request=reply.after_repeat_request,
                      repeat_request=self.settings.repeat_request):
            return self._ask_again(reply, heard)
        if is_goodbye(reply.caller_text):
            reply.is_bye = True
            return None
        plan = plan_turn(self.skills, reply.caller_text, transfer_notice=self.settings.transfer_notice,
                         unknown_answer=self.settings.unknown_answer, history=history or (),
                         message_taken=self.settings.message_taken, acknowledgement=self.settings.acknowledgement)
        reply.retrieval_ms = plan.retrieval_ms
        # only on the don't-know path: an answered turn is never doubted, whatever its words
        doubted = plan.unknown and doubted_words(heard.transcript, self.skills.unknown_words(reply.caller_text))
        if asks_again(heard.hearing, plan, after_repeat_request=reply.after_repeat_request,
                      repeat_request=self.settings.repeat_request, text=reply.caller_text, doubted=doubted):
            return self._ask_again(reply, heard, doubted)
        if plan.say is not None:
            reply.action = plan.action
            return Phrase(plan.say)
        assert plan.content is not None
        content = plan.content
        if reply.notes:  # tool results that came in while the caller talked: this turn tells them
            content = "\n".join([*(n.note for n in reply.notes), content])
            reply.told_notes = True
        return LlmTurn(content, plan.best_fact, plan.sentences)

    def _ask_again(self, reply: ReplyHandle, heard: Heard, doubted: bool = False) -> Phrase:
        """The transcript is not to be trusted: ask the caller to say it again (never twice running)."""
        reply.asked_repeat = True
        t = heard.transcript
        self.log.info("repeat_request", turn=reply.turn, transcript=heard.text, hearing=heard.hearing.value,
                      avg_logprob=round(t.avg_logprob, 3), no_speech_prob=round(t.no_speech_prob, 3),
                      doubted_words=doubted, word_probs=list(t.word_probs))
        return Phrase(self.settings.repeat_request)

    def generate(self, reply: ReplyHandle, history: list[ChatMessage], turn: LlmTurn,
                 items: queue.Queue[Speech | None], cancel: CancelToken | None = None) -> None:
        """LLM -> spoken clauses as they complete; a tool call at the end becomes `reply.action`.
        `cancel` (default: the reply's) stops the LLM."""
        cancel = reply.cancelled if cancel is None else cancel
        messages = fit_history([*history, ChatMessage("user", turn.content)], self.settings.history_tokens,
                               approx_tokens)
        out = Generation()
        generator = Generator(self.llm, self.skills.tools.specs, self.settings, self.log.bind(turn=reply.turn),
                              self.clock)
        follow_up = reply.follow_up
        if follow_up is not None and follow_up.fallback is not None:
            stream = generator.checked_follow_up(messages, follow_up.fallback, out, cancel=cancel)
        else:
            stream = generator.reply(messages, reply.caller_text, turn.best_fact, out, cancel=cancel,
                                     affinity=self.call_id, sentences=turn.sentences)
        try:
            for item in stream:
                if reply.timings.llm_first_token is None and out.first_token_at is not None:
                    reply.timings.llm_first_token = out.first_token_at
                    reply.llm_stats = out.stats
                if isinstance(item, Clause) and reply.timings.first_clause is None and follow_up is None:
                    reply.timings.first_clause = self.clock()
                    items.put(item)
                    # Let the first clause's synthesis have both cores: the next tokens are not
                    # needed until its audio has played, and on 2 cores a TTS run beside the token
                    # loop took ~130 ms instead of ~50 (the engines' threads spin between steps).
                    reply.first_audio.wait(_FIRST_AUDIO_WAIT_S)
                    continue
                items.put(item)
        finally:
            if reply.timings.llm_first_token is None:
                reply.timings.llm_first_token = out.first_token_at
        if out.call is not None and not reply.cancelled.is_set():
            reply.action = out.call


@dataclass(frozen=True, slots=True)
class _Either:
    """A cancel token set when either of two is (the reply cancelled, or its speaker failed)."""

    first: CancelToken
    second: CancelToken

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()


def meaningful(text: str) -> bool:
    """Whisper 'hears' punctuation or a lone filler in noise: such turns get no reply."""
    words = re.findall(r"[A-Za-z0-9']+", text)
    return bool(words) and not (len(words) == 1 and words[0].lower() in {"uh", "um", "hmm", "mm", "you"})
