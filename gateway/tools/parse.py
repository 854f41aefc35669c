"""Find the one tool call in a small model's reply, and keep its JSON out of the caller's ear.

The prompt asks for plain speech or one ``CALL {"tool": ..., "arguments": {...}}`` line, but a
0.5B model also writes fenced JSON, single quotes, trailing commas, Qwen's own
``<tool_call>`` tags, ``transfer(target="billing")`` or two calls in a row.  Everything that
is recognizably a call attempt is cut out of the speech; it becomes a validated
:class:`ToolCall` or an ``error`` (never executed, fed back so the model can correct itself).
Only the first valid call counts: acting twice on one reply (transfer *and* hang up) is worse
than asking again.

:class:`ToolCallDetector` does the same on a token stream, so the sentence before a call is
spoken while the call is still being generated, and no JSON ever reaches TTS.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.tools.spec import ToolError, ToolSpec, validate_arguments

__all__ = ["TOOL_CHOICE_NONE", "ToolCall", "ToolCallDetector", "ToolCallParse", "parse_tool_call", "tool_call_grammar",
           "tool_choice_grammar"]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCallParse:
    """The outcome of one reply.

    ``speech`` is all text outside call attempts (for TTS and the transcript); ``error`` is set
    when the reply attempted a call but none was valid; ``notes`` explains what else was
    ignored (a second call, an invalid first attempt).  ``unspoken`` is the part of ``speech``
    not yet returned by :meth:`ToolCallDetector.feed` (all of it for :func:`parse_tool_call`).
    """

    call: ToolCall | None
    speech: str
    error: str | None = None
    notes: tuple[str, ...] = ()
    unspoken: str = ""


@dataclass
class _Found:
    """One call attempt: the span of text it occupies and what it resolved to."""

    start: int
    end: int
    call: ToolCall | None = None
    error: str | None = None


_NAME_KEYS = ("tool", "name", "tool_name", "function", "function_name", "action")
_ARG_KEYS = ("arguments", "args", "parameters", "params", "input", "kwargs")
_IGNORED_KEYS = {"type", "id", "call_id"}
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019"}
_CLOSERS = {"{": "}", "[": "]", "(": ")"}
_CALLISH = re.compile(r"[\"'\u201c\u2018]?(?:tool|name|function|arguments|args|parameters)[\"'\u201d\u2019]?\s*:")
_CALL_BEFORE = re.compile(r"(?i)\bcall\s*:?\s*$")  # "call: {...}" - the word belongs to the call, not the speech
_AFTER_CALL = re.compile(r"\s*:?\s*")
_IDENT = re.compile(r"[A-Za-z_][\w.\-]*")
_FENCE_LANG = re.compile(r"^(?:[A-Za-z_]+[ \t]*\n|(?:json|tool_code|tool_call|python|text)[ \t]+)")
# ``lookup_order(id=5)``: a snake_case name before "(" is a (hallucinated) call, never speech.
_SNAKE_CALL = re.compile(r"[A-Za-z0-9]*_\w*\(")
_TRAILING_WORD = re.compile(r"\w+$")
_STRAY = re.compile(r"</?tool_call>|```\w*")
_LITERALS = {"true": "true", "false": "false", "null": "null", "True": "true", "False": "false", "None": "null"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def parse_tool_call(text: str, specs: Mapping[str, ToolSpec]) -> ToolCallParse:
    """The call (if any), the speech around it, and why anything else was not a valid call."""
    found = _scan(text, specs, _marker_regex(specs))
    result = _result(text, found)
    return replace(result, unspoken=result.speech)


class ToolCallDetector:
    """Streaming :func:`parse_tool_call`: ``feed`` returns what may be spoken now, ``finish`` the outcome.

    Text is held back from the first character that could start a call (``CALL``, ``{``,
    ``<tool_call>``, a code fence, ``<tool name>(``, or a trailing "call:"), including a partial
    marker at the end of a piece ("<tool_"); the last word is always held until the next piece
    ("CA", "trans"), which costs nothing as TTS pieces end at punctuation anyway.  Once a marker
    is seen the rest of the reply is held: the prompt puts speech before the call, so nothing is
    lost in the normal case, and whatever turns out not to be a call is returned as
    ``unspoken`` by :meth:`finish`.
    """

    def __init__(self, specs: Mapping[str, ToolSpec]) -> None:
        self._specs = dict(specs)
        self._marker = _marker_regex(self._specs)
        self._text = ""
        self._sent = 0  # text[:_sent] has been returned by feed()
        self._holding = False  # a full marker was seen: hold everything until finish()
        self._done = False

    @property
    def text(self) -> str:
        """The reply so far, as generated."""
        return self._text

    @property
    def holding(self) -> bool:
        """A call marker was seen: the rest is (probably) a tool call, not speech."""
        return self._holding

    def feed(self, piece: str) -> str:
        if self._done:
            raise RuntimeError("feed() after finish()")
        self._text += piece
        if self._holding:
            return ""
        text = self._text
        m = self._marker.search(text, self._sent)
        if m:
            stop = m.start()
            self._holding = True
        else:
            stop = self._partial_start(text)
        before = _CALL_BEFORE.search(text, self._sent, stop)
        if before:
            stop = before.start()
        out, self._sent = text[self._sent : stop], stop
        return out

    def finish(self) -> ToolCallParse:
        """The reply is complete: the call, the full speech, and the speech not yet returned by feed()."""
        self._done = True
        found = _scan(self._text, self._specs, self._marker)
        result = _result(self._text, found)
        rest = [f for f in found if f.end > self._sent]
        return replace(result, unspoken=_speech(self._text, rest, self._sent))

    def _partial_start(self, text: str) -> int:
        """Where a marker may be starting at the end of ``text``: the last word ("CA", "trans", "lookup_or")
        until the next piece shows it is not ``CALL`` or a name before "(", or a prefix of ``<tool_call>``/```."""
        word = _TRAILING_WORD.search(text, self._sent)
        start = word.start() if word else len(text)
        for i in range(max(self._sent, len(text) - len("<tool_call>")), start):
            if "<tool_call>".startswith(text[i:]) or "```".startswith(text[i:]):
                return i
        return start


# -- scanning -----------------------------------------------------------------------------------


def _marker_regex(specs: Mapping[str, ToolSpec]) -> re.Pattern[str]:
    alternatives = [r"<tool_call>", r"```", r"\bCALL\b", r"\{"]
    if specs:
        names = "|".join(re.escape(n) for n in sorted(specs, key=len, reverse=True))
        alternatives.append(rf"(?i:\b(?:{names})\()")
    alternatives.append(_SNAKE_CALL.pattern)
    return re.compile("|".join(alternatives))


def _scan(text: str, specs: Mapping[str, ToolSpec], marker: re.Pattern[str]) -> list[_Found]:
    found: list[_Found] = []
    pos = 0
    while (m := marker.search(text, pos)) is not None:
        f = _at_marker(text, m, specs)
        if f is None:
            pos = m.end()
            continue
        prev_end = found[-1].end if found else 0
        before = _CALL_BEFORE.search(text, prev_end, f.start)
        if before:
            f.start = before.start()
        found.append(f)
        pos = max(f.end, m.end())
    return found


def _at_marker(text: str, m: re.Match[str], specs: Mapping[str, ToolSpec]) -> _Found | None:
    if m.group() != "CALL":
        return _payload(text, m.start(), specs, strict=False)
    j = _AFTER_CALL.match(text, m.end()).end()  # type: ignore[union-attr]  # the pattern matches ""
    f = _payload(text, j, specs, strict=True) if j < len(text) and _starts_payload(text, j) else None
    if f is not None:
        f.start = m.start()
        return f
    line_start = text.rfind("\n", 0, m.start()) + 1
    if text[line_start : m.start()].strip():
        return None  # "PLEASE CALL US" mid-sentence: speech
    end = text.find("\n", m.end())
    end = len(text) if end < 0 else end
    return _Found(m.start(), end, error='malformed tool call: CALL must be followed by {"tool": ..., "arguments": ...}')


def _starts_payload(text: str, i: int) -> bool:
    if text[i] == "{" or text.startswith(("<tool_call>", "```"), i):
        return True
    ident = _IDENT.match(text, i)
    return bool(ident) and re.match(r"\s*[({]", text[ident.end() :]) is not None  # type: ignore[union-attr]


def _payload(text: str, i: int, specs: Mapping[str, ToolSpec], *, strict: bool) -> _Found | None:
    """The call attempt starting at ``text[i]``; ``strict`` (after CALL, inside tags) makes every shape an attempt."""
    if text.startswith("<tool_call>", i):
        close = text.find("</tool_call>", i)
        end = len(text) if close < 0 else close + len("</tool_call>")
        return _wrapped(text, i, end, text[i + len("<tool_call>") : close if close >= 0 else len(text)], specs)
    if text.startswith("```", i):
        close = text.find("```", i + 3)
        end = len(text) if close < 0 else close + 3
        body = _FENCE_LANG.sub("", text[i + 3 : close if close >= 0 else len(text)])
        stripped = body.strip()
        stripped = stripped[4:].lstrip(" :") if stripped.startswith("CALL") else stripped
        if not strict and not (stripped and _starts_payload(stripped, 0)):
            return None  # an ordinary code block
        return _wrapped(text, i, end, stripped, specs)
    if text[i] == "{":
        return _json_call(text, i, specs, strict=strict)
    ident = _IDENT.match(text, i)
    if ident:
        k = ident.end()
        while k < len(text) and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "(":
            return _function_call(text, i, ident.group(), k, specs)
        if strict and k < len(text) and text[k] == "{":  # CALL transfer {"target": "billing"}
            f = _json_call(text, k, specs, strict=True, name=ident.group())
            if f is not None:
                f.start = i
            return f
    if not strict:
        return None
    end = text.find("\n", i)
    return _Found(i, len(text) if end < 0 else end, error="malformed tool call: expected a JSON object")


def _wrapped(text: str, start: int, end: int, body: str, specs: Mapping[str, ToolSpec]) -> _Found:
    """A call inside ``<tool_call>`` tags or a code fence: the wrapper's whole span is the call."""
    body = body.strip()
    if body.startswith("CALL"):
        body = body[4:].lstrip(" :")
    inner = _payload(body, 0, specs, strict=True) if body else None
    if inner is None:
        return _Found(start, end, error="malformed tool call: empty tool_call")
    return _Found(start, end, inner.call, inner.error)


def _json_call(
    text: str, i: int, specs: Mapping[str, ToolSpec], *, strict: bool, name: str | None = None
) -> _Found | None:
    end = _match_close(text, i)
    if end is None:
        if strict or _CALLISH.search(text, i):
            return _Found(i, len(text), error="incomplete tool call (truncated JSON)")
        return None
    try:
        obj = _loads_loose(text[i:end])
    except ValueError:
        if strict or _CALLISH.search(text[i:end]):
            return _Found(i, end, error="malformed tool call: invalid JSON")
        return None
    if not isinstance(obj, dict):
        return _Found(i, end, error="malformed tool call: expected a JSON object") if strict else None
    if name is not None:
        return _resolved(i, end, name, obj, specs)
    try:
        tool, args = _from_object(obj, specs)
    except ToolError as e:
        return _Found(i, end, error=str(e))
    return _resolved(i, end, tool, args, specs)


def _function_call(text: str, i: int, name: str, paren: int, specs: Mapping[str, ToolSpec]) -> _Found:
    end = _match_close(text, paren)
    if end is None:
        return _Found(i, len(text), error="incomplete tool call (unclosed parenthesis)")
    tool = _resolve_name(name, specs)
    if tool is None:
        return _resolved(i, end, name, {}, specs)  # the unknown-tool error
    try:
        args = _function_args(text[paren + 1 : end - 1], specs[tool])
    except ToolError as e:
        return _Found(i, end, error=f"malformed tool call {name}(...): {e}")
    return _resolved(i, end, name, args, specs)


def _resolved(start: int, end: int, name: str, args: object, specs: Mapping[str, ToolSpec]) -> _Found:
    tool = _resolve_name(name, specs)
    if tool is None:
        available = ", ".join(specs) or "none"
        return _Found(start, end, error=f"unknown tool {name!r} (available: {available})")
    try:
        if isinstance(args, str):
            args = _loads_loose(args) if args.strip() else {}
        return _Found(start, end, ToolCall(tool, validate_arguments(specs[tool], args)))
    except ValueError as e:  # ToolError, or arguments given as a broken JSON string
        return _Found(start, end, error=str(e) if isinstance(e, ToolError) else f"{tool}: arguments are not valid JSON")


def _resolve_name(name: str, specs: Mapping[str, ToolSpec]) -> str | None:
    """Exact name, else the unique one equal ignoring case, "_", "-", a "functions." prefix and a "()" suffix."""
    if name in specs:
        return name
    key = re.sub(r"[\s_\-]|\(\)$", "", name.rsplit(".", 1)[-1]).lower()  # "functions.send-dtmf", "hangup()"
    matches = [n for n in specs if re.sub(r"[_\-]", "", n).lower() == key]
    return matches[0] if len(matches) == 1 else None


def _from_object(obj: dict[str, Any], specs: Mapping[str, ToolSpec]) -> tuple[str, object]:
    """(tool name, raw arguments) from the JSON shapes models use for a call."""
    if isinstance(obj.get("function"), dict):  # OpenAI: {"type": "function", "function": {"name", "arguments"}}
        return _from_object(obj["function"], specs)
    name_key = next((k for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name_key is None:
        if len(obj) == 1:  # {"transfer": {"target": "billing"}}
            ((key, value),) = obj.items()
            if _resolve_name(key, specs) is not None and (value is None or isinstance(value, dict | str)):
                return key, value
        raise ToolError('malformed tool call: no "tool" name in the JSON object')
    arg_key = next((k for k in _ARG_KEYS if k in obj), None)
    if arg_key is not None:
        return obj[name_key], obj[arg_key]
    # {"tool": "transfer", "target": "billing"}: arguments written next to the name
    return obj[name_key], {k: v for k, v in obj.items() if k != name_key and k not in _IGNORED_KEYS}


def _function_args(inner: str, spec: ToolSpec) -> dict[str, Any]:
    """``target="billing"``, ``"billing"`` (positional), ``target=billing`` or ``target: "billing"``."""
    if not inner.strip():
        return {}
    try:
        node = ast.parse(f"f({inner})", mode="eval").body
    except SyntaxError:
        try:
            obj = _loads_loose("{" + inner + "}")
        except ValueError:
            raise ToolError("cannot read the arguments") from None
        if not isinstance(obj, dict):
            raise ToolError("cannot read the arguments") from None
        return obj
    assert isinstance(node, ast.Call)
    names = list(spec.parameters)
    if len(node.args) > len(names):
        raise ToolError(f"{len(node.args)} positional arguments, the tool takes {len(names)}")
    out: dict[str, Any] = {names[k]: _literal(a) for k, a in enumerate(node.args)}
    for kw in node.keywords:
        if kw.arg is None:
            raise ToolError("**kwargs are not arguments")
        out[kw.arg] = _literal(kw.value)
    return out


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name):  # target=billing, flag=true
        return json.loads(_LITERALS[node.id]) if node.id in _LITERALS else node.id
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ToolError("arguments must be plain values") from None


def _result(text: str, found: list[_Found]) -> ToolCallParse:
    valid = [f for f in found if f.call is not None]
    call = valid[0].call if valid else None
    notes = []
    for f in found:
        if f.call is not None and f.call is not call:
            notes.append(f"ignored a second tool call: {f.call.name}")
        elif f.error is not None and call is not None:
            notes.append(f"ignored an invalid tool call: {f.error}")
    error = None if call is not None or not found else found[0].error
    return ToolCallParse(call, _speech(text, found, 0), error, tuple(notes))


def _speech(text: str, found: list[_Found], start: int) -> str:
    pieces, pos = [], start
    for f in found:
        pieces.append(text[pos : max(pos, f.start)])
        pos = max(pos, f.end)
    pieces.append(text[pos:])
    return " ".join(_STRAY.sub(" ", " ".join(pieces)).split())


# -- lenient JSON -------------------------------------------------------------------------------


def _match_close(text: str, start: int) -> int | None:
    """Index just past the bracket that closes ``text[start]``, or None if the text ends first."""
    stack: list[str] = []
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote is not None:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in _QUOTES:
            quote = _QUOTES[c]
        elif c in _CLOSERS:
            stack.append(_CLOSERS[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return None


def _loads_loose(s: str) -> Any:
    """JSON, or the JavaScript/Python-ish near-JSON small models write (quotes, bare words, trailing commas)."""
    try:
        return json.loads(s)
    except ValueError:
        return json.loads(_to_json(s))


def _to_json(s: str) -> str:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in _QUOTES:
            close, j, buf = _QUOTES[c], i + 1, []
            while j < n and s[j] != close:
                if s[j] == "\\" and j + 1 < n:
                    e = s[j + 1]
                    if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[j + 2 : j + 6]):
                        buf.append(chr(int(s[j + 2 : j + 6], 16)))
                        j += 6
                        continue
                    buf.append(_ESCAPES.get(e, e))
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            if j >= n:
                raise ValueError("unterminated string")
            out.append(json.dumps("".join(buf), ensure_ascii=False))
            i = j + 1
        elif c.isalpha() or c == "_":
            word = re.match(r"[A-Za-z_][\w\-]*", s[i:])
            w = word.group() if word else c
            out.append(_LITERALS.get(w) or json.dumps(w))
            i += len(w)
        elif c == "," and re.match(r",\s*[}\]]", s[i:]):
            i += 1
        else:
            out.append(":" if c == "=" else c)
            i += 1
    return "".join(out)


# -- grammar ------------------------------------------------------------------------------------


def tool_call_grammar(specs: Mapping[str, ToolSpec]) -> str:
    """GBNF for llama.cpp: speech lines (none starting with ``CALL``), optionally ending in one valid CALL line.

    With the grammar the model cannot misspell a tool, an argument or an enum value, nor write
    a second call; strings are only bounded by validation afterwards (a ``{0,500}`` repetition
    would expand to hundreds of grammar rules).  Use with ``LlamaGrammar.from_string``.
    """
    text = [_TEXT_LINE]
    if not specs:
        return "\n".join(['root ::= text-line ("\\n" text-line)*', *text, *_VALUE_RULES]) + "\n"
    root = 'root ::= call-line | text-line ("\\n" text-line)* ("\\n" call-line)?'
    return "\n".join([root, *text, *_call_rules(specs)]) + "\n"


TOOL_CHOICE_NONE = "NONE"


def tool_choice_grammar(specs: Mapping[str, ToolSpec]) -> str:
    """GBNF for a closed choice: ``NONE``, or one valid CALL line (a known tool, its arguments' schema).

    Free speech is no alternative here: the first token decides between ``NONE`` and ``CALL``, where in
    a free reply a polite first word ("Sure, ...") outweighs ``CALL`` even when the caller asks for a tool."""
    root = f'root ::= {_lit(TOOL_CHOICE_NONE)}' + (" | call-line" if specs else "")
    return "\n".join([root, *(_call_rules(specs) if specs else _VALUE_RULES)]) + "\n"


# a line of speech: anything that does not start with "CALL"
_TEXT_LINE = ('text-line ::= [^C\\n] [^\\n]* | "C" ([^A\\n] [^\\n]*)? | "CA" ([^L\\n] [^\\n]*)? | '
              '"CAL" ([^L\\n] [^\\n]*)?')
_VALUE_RULES = (
    'ws ::= " "?',
    'string ::= "\\"" ([^"\\\\\\n] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4}))* "\\""',
    'integer ::= "-"? [0-9]{1,15}',
    'number ::= "-"? [0-9]{1,15} ("." [0-9]{1,10})?',
    'boolean ::= "true" | "false"',
)


def _call_rules(specs: Mapping[str, ToolSpec]) -> list[str]:
    """``call-line`` and the rules it needs: one CALL line whose tool and arguments are valid."""
    rules = list(_VALUE_RULES)
    names = []
    args_key, tool_key = _lit('"arguments"'), _lit('"tool"')
    for t, spec in enumerate(specs.values()):
        names.append(f"tool-{t}")
        rules.append(f'tool-{t} ::= {_lit(json.dumps(spec.name))} "," ws {args_key} ":" ws tool-{t}-args')
        members = []
        for p, (pname, prop) in enumerate(spec.parameters.items()):
            rules.append(f'tool-{t}-p{p} ::= {_lit(json.dumps(pname))} ":" ws {_value_rule(prop)}')
            members.append((f"tool-{t}-p{p}", pname in (spec.required or ())))
        rules.append(f"tool-{t}-args ::= {_object_rule(members)}")
    rules.append(f'call-line ::= "CALL {{" {tool_key} ":" ws ({" | ".join(names)}) "}}"')
    return rules


def _object_rule(members: list[tuple[str, bool]]) -> str:
    """Members in spec order; required ones always present, optional ones may be left out."""
    if not members:
        return '"{" ws "}"'
    sep = '"," ws'
    parts: list[str] = []
    first_required = next((k for k, (_, req) in enumerate(members) if req), None)
    if first_required is None:  # all optional: any subset, in order
        alts = []
        for k, (rule, _) in enumerate(members):
            rest = " ".join(f"({sep} {r})?" for r, _ in members[k + 1 :])
            alts.append(f"{rule} {rest}".strip())
        return f'"{{" ws ({" | ".join(alts)})? ws "}}"'
    for k, (rule, req) in enumerate(members):
        if k < first_required:
            parts.append(f"({rule} {sep})?")
        elif k == first_required:
            parts.append(rule)
        else:
            parts.append(f"{sep} {rule}" if req else f"({sep} {rule})?")
    return f'"{{" ws {" ".join(parts)} ws "}}"'


def _value_rule(prop: Mapping[str, Any]) -> str:
    ptype = prop.get("type", "string")
    if "enum" in prop:
        return "(" + " | ".join(_lit(json.dumps(v, ensure_ascii=False)) for v in prop["enum"]) + ")"
    if ptype == "string":
        simple = re.fullmatch(r"\^?(\[[^\]\\]+\])\{(\d+),(\d+)\}\$?", str(prop.get("pattern", "")))
        if simple:  # e.g. DTMF digits: ^[0-9*#ABCD]{1,20}$
            return f'"\\"" {simple.group(1)}{{{simple.group(2)},{simple.group(3)}}} "\\""'
        return "string"
    return {"integer": "integer", "number": "number", "boolean": "boolean"}[ptype]


def _lit(s: str) -> str:
    """``s`` as a GBNF string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
