"""The tool section of the system prompt, written for a 0.5B model.

Small models lose the thread of long prompts and copy examples literally, so the section is
one line per tool in a call-like notation, a single example whose shape is exactly what
:func:`gateway.tools.parse.parse_tool_call` reads first, and two rules: speak before calling
(the caller hears something while the tool runs) and never write CALL otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.tools.spec import ToolSpec

__all__ = ["tool_instructions", "tool_signature"]

_MAX_DESCRIPTION_WORDS = 10  # the user's descriptions are trimmed: every word costs attention and prefill time


def tool_instructions(specs: Mapping[str, ToolSpec]) -> str:
    """Instructions to append to the system prompt; empty when there are no tools."""
    if not specs:
        return ""
    lines = ["Tools:"]
    lines += [f"- {tool_signature(spec)}" for spec in specs.values()]
    example = min(specs.values(), key=_example_rank)
    call = json.dumps({"tool": example.name, "arguments": _example_arguments(example)}, ensure_ascii=False)
    lines += [
        "To use a tool, say a short sentence to the caller, then write one last line:",
        'CALL {"tool": "<name>", "arguments": {...}}',
        "Example:",
        "One moment please.",
        f"CALL {call}",
        "Use at most one tool per reply. Otherwise answer in plain speech and never write CALL.",
    ]
    return "\n".join(lines)


def tool_signature(spec: ToolSpec) -> str:
    """``transfer(target: billing|operator) — Transfer the caller``; optional arguments get a ``?``."""
    params = []
    for name, prop in spec.parameters.items():
        opt = "" if name in (spec.required or ()) else "?"
        if "enum" in prop:
            params.append(f"{name}{opt}: {'|'.join(map(str, prop['enum']))}")
        elif prop.get("type", "string") != "string":
            params.append(f"{name}{opt}: {prop['type']}")
        else:
            params.append(f"{name}{opt}")
    words = spec.description.split(".")[0].split()
    description = " ".join(words[:_MAX_DESCRIPTION_WORDS])
    return f"{spec.name}({', '.join(params)})" + (f" \u2014 {description}" if description else "")


def _example_rank(spec: ToolSpec) -> int:
    """Prefer a tool whose example needs no made-up string (an enum value, or no arguments)."""
    free_text = [p for p in spec.required or () if "enum" not in spec.parameters[p]]
    return 0 if spec.required and not free_text else 1 if not free_text else 2


def _example_arguments(spec: ToolSpec) -> dict[str, Any]:
    """Plausible values for the example line: a placeholder would be copied verbatim by the model."""
    args: dict[str, Any] = {}
    for name in spec.required or ():
        prop = spec.parameters[name]
        if "enum" in prop:
            args[name] = prop["enum"][0]
        else:
            args[name] = {"integer": 1, "number": 1, "boolean": True}.get(prop.get("type", "string"), "...")
    return args
