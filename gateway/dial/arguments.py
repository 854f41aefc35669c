"""`voicegate dial`'s command-line arguments, apart from the command itself so that building the
parser (every `voicegate` command does) imports neither audio nor SIP code."""

from __future__ import annotations

import argparse
from pathlib import Path

VOICES = ("piper", "espeak")  # gateway.dial.voice.VoiceEngine's values, the default first


def add_dial_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/default.yaml",
                   help="the gateway's YAML configuration file (its address, agents; default: configs/default.yaml)")
    p.add_argument("--agent", help="agent to reach (its sip.routes number); default: sip.default_agent")
    p.add_argument("--to", help="SIP URI to call instead (e.g. through the PBX)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--say", action="append", metavar="TEXT", help="a line to speak (repeat for several turns)")
    what.add_argument("--wav", action="append", type=Path, metavar="FILE",
                      help="a 16-bit WAV file to play as one turn (repeatable)")
    what.add_argument("--mic", action="store_true",
                      help="talk through this machine's sound card (ALSA arecord/aplay); Ctrl-C hangs up")
    p.add_argument("--mic-device", default="default",
                   help="ALSA device for --mic, as arecord -D takes it (default: default; see arecord -L)")
    p.add_argument("--mic-seconds", type=float, help="with --mic: hang up after this long (default: on Ctrl-C)")
    p.add_argument("--voice", choices=VOICES, default=VOICES[0],
                   help="who speaks --say lines: piper (the pinned voice package, default) or espeak-ng")
    p.add_argument("--record-dir", type=Path, default=Path("voicegate-dial"),
                   help="where the replies are saved as WAV files, one folder per call (default: ./voicegate-dial)")
    p.add_argument("--reply-timeout-s", type=float, default=30.0, help="longest wait for a reply to start")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                   help="log lines shown beside the transcript (default: warning)")
