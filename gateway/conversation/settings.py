"""A conversation agent's settings: every one of them, its default and its YAML range, in one place.

`ConversationSettings` is both what `gateway/config.py` reads from an agent's YAML block (every
field marked `yaml` is a key of the same name, checked against its range) and what the agent
runs on, so a default cannot drift between the config reader and the agent any more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from gateway.conversation.answer_detection import AnswerConfig
from gateway.conversation.semantic_turn import SemanticTurnConfig
from gateway.conversation.turns import TurnConfig

if TYPE_CHECKING:
    from gateway.config import AgentConfig, DtmfAction, ModelsConfig
    from models.loader import ModelSetConfig


def _text(default: str) -> Any:
    return field(default=default, metadata={"yaml": None})


def _number(default: float, lo: float, hi: float) -> Any:
    return field(default=default, metadata={"yaml": (lo, hi)})


def _words() -> Any:
    """A YAML list of strings (read as a tuple)."""
    return field(default=(), metadata={"yaml": WORDS})


WORDS = "words"  # the `yaml` metadata of a list-of-strings key


ON_MACHINE = ("hangup", "leave_message")


@dataclass(frozen=True)
class AmdSettings:
    """An agent's `amd:` block: answering-machine detection on its outbound calls
    (answer_detection.py decides, outbound_start.py acts on the verdict). Inbound calls never use it."""

    enabled: bool = True  # off: the bot still waits for the callee's first words, but talks to a machine too
    on_machine: str = "hangup"  # or leave_message: `message` after the beep, once, then hang up
    message: str = _text("")  # what is left on a voicemail ({variables} from the originate)
    initial_silence_s: float = _number(1.5, 0.3, 10)  # no words this long after the answer: the bot speaks
    after_words_silence_s: float = _number(0.7, 0.2, 3)  # silence that ends a person's first words
    max_human_speech_s: float = _number(1.9, 0.5, 10)  # first words longer than this are a greeting
    beep_wait_s: float = _number(3.0, 0.5, 30)  # a machine's silence without a beep before the message
    max_wait_s: float = _number(30.0, 2, 120)  # the longest a machine's greeting is waited out

    def answer(self, speech_threshold: float) -> AnswerConfig:
        return AnswerConfig(speech_threshold=speech_threshold, initial_silence_s=self.initial_silence_s,
                            after_words_silence_s=self.after_words_silence_s,
                            max_human_speech_s=self.max_human_speech_s, beep_wait_s=self.beep_wait_s,
                            max_wait_s=self.max_wait_s)


@dataclass(frozen=True)
class ConversationSettings:
    greeting: str = _text("")  # said as soon as the call is answered ({name} from the call's variables)
    instructions: str = _text("")  # the system prompt
    reprompt: str = _text("Are you still there?")
    reprompt_after_s: float = _number(8.0, 1, 600)
    goodbye: str = _text("Thank you for calling. Goodbye!")
    hangup_after_s: float = _number(20.0, 2, 3600)
    pause_ms: int = _number(60, 20, 2000)  # silence after which a reply is prepared speculatively
    end_of_turn_ms: int = _number(400, 100, 5000)  # silence after which the turn is the bot's
    vad_threshold: float = _number(0.5, 0.05, 0.95)
    min_speech_ms: int = _number(60, 20, 1000)  # voiced this long (bot silent) starts a turn
    barge_in_threshold: float = _number(0.6, 0.05, 0.99)  # speech probability that interrupts the bot
    barge_in_min_ms: int = _number(700, 20, 3000)  # speech this long over the bot interrupts it (cuts the reply)
    barge_in_pause_ms: int = _number(20, 20, 1000)  # an onset this long over the bot holds its audio at once
    barge_in_gap_ms: int = _number(350, 40, 2000)  # a held bot goes on after this much unvoiced line
    # End of turn from the sound and the words of the turn (semantic_turn.py): `none` (silence alone),
    # `smart_turn` (the audio model), `text` (the transcript's words) or both.
    turn_model: str = _text("smart_turn+text")
    turn_model_threshold: float = _number(0.9, 0.01, 0.99)  # P(finished) at or above which a turn is complete
    turn_min_silence_ms: int = _number(200, 20, 2000)  # a complete turn ends after this much silence
    turn_max_wait_ms: int = _number(1500, 100, 10000)  # an incomplete one after this much (>= end_of_turn_ms)
    preroll_ms: int = _number(200, 0, 1000)  # audio before the speech onset kept for the transcript
    # ... or more, up to this, where the caller's sound reaches back over a short first word the onset missed
    onset_reach_back_ms: int = _number(400, 0, 1000)
    max_reply_tokens: int = _number(120, 8, 2048)
    temperature: float = _number(0.3, 0, 2)
    history_tokens: int = _number(1200, 200, 100000)
    returning_greeting: str = _text("Welcome back, {name}! How can I help you today?")
    unknown_answer: str = _text("I'm sorry, I don't have that information. I can take a message, "
                                "or transfer you to someone who can help.")
    acknowledgement: str = _text("One moment, please.")
    transfer_notice: str = _text("Transferring you to {target} now.")
    transfer_failed: str = _text("I'm sorry, the transfer did not go through. Can I take a message instead?")
    tool_failed: str = _text("I'm sorry, I couldn't get that information right now.")
    message_taken: str = _text("I have taken your message. Someone will get back to you soon.")
    not_understood: str = _text("Sorry, I didn't quite get that. Could you say it again?")
    # Said instead of acting on a transcript heard with low confidence (confidence.py); "" turns it off.
    repeat_request: str = _text("Sorry, I didn't catch that, could you say it again?")
    apology: str = _text("I'm sorry, I'm having a technical problem. Could you say that again?")
    # Whisper is conditioned on up to this many of the agent's own terms (vocabulary.py: names and
    # headings of its instructions and knowledge, transfer targets, HTTP tools); 0: only stt_hotwords.
    stt_vocabulary: int = _number(24, 0, 200)
    stt_hotwords: tuple[str, ...] = _words()  # terms Whisper should hear, before the agent's own
    model_timeout_s: float = _number(8.0, 1, 120)  # a reply with no audio this long after the turn: models stuck
    dtmf_gap_s: float = _number(1.5, 0.2, 10)  # keys without an action are collected until this pause
    # Played to the caller from after the acknowledgement until a slow HTTP tool answers: a WAV file
    # (relative to the config file), "tone" (the built-in soft tone) or "" (none: the line stays quiet).
    hold_music: str = _text("")
    amd: AmdSettings = field(default_factory=AmdSettings)  # the `amd:` block (read by config.py's _read_amd)
    # Not from the agent's YAML keys: its name, its `dtmf` actions, and `memory.enabled`.
    agent_name: str = ""
    dtmf: Mapping[str, DtmfAction] = field(default_factory=dict)
    remember_callers: bool = True

    @property
    def turn(self) -> TurnConfig:
        return TurnConfig(threshold=self.vad_threshold, off_threshold=max(0.05, self.vad_threshold - 0.15),
                          min_speech_ms=self.min_speech_ms, pause_ms=self.pause_ms, end_of_turn_ms=self.end_of_turn_ms,
                          barge_in_threshold=self.barge_in_threshold, barge_in_min_ms=self.barge_in_min_ms,
                          barge_in_pause_ms=self.barge_in_pause_ms, barge_in_gap_ms=self.barge_in_gap_ms)

    @property
    def turn_audio_model(self) -> bool:
        """Whether `turn_model` asks for the audio end-of-turn model (loaded once per process)."""
        return "smart_turn" in self.turn_model.split("+")

    @property
    def turn_text(self) -> bool:
        """Whether `turn_model` reads the speculative transcript's words (text_turn.py)."""
        return "text" in self.turn_model.split("+")

    @property
    def semantic_turn(self) -> SemanticTurnConfig:
        return SemanticTurnConfig(threshold=self.turn_model_threshold, min_silence_ms=self.turn_min_silence_ms,
                                  max_wait_ms=self.turn_max_wait_ms, reads_words=self.turn_text)


TURN_MODELS = ("none", "smart_turn", "text", "smart_turn+text")
# Text keys that take one of a few values (checked by the config reader like the numbers' ranges).
CHOICES: dict[str, tuple[str, ...]] = {"turn_model": TURN_MODELS}


def yaml_keys(of: type = ConversationSettings) -> dict[str, tuple[type, tuple[float, float] | str | None]]:
    """The YAML keys these settings (or the `amd:` block's) read: key -> (str, None),
    (int | float, (lo, hi)) or (tuple, WORDS) for a list of strings."""
    defaults = of()
    return {f.name: (type(getattr(defaults, f.name)), f.metadata["yaml"]) for f in fields(of) if "yaml" in f.metadata}


def conversation_settings(agent: AgentConfig, remember_callers: bool = True) -> ConversationSettings:
    return replace(agent.conversation, agent_name=agent.name, dtmf=dict(agent.dtmf),
                   remember_callers=remember_callers)


def fixed_phrases(agent: AgentConfig) -> list[str]:
    """Every line the agent may speak without the LLM: synthesized once at start-up."""
    settings = conversation_settings(agent)
    phrases = [settings.greeting, settings.reprompt, settings.goodbye, settings.unknown_answer,
               settings.acknowledgement, settings.transfer_failed, settings.tool_failed, settings.message_taken,
               settings.not_understood, settings.apology, settings.repeat_request, settings.amd.message]
    phrases += [settings.transfer_notice.format(target=t) for t in agent.tools.transfer_targets]
    phrases += [action.say for action in agent.dtmf.values() if action.say]
    return [p for p in dict.fromkeys(phrases) if p]


def model_set_config(models: ModelsConfig) -> ModelSetConfig:
    """The models' own config. (Imported here, not at the top: the config reader imports this
    module and must not load the model engines to check a YAML file.)"""
    from models.llama import LlamaConfig
    from models.loader import ModelSetConfig
    from models.openai_compat import OpenAiConfig
    from models.openai_stt import OpenAiSttConfig
    from models.openai_tts import OpenAiTtsConfig
    from models.piper import PiperConfigOptions
    from models.whisper import WhisperConfig

    local_stt, local_tts = models.stt_engine != "openai", models.tts_engine != "openai"
    return ModelSetConfig(
        stt_engine="whisper" if local_stt else "openai",
        stt=WhisperConfig(model_dir=models.stt_model if local_stt else None, cpu_threads=models.stt_threads,
                          beam_size=models.stt_beam_size, word_probs=models.stt_word_probs,
                          language=models.stt_language),
        openai_stt=OpenAiSttConfig(base_url=models.stt_base_url or "http://127.0.0.1:8000/v1",
                                   model=models.stt_model or "whisper-1", api_key=models.stt_api_key,
                                   language=models.stt_language, timeout_s=models.stt_timeout_s),
        llm_engine="openai" if models.llm_engine == "openai" else "llama",
        llama=LlamaConfig(model_path=models.llm_model, n_ctx=models.llm_context, n_threads=models.llm_threads,
                          instances=models.llm_parallel),
        openai=OpenAiConfig(base_url=models.llm_base_url, model=models.llm_model or "default",
                            api_key=models.llm_api_key, read_timeout_s=models.llm_timeout_s),
        tts_engine="piper" if local_tts else "openai",
        tts=PiperConfigOptions(model_path=models.tts_voice if local_tts else None,
                               config_path=f"{models.tts_voice}.json" if models.tts_voice and local_tts else None),
        openai_tts=OpenAiTtsConfig(base_url=models.tts_base_url or "http://127.0.0.1:8000/v1", model=models.tts_model,
                                   voice=models.tts_voice or "alloy", api_key=models.tts_api_key,
                                   response_format="pcm" if models.tts_response_format == "pcm" else "wav",
                                   sample_rate=models.tts_sample_rate, timeout_s=models.tts_timeout_s),
    )
