"""Warm transfer briefing: how long the target's one sentence takes, and how often the LLM's is used.

For each scripted conversation (the caller's lines as the call history keeps them), the real LLM
writes the briefing under the 4 s deadline (gateway/conversation/briefing.py, exactly as on a call),
the sentence is checked, and the real TTS speaks it. Printed per case: the source (llm, or the
template when the model was late or wrote something unusable), the LLM time, the TTS time, the
sentence; then the totals. On a call all of this runs while the target's phone rings.

    flock /work/heavy.lock .venv/bin/python bench/bench_briefing.py
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.config import ModelsConfig  # noqa: E402
from gateway.conversation.actions import CallFacts  # noqa: E402
from gateway.conversation.briefing import Briefer  # noqa: E402
from gateway.conversation.settings import model_set_config  # noqa: E402
from gateway.conversation.speech import synthesize_line_audio  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from models.loader import ModelSet  # noqa: E402

CASES = [
    ("John Smith", "billing", "Hi, this is John Smith.\nMy last invoice charged me twice.\n"
                              "Please put me through to billing."),
    (None, "billing", "I have a question about invoice 4471, the amount looks wrong.\nCan I talk to billing?"),
    ("Anna Berg", "operator", "This is Anna Berg.\nI need to move my appointment on Friday.\n"
                              "Transfer me to someone please."),
    (None, "sales", "I'd like a quote for twenty office chairs.\nConnect me to sales."),
    ("Peter", "support", "Peter here, my internet has been down since this morning.\nI want to speak to support."),
    (None, "billing", "Please transfer me to billing."),
    ("Maria Lopez", "claims", "Hello, Maria Lopez.\nI'm calling about my car insurance claim from last week.\n"
                              "Can you connect me to claims?"),
    (None, "operator", "Um, hello?\nI'm not sure who to ask, it's about a parcel that never arrived.\n"
                        "Operator please."),
]


class _Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


def main() -> None:
    configure_logging("warning")
    models = ModelSet.load(model_set_config(ModelsConfig()))
    models.warm_up("You are a phone receptionist.")
    stopped = threading.Event()
    llm_s, tts_s, sources = [], [], []
    for name, target, transcript in CASES:
        facts = CallFacts("+15551234", name, transcript=lambda t=transcript: t)
        briefer = Briefer(models.llm, lambda text: synthesize_line_audio(models.tts, text).pcm, facts, _Quiet())
        t = time.perf_counter()
        sentence, source = briefer.text(target, stopped)
        llm = time.perf_counter() - t
        t = time.perf_counter()
        audio = synthesize_line_audio(models.tts, sentence)
        tts = time.perf_counter() - t
        llm_s.append(llm)
        tts_s.append(tts)
        sources.append(source)
        print(f"{source:8s} llm {llm:4.2f} s  tts {tts:4.2f} s  ({len(audio) / 8000:.1f} s of speech)  {sentence}")
    print(f"llm sentences used: {sources.count('llm')}/{len(CASES)}; "
          f"llm p50 {statistics.median(llm_s):.2f} s max {max(llm_s):.2f} s; "
          f"tts p50 {statistics.median(tts_s):.2f} s max {max(tts_s):.2f} s; "
          f"ready (llm+tts) max {max(a + b for a, b in zip(llm_s, tts_s, strict=True)):.2f} s")


if __name__ == "__main__":
    main()
