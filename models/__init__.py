"""Model adapters (VAD, STT, LLM, TTS). Knows nothing about SIP or RTP; filled in by issue 3."""
