"""What an agent hands to the call side when it asks for a warm transfer.

The conversation prepares what only it can (the sentence that briefs the target, from what the
caller said) and what must not be done on the SIP thread or the media clock (reading the hold
music file); the call side dials, holds, connects. The briefing is a `Future` because it is made
while the target's phone rings: the LLM's sentence under a short deadline, else a template.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class WarmTransferRequest:
    target: str  # the target's name in the agent's config (for the log)
    uri: str
    ring_timeout_s: float
    hold_music: np.ndarray  # 8 kHz int16, played in a loop to the caller until connected or back
    briefing: Future[np.ndarray]  # 8 kHz int16 speech said to the target when it answers
