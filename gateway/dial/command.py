"""`voicegate dial`: call the running gateway like a phone would, and show what came back.

Prepares every line's audio first (so synthesis never delays a turn), places one call over real
SIP and RTP (gateway/dial/sip.py, line.py), waits out the greeting, then speaks each line and
waits for the reply; prints each reply's words (the configured speech recognizer's transcript
of what arrived) with its voice-to-voice latency on the wire, and keeps each reply as a WAV.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from gateway.config import Config, ConfigError
from gateway.dial.line import FRAME_S
from gateway.dial.turns import BotReply, wait_reply
from gateway.dial.voice import CallerVoice, VoiceEngine, VoiceError, read_wav, write_wav

log = structlog.get_logger("dial")

ANSWER_WAIT_S = 15.0  # INVITE to 200 OK (a gateway that is not running never answers)
GREETING_WAIT_S = 8.0  # the greeting is synthesized at start-up: it starts within a second of the answer
LEAD_IN_SAMPLES = 8000 * 3 // 10  # 0.3 s


@dataclass(frozen=True)
class Turn:
    said: str  # the line, or the WAV's name
    audio: np.ndarray  # 8 kHz int16


@dataclass(frozen=True)
class TurnResult:
    turn: Turn | None  # None: the greeting
    reply: BotReply
    latency_ms: float | None
    text: str
    wav: Path | None


def target_uri(config: Config, source: str, agent: str | None) -> str:
    """The gateway's own address, with the user part that routes to `agent` (sip.routes)."""
    sip = config.sip
    host = sip.public_address if sip.listen.host in ("0.0.0.0", "::") else sip.listen.host
    host = f"[{host}]" if ":" in host else host
    user = "voicegate"
    if agent is not None and agent != sip.default_agent:
        if agent not in config.agents:
            raise ConfigError(source, f"agents.{agent}", "an agent of this config", list(config.agents))
        numbers = [number for number, name in sip.routes.items() if name == agent]
        if not numbers:
            raise ConfigError(source, "sip.routes", f"a number routed to agent {agent!r} (calls that arrive "
                              f"directly go to sip.default_agent {sip.default_agent!r}); or use --to", dict(sip.routes))
        user = numbers[0]
    return f"sip:{user}@{host}:{sip.listen.port}"


def dial_command(config: Config, args: argparse.Namespace) -> int:
    try:
        uri = args.to or target_uri(config, args.config, args.agent)
    except ConfigError as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 2
    agent = config.agents.get(args.agent or config.sip.default_agent or "")
    expect_greeting = agent is not None and agent.type == "conversation" and bool(agent.conversation.greeting)
    try:
        turns, stt = _prepare(config, args)
    except VoiceError as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 2
    return _call(config, uri, turns, stt, expect_greeting, args)


def _prepare(config: Config, args: argparse.Namespace):
    from gateway.conversation.settings import model_set_config
    from models.loader import LoadProgress, load_stt, load_tts

    models = model_set_config(config.models)
    progress = LoadProgress(3 if args.say and args.voice == VoiceEngine.PIPER.value else 2)
    progress.step("loading the speech recognizer (for the bot's words)")
    stt = load_stt(models)
    if args.mic:
        turns = []  # the microphone's words are cut into turns as the call goes (microphone.py)
    elif args.wav:
        turns = [Turn(path.name, read_wav(path)) for path in args.wav]
    else:
        engine = VoiceEngine(args.voice)
        tts = None
        if engine is VoiceEngine.PIPER:
            progress.step("loading the caller's voice")
            tts = load_tts(models)
        voice = CallerVoice(engine, tts)
        progress.step("speaking the lines")
        turns = [Turn(text, voice.speak(text)) for text in args.say]
    progress.done("ready to call")
    return turns, stt


def _call(config: Config, uri: str, turns: list[Turn], stt, expect_greeting: bool, args: argparse.Namespace) -> int:
    from gateway.dial.line import CallerLine
    from gateway.dial.sip import DialError, OutboundCall
    from rtp.ports import PortAllocator, PortsExhausted

    host = "127.0.0.1" if config.sip.listen.host in ("0.0.0.0", "127.0.0.1") else config.sip.listen.host
    try:
        ports = PortAllocator(host, *config.rtp.port_range).allocate()
    except PortsExhausted as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 1
    line = CallerLine(ports)
    card = None
    if args.mic:
        from gateway.dial.microphone import SoundCard, SoundError

        card = SoundCard(line, args.mic_device)
        try:
            card.start()
        except SoundError as exc:
            print(f"voicegate: --mic: {exc}; use --say \"...\" or --wav FILE", file=sys.stderr)
            line.close()
            return 2
    call = OutboundCall(host, line, tuple(config.rtp.codecs))
    out = Printer()
    results: list[TurnResult] = []
    try:
        out.note(f"calling {uri} ...")
        call.start(uri)
        if not _answered(call):
            why = call.end_status or f"no answer within {ANSWER_WAIT_S:.0f} s: is the gateway running (make run)?"
            print(f"voicegate: {uri}: {why}", file=sys.stderr)
            return 1
        line.connected.wait(5.0)
        record = args.record_dir / time.strftime("%Y%m%d-%H%M%S")
        if card is not None:
            out.note("connected: speak now (Ctrl-C hangs up)")
            _talk_live(line, call, card, stt, out, record, args.mic_seconds, results)
            out.summary(results)
            return 0
        # from the first packet: the gateway starts its greeting as it answers, before our ACK is out
        greeting = wait_reply(line, 0.0, GREETING_WAIT_S if expect_greeting else 1.0, 30.0, call.ended.is_set)
        if greeting.heard:
            results.append(out.turn(_result(None, greeting, None, stt, record / "greeting.wav")))
        for i, turn in enumerate(turns, 1):
            if call.ended.is_set():
                out.note(f"the gateway hung up ({call.end_status})")
                break
            results.append(out.turn(_speak(line, call, turn, stt, record / f"reply-{i}.wav", args.reply_timeout_s)))
    except DialError as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 1
    finally:
        call.hang_up()
        call.close()
        if card is not None:
            card.close()
        line.close()
    out.summary(results)
    answered = [r for r in results if r.turn is not None and r.reply.heard]
    return 0 if len(answered) == len(turns) else 1


def _answered(call) -> bool:
    deadline = time.monotonic() + ANSWER_WAIT_S
    while time.monotonic() < deadline:
        if call.answered.wait(0.1):
            return True
        if call.ended.is_set():
            return False
    return False


def _speak(line, call, turn: Turn, stt, wav: Path, reply_timeout_s: float) -> TurnResult:
    utterance = line.say(turn.audio)
    utterance.done.wait(len(turn.audio) / 8000 + 10 * FRAME_S + 5.0)
    spoke = utterance.last_voiced_sent or time.monotonic()
    reply = wait_reply(line, spoke, reply_timeout_s, reply_timeout_s + 60.0, call.ended.is_set)
    latency = (reply.onset_at - spoke) * 1000 if reply.onset_at is not None else None
    return _result(turn, reply, latency, stt, wav)


def _result(turn: Turn | None, reply: BotReply, latency_ms: float | None, stt, wav: Path) -> TurnResult:
    if not reply.heard:
        return TurnResult(turn, reply, None, "", None)
    return TurnResult(turn, reply, latency_ms, _transcribe(stt, reply.audio), write_wav(wav, reply.audio))


class Printer:
    """The transcript on stdout, as each turn completes."""

    def note(self, text: str) -> None:
        print(text, flush=True)

    def turn(self, result: TurnResult) -> TurnResult:
        if result.turn is not None:
            print(f"you: {result.turn.said}", flush=True)
        if not result.reply.heard:
            print("bot: (no reply)", flush=True)
            return result
        print(f"bot: {result.text or '(nothing the recognizer could make out)'}", flush=True)
        if result.latency_ms is not None:
            print(f"     voice-to-voice latency: {result.latency_ms:.0f} ms (last voiced frame sent -> first "
                  f"voiced frame received)", flush=True)
        return result

    def summary(self, results: list[TurnResult]) -> None:
        timed = [r.latency_ms for r in results if r.latency_ms is not None]
        saved = [r.wav for r in results if r.wav is not None]
        if saved:
            print(f"replies saved in {saved[0].parent}/", flush=True)
        if len(timed) > 1:
            print(f"voice-to-voice latency over {len(timed)} turns: median {statistics.median(timed):.0f} ms, "
                  f"max {max(timed):.0f} ms", flush=True)


def _talk_live(line, call, card, stt, out: Printer, record: Path, seconds: float | None,
               results: list[TurnResult]) -> None:
    """The microphone call: each reply printed as it ends, with what you said before it."""
    from gateway.dial.microphone import LiveCall, LiveTurn

    def on_turn(live: LiveTurn) -> None:
        turn = None
        if len(live.said):
            heard = _transcribe(stt, live.said) or "(nothing the recognizer could make out)"
            turn = Turn(heard, live.said)
        results.append(out.turn(_result(turn, live.reply, live.latency_ms, stt, record / f"reply-{len(results)}.wav")))

    LiveCall(line, card, call.ended.is_set).talk(on_turn, seconds)
    if call.ended.is_set():
        out.note(f"the gateway hung up ({call.end_status})")


def _transcribe(stt, pcm: np.ndarray) -> str:
    """What the recognizer hears in 8 kHz `pcm`, after a lead-in of silence: Whisper dropped the first
    words of audio that starts mid-voice ("Harbor Dental, this is the front desk" heard as "this is
    the front desk")."""
    from rtp.resample import int16_to_float, resample_float

    padded = np.concatenate([np.zeros(LEAD_IN_SAMPLES, dtype=np.int16), pcm])
    return stt.transcribe(resample_float(int16_to_float(padded), 8000, 16000)).text.strip()
