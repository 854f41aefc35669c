"""From the YAML contract to the conversation agent's and the models' settings."""

from __future__ import annotations

from gateway.config import AgentConfig, ModelsConfig
from gateway.conversation.agent import ConversationSettings
from gateway.conversation.turns import TurnConfig
from models.llama import LlamaConfig
from models.loader import ModelSetConfig
from models.openai_compat import OpenAiConfig
from models.piper import PiperConfigOptions
from models.whisper import WhisperConfig


def conversation_settings(agent: AgentConfig, remember_callers: bool = True) -> ConversationSettings:
    return ConversationSettings(
        greeting=agent.greeting,
        instructions=agent.instructions,
        turn=TurnConfig(threshold=agent.vad_threshold, off_threshold=max(0.05, agent.vad_threshold - 0.15),
                        pause_ms=agent.pause_ms, end_of_turn_ms=agent.end_of_turn_ms),
        reprompt_after_s=agent.reprompt_after_s,
        reprompt=agent.reprompt,
        hangup_after_s=agent.hangup_after_s,
        goodbye=agent.goodbye,
        max_reply_tokens=agent.max_reply_tokens,
        temperature=agent.temperature,
        agent_name=agent.name,
        returning_greeting=agent.returning_greeting,
        unknown_answer=agent.unknown_answer,
        acknowledgement=agent.acknowledgement,
        history_tokens=agent.history_tokens,
        dtmf=dict(agent.dtmf),
        remember_callers=remember_callers,
    )


def fixed_phrases(agent: AgentConfig) -> list[str]:
    """Every line the agent may speak without the LLM: synthesized once at start-up."""
    settings = conversation_settings(agent)
    phrases = [settings.greeting, settings.reprompt, settings.goodbye, settings.unknown_answer,
               settings.acknowledgement, settings.transfer_failed, settings.tool_failed, settings.message_taken,
               settings.not_understood, settings.apology]
    phrases += [settings.transfer_notice.format(target=t) for t in agent.tools.transfer_targets]
    phrases += [action.say for action in agent.dtmf.values() if action.say]
    return [p for p in dict.fromkeys(phrases) if p]


def model_set_config(models: ModelsConfig) -> ModelSetConfig:
    return ModelSetConfig(
        stt=WhisperConfig(model_dir=models.stt_model, cpu_threads=models.stt_threads),
        llm_engine="openai" if models.llm_engine == "openai" else "llama",
        llama=LlamaConfig(model_path=models.llm_model, n_ctx=models.llm_context, n_threads=models.llm_threads,
                          instances=models.llm_parallel),
        openai=OpenAiConfig(base_url=models.llm_base_url, model=models.llm_model or "default",
                            api_key=models.llm_api_key, read_timeout_s=models.llm_timeout_s),
        tts=PiperConfigOptions(model_path=models.tts_voice,
                               config_path=f"{models.tts_voice}.json" if models.tts_voice else None),
    )
