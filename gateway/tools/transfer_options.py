"""How each transfer target is reached: blind (REFER at once) or warm (hold, call, brief, connect).

Why a module of its own: the ``transfer:`` tool's options grew beyond ``targets`` and the model never
sees any of them (it only names a target), so they live beside the tool spec, not in it. Today's
YAML (``transfer: {targets: {name: sip-uri}}``) reads as before: every target blind.

    transfer:
      mode: warm              # blind (default) | warm, for every target that does not say
      ring_timeout_s: 20      # warm: how long the target's phone may ring
      hold_music: hold.wav    # warm: what the caller hears meanwhile (relative to the config file)
      targets:
        billing: sip:2003@pbx
        sales: {uri: sip:2004@pbx, mode: blind, ring_timeout_s: 15, hold_music: sales.wav}
"""

from __future__ import annotations

import enum
import math
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.tools.spec import ToolError

DEFAULT_RING_TIMEOUT_S = 20.0
_TARGET_KEYS = {"uri", "mode", "ring_timeout_s", "hold_music"}
_TOOL_KEYS = {"targets", "mode", "ring_timeout_s", "hold_music"}


class TransferMode(enum.StrEnum):
    BLIND = "blind"  # REFER to the target at once: the caller's phone calls it
    WARM = "warm"  # caller on hold, we call the target, brief it, then connect the two


@dataclass(frozen=True)
class TransferTarget:
    """One named target of the ``transfer`` tool and how it is reached."""

    name: str
    uri: str
    mode: TransferMode = TransferMode.BLIND
    ring_timeout_s: float = DEFAULT_RING_TIMEOUT_S
    hold_music: str | None = None  # a WAV file; None: the built-in soft tone


def read_transfer_targets(index: int, body: Mapping[str, object],
                          base_dir: Path | None) -> dict[str, TransferTarget]:
    """The targets of one ``transfer`` tool entry; every error names ``tools[index]`` and the key."""
    where = f"tools[{index}]"
    unknown = set(body) - _TOOL_KEYS
    if unknown:
        raise ToolError(f"{where}: only the transfer options {', '.join(sorted(_TOOL_KEYS))} "
                        f"({sorted(unknown)[0]!r} is none of them)")
    defaults = _options(f"{where}.transfer", body, base_dir)
    raw = body.get("targets")
    if not isinstance(raw, Mapping) or not raw:
        raise ToolError(f"{where}: transfer needs targets: {{name: sip-uri, ...}}")
    targets: dict[str, TransferTarget] = {}
    for name, value in raw.items():
        key = f"{where}.transfer.targets.{name}"
        if isinstance(value, Mapping):
            unknown = set(value) - _TARGET_KEYS
            if unknown or not isinstance(value.get("uri"), str) or not value["uri"]:
                raise ToolError(f"{key}: a sip-uri or {{uri, mode, ring_timeout_s, hold_music}}")
            own = {**defaults, **_options(key, value, base_dir)}
            targets[str(name)] = TransferTarget(str(name), str(value["uri"]), **own)
        else:
            targets[str(name)] = TransferTarget(str(name), str(value), **defaults)
    return targets


def _options(key: str, body: Mapping[str, object], base_dir: Path | None) -> dict[str, object]:
    options: dict[str, object] = {}
    if "mode" in body:
        try:
            options["mode"] = TransferMode(str(body["mode"]))
        except ValueError:
            raise ToolError(f"{key}.mode: blind or warm, got {body['mode']!r}") from None
    if "ring_timeout_s" in body:
        value = body["ring_timeout_s"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 1 <= value <= 120:
            raise ToolError(f"{key}.ring_timeout_s: seconds from 1 to 120, got {value!r}")
        options["ring_timeout_s"] = float(value)
    if "hold_music" in body:
        path = Path(str(body["hold_music"]))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        problem = wav_problem(path)
        if problem:
            raise ToolError(f"{key}.hold_music: an existing 16-bit PCM WAV file, "
                            f"got {str(path)!r} ({problem})")
        options["hold_music"] = str(path)
    return options


def wav_problem(path: Path) -> str | None:
    """Why `path` cannot be hold music (missing, not a WAV, not 16-bit PCM, empty), or None. Read at
    start-up so a wrong file is a config error, not a silent fallback on the first transfer."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                return f"{8 * w.getsampwidth()}-bit samples"
            if w.getnframes() < w.getframerate() // 50:
                return "shorter than 20 ms"
    except FileNotFoundError:
        return "no such file"
    except (OSError, EOFError, wave.Error) as exc:
        return f"not a readable WAV file: {exc}"
    return None
