"""The default LLM (Qwen2.5-Coder-0.5B Q4_K_M, assembled from six PyPI parts): one real end-to-end check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.base import ChatMessage
from models.llama import LlamaConfig, LlamaCppLlm
from models.registry import DEFAULT_LLM, resolve_llm
from tests.unit.models.conftest import SYSTEM_PROMPT


@pytest.fixture(scope="module")
def qwen() -> Iterator[LlamaCppLlm]:
    llm = LlamaCppLlm(LlamaConfig())
    yield llm
    llm.close()


def test_qwen_answers_from_cached_system_prompt(qwen: LlamaCppLlm) -> None:
    assert qwen.model_path == resolve_llm()
    assert qwen.model_path.stat().st_size == DEFAULT_LLM.size
    warm_up_s = qwen.warm_up(SYSTEM_PROMPT)
    messages = [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", "What are your opening hours on Saturday?")]
    answer = "".join(qwen.stream_chat(messages, max_tokens=40, temperature=0.0))
    stats = qwen.last_stats
    assert "9" in answer or "nine" in answer.lower(), answer
    assert stats.cached_tokens >= len(qwen.system_prefix_tokens(SYSTEM_PROMPT))
    # Measured: warm-up ~1.3 s (prefill of ~244 tokens), first token after it ~0.09 s.
    assert stats.ttft_s * 4 < warm_up_s, (stats.ttft_s, warm_up_s)
