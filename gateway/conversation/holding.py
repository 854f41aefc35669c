"""What the caller hears while the agent waits on the line's behalf: a warm transfer, a slow tool.

Both are prepared on the tool's own thread (never the SIP thread or the media clock): the hold
loop read from its file (once per file, cached), and for a warm transfer the request the call side
needs, its briefing already under way (briefing.py) while the target's phone rings.
"""

from __future__ import annotations

import threading

import numpy as np
import structlog

from gateway.agents.handover import WarmTransferRequest
from gateway.conversation.briefing import Briefer
from gateway.conversation.hold_music import HoldMusicError, load_hold_music
from gateway.tools.transfer_options import TransferTarget


def hold_loop(music: str | None, log: structlog.typing.FilteringBoundLogger) -> np.ndarray:
    """The loop for `music` (a WAV file; None or "tone": the built-in tone). A file that cannot be
    played is logged once per use and replaced by the tone: the caller is still on hold."""
    try:
        return load_hold_music(None if music in (None, "", "tone") else music)
    except HoldMusicError as exc:
        log.error("hold_music_unusable", error=str(exc), fallback="tone")
        return load_hold_music(None)


def warm_request(target: TransferTarget, briefer: Briefer, stopped: threading.Event,
                 log: structlog.typing.FilteringBoundLogger) -> WarmTransferRequest:
    return WarmTransferRequest(target=target.name, uri=target.uri, ring_timeout_s=target.ring_timeout_s,
                               hold_music=hold_loop(target.hold_music, log),
                               briefing=briefer.start(target.name, stopped))
