"""Voice-to-voice latency of the conversation agent, with the real models, on this machine.

How it is measured: the agent runs exactly as on a call (VAD and turn detection on the 20 ms
media tick, replies on its threads, the real VAD/STT/LLM/TTS models), but the media clock is
driven here: every 20 ms on absolute deadlines it gets the next 20 ms of a scripted caller
(espeak-ng questions at 8 kHz with silence between them) and hands out the bot's next frame.
For each question, latency = time of the first bot frame after the caller's speech ended
minus the end of the caller's speech (the last frame above -40 dBFS), both on the same clock.
The turn's own stage log (turn decision, transcript, first token, first TTS audio) is printed
too. No SIP or RTP is involved: the network and jitter buffer add their own ~40-60 ms on a call.

    .venv/bin/python bench/bench_voice_latency.py [--questions 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sample_business import GREETING, INSTRUCTIONS, QUESTIONS, last_active_end, speech  # noqa: E402
from gateway.agents.base import CallContext  # noqa: E402
from gateway.config import AgentConfig, ModelsConfig  # noqa: E402
from gateway.conversation.agent import ConversationAgent  # noqa: E402
from gateway.conversation.settings import (  # noqa: E402
    ConversationSettings,
    conversation_settings,
    model_set_config,
)
from gateway.conversation.speech import ConversationServices  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from models.loader import ModelSet  # noqa: E402
from rtp.jitter import FrameType, JitterFrame  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--gap-s", type=float, default=6.0, help="silence after each question")
    args = parser.parse_args()
    configure_logging("warning")
    t = time.perf_counter()
    models = ModelSet.load(model_set_config(ModelsConfig()))
    models.warm_up(INSTRUCTIONS)
    services = ConversationServices(models)
    agent_config = AgentConfig(name="bench", type="conversation", conversation=ConversationSettings(
        greeting=GREETING, instructions=INSTRUCTIONS, reprompt_after_s=60, hangup_after_s=120))
    for phrase in (agent_config.greeting, agent_config.conversation.reprompt, agent_config.conversation.goodbye):
        services.cache_phrase(phrase)
    print(f"models loaded and warmed up in {time.perf_counter() - t:.1f} s")

    turns: list[dict] = []

    class Log:
        def __getattr__(self, level):
            def emit(event, **fields):
                if event == "turn":
                    turns.append(fields)
            return emit

        def bind(self, **_):
            return self

    context = CallContext(call_id="bench", direction="inbound", local_uri="", remote_uri="", agent_name="bench",
                          hangup=lambda reason: None, send_dtmf=lambda d: None, log=Log())
    agent = ConversationAgent(context, conversation_settings(agent_config), services)
    script: list[np.ndarray] = [np.zeros(8000 * 4, dtype=np.int16)]  # the greeting plays meanwhile
    ends: list[int] = []
    offset = len(script[0])
    for question in QUESTIONS[: args.questions]:
        pcm = speech(question)
        ends.append(offset + last_active_end(pcm))
        script += [pcm, np.zeros(int(8000 * args.gap_s), dtype=np.int16)]
        offset += len(pcm) + int(8000 * args.gap_s)
    caller = np.concatenate(script)
    bot = np.zeros(len(caller), dtype=np.int16)
    agent.on_start()
    start = time.monotonic()
    lateness = []
    for i in range(len(caller) // 160):
        deadline = start + i * 0.02
        now = time.monotonic()
        if now < deadline:
            time.sleep(deadline - now)
        lateness.append(time.monotonic() - deadline)
        agent.on_audio(JitterFrame(FrameType.NORMAL, caller[i * 160:(i + 1) * 160]))
        frame = agent.next_frame()
        if frame is not None:
            bot[i * 160:(i + 1) * 160] = frame.pcm
    agent.on_stop()
    models.close()

    print(__doc__.split("\n\n")[1].replace("\n", " "))
    print()
    print("| question | caller speech end → first bot audio (ms) | turn log: decision / transcript / "
          "first token / first clause / first TTS audio / first frame (ms after speech end) | speculative | reply |")
    print("|---|---|---|---|---|")
    results = []
    for n, end in enumerate(ends):
        after = np.nonzero(np.abs(bot[end:]) > 0)[0]
        latency = after[0] / 8.0 if len(after) else float("nan")
        results.append(latency)
        turn = turns[n] if n < len(turns) else {}
        stages = " / ".join(str(turn.get(k)) for k in ("turn_decision_ms", "transcript_final_ms",
                                                      "llm_first_token_ms", "first_clause_ms", "first_tts_audio_ms",
                                                      "first_rtp_ms"))
        print(f"| {QUESTIONS[n]} | {latency:.0f} | {stages} | {turn.get('speculative')} | "
              f"{turn.get('caller', '')!r} → {turn.get('bot', '')!r} |")
    valid = [r for r in results if r == r]
    if valid:
        print(f"\nmedian {np.median(valid):.0f} ms, max {max(valid):.0f} ms over {len(valid)} turns; "
              f"driver tick lateness p99 {np.percentile(lateness, 99) * 1000:.1f} ms")
    print(json.dumps({"latencies_ms": results}))


if __name__ == "__main__":
    main()
