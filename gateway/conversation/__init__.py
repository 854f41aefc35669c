"""The conversation agent: turn-taking, streaming STT -> LLM -> TTS, barge-in."""
