"""What the agent's tools look like to the model, and checking what the model asked for.

A 0.5B model gets argument types, names and enum spellings wrong often enough that every
call it makes is validated before anything happens on the phone line: a transfer to a
hallucinated department must become an error the model can recover from, not a SIP REFER
to nowhere.  Validation is forgiving where the intent is unambiguous ("42" for an integer,
"Billing" for the enum value "billing") and strict where it is not (unknown or missing
arguments), so the model is corrected instead of being guessed at.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

if TYPE_CHECKING:
    from gateway.tools.transfer_options import TransferTarget

__all__ = [
    "BUILTIN_TOOLS",
    "MAX_STRING_CHARS",
    "HttpToolConfig",
    "ToolError",
    "ToolSpec",
    "ToolsConfig",
    "hangup_spec",
    "load_tools",
    "send_dtmf_spec",
    "take_message_spec",
    "transfer_spec",
    "validate_arguments",
]

MAX_STRING_CHARS = 500  # longer strings are a runaway generation, not an argument
PARAM_TYPES = ("string", "integer", "number", "boolean")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE")
BUILTIN_TOOLS = ("transfer", "hangup", "send_dtmf", "take_message")

# Names must work as a bare function name (``transfer(...)``), a JSON string and a GBNF rule suffix.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INT = re.compile(r"^[+-]?\d+$")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class ToolError(ValueError):
    """A tool call (or tool definition) that must not be executed; the message says why."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the model sees it.

    ``parameters`` maps each argument name to a JSON-schema-like property: ``type`` (string,
    integer, number or boolean), ``description``, optionally ``enum``, and for strings
    ``pattern`` / ``maxLength``.  ``required`` defaults to every parameter because small models
    skip optional arguments anyway, and a missing argument is easier to ask for than to guess.
    Treat the dicts as read-only: the spec is shared between calls.
    """

    name: str
    description: str
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    required: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ToolError(f"tool name {self.name!r} must match {_NAME.pattern}")
        params = {str(k): dict(v) for k, v in self.parameters.items()}
        for pname, prop in params.items():
            _check_property(self.name, pname, prop)
        required = tuple(params) if self.required is None else tuple(self.required)
        unknown = [r for r in required if r not in params]
        if unknown:
            raise ToolError(f"tool {self.name!r}: required {unknown} are not parameters")
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "required", required)

    def json_schema(self) -> dict[str, Any]:
        """The parameters as a JSON schema object (the OpenAI ``tools[].function.parameters`` shape)."""
        return {
            "type": "object",
            "properties": {k: dict(v) for k, v in self.parameters.items()},
            "required": list(self.required or ()),
            "additionalProperties": False,
        }


def _check_property(tool: str, pname: str, prop: dict[str, Any]) -> None:
    where = f"tool {tool!r} parameter {pname!r}"
    if not _PARAM_NAME.match(pname):
        raise ToolError(f"{where}: the name must match {_PARAM_NAME.pattern}")
    ptype = prop.setdefault("type", "string")
    if ptype not in PARAM_TYPES:
        raise ToolError(f"{where}: type must be one of {', '.join(PARAM_TYPES)}, got {ptype!r}")
    prop.setdefault("description", "")
    if "enum" in prop:
        values = prop["enum"]
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise ToolError(f"{where}: enum must be a non-empty list")
        try:
            prop["enum"] = [_coerce(ptype, v) for v in values]
        except ToolError as e:
            raise ToolError(f"{where}: enum value {e}") from None
    if "pattern" in prop:
        prop["pattern"] = re.compile(str(prop["pattern"])).pattern  # fail now, not on the first call


# -- the built-in tools -------------------------------------------------------------------------


def transfer_spec(targets: Mapping[str, str]) -> ToolSpec:
    """Only the target *names* are shown: SIP URIs mean nothing to the model and would leak the dial plan."""
    if not targets:
        raise ToolError("transfer needs at least one target")
    return ToolSpec(
        "transfer",
        "Transfer the caller to a person or department",
        {"target": {"type": "string", "description": "Who to transfer to", "enum": list(targets)}},
    )


def hangup_spec() -> ToolSpec:
    return ToolSpec("hangup", "End the call after saying goodbye")


def send_dtmf_spec() -> ToolSpec:
    return ToolSpec(
        "send_dtmf",
        "Press phone keypad keys",
        {
            "digits": {
                "type": "string",
                "description": "Keys to press",
                "pattern": r"^[0-9*#ABCD]{1,20}$",
                "maxLength": 20,
            }
        },
    )


def take_message_spec() -> ToolSpec:
    return ToolSpec(
        "take_message",
        "Take a message for the staff",
        {
            "message": {"type": "string", "description": "The message"},
            "name": {"type": "string", "description": "The caller's name"},
            "callback_number": {"type": "string", "description": "Number to call back"},
        },
        required=("message",),
    )


# -- validation ---------------------------------------------------------------------------------


def validate_arguments(spec: ToolSpec, args: object) -> dict[str, Any]:
    """``args`` checked against ``spec`` and normalized, or :class:`ToolError` with the reason.

    ``None`` counts as "no arguments", and an optional argument given as null is dropped
    (models write ``"name": null`` for "I don't know").  Checks run in a fixed order so the
    model gets the most useful correction first: unknown names, then missing, then values.
    """
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ToolError(f"{spec.name}: arguments must be an object, got {type(args).__name__}")
    expected = ", ".join(spec.parameters) or "none"
    # the prompt marks optional arguments "name?"; small models copy the mark into the key
    args = {(str(k)[:-1] if str(k).endswith("?") and str(k)[:-1] in spec.parameters else k): v for k, v in args.items()}
    extra = [str(k) for k in args if k not in spec.parameters]
    if extra:
        raise ToolError(f"{spec.name}: unknown argument {', '.join(map(repr, extra))} (expected: {expected})")
    present = {k: v for k, v in args.items() if v is not None}
    missing = [r for r in spec.required or () if r not in present]
    if missing:
        raise ToolError(f"{spec.name}: missing required argument {', '.join(map(repr, missing))}")
    out: dict[str, Any] = {}
    for key, value in present.items():
        try:
            out[key] = _check_value(spec.parameters[key], value)
        except ToolError as e:
            raise ToolError(f"{spec.name}: argument {key!r}: {e}") from None
    return out


def _check_value(prop: Mapping[str, Any], value: object) -> Any:
    ptype = prop.get("type", "string")
    v = _coerce(ptype, value)
    if isinstance(v, str):
        v = v.strip()
        limit = min(int(prop.get("maxLength", MAX_STRING_CHARS)), MAX_STRING_CHARS)
        if len(v) > limit:
            raise ToolError(f"too long ({len(v)} characters, at most {limit})")
    enum = prop.get("enum")
    if enum is not None:
        v = _match_enum(enum, v)
    pattern = prop.get("pattern")
    if pattern is not None and isinstance(v, str) and not re.search(pattern, v):
        raise ToolError(f"{v!r} does not match {pattern}")
    return v


def _match_enum(enum: Sequence[Any], v: Any) -> Any:
    if v in enum:  # values are coerced to the parameter's type first, so 1 never meets True here
        return v
    if isinstance(v, str):
        folded = [e for e in enum if isinstance(e, str) and e.casefold() == v.casefold()]
        if len(folded) == 1:
            return folded[0]
    raise ToolError(f"{v!r} is not one of {', '.join(map(str, enum))}")


def _coerce(ptype: str, value: object) -> Any:
    """``value`` as ``ptype`` where the intent is unambiguous; bools are never numbers or strings."""
    if ptype == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return str(value)
        raise ToolError(f"expected a string, got {_describe(value)}")
    if ptype == "integer":
        if isinstance(value, bool):
            raise ToolError(f"expected an integer, got {_describe(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            s = value.strip().replace(",", "").replace("_", "")
            if _INT.match(s):
                return int(s)
        raise ToolError(f"expected an integer, got {_describe(value)}")
    if ptype == "number":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return value
        if isinstance(value, str):
            try:
                f = float(value.strip().replace(",", ""))
            except ValueError:
                pass
            else:
                if math.isfinite(f):
                    return int(f) if _INT.match(value.strip()) else f
        raise ToolError(f"expected a number, got {_describe(value)}")
    if ptype == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ToolError(f"expected true or false, got {_describe(value)}")
    raise ToolError(f"unsupported type {ptype!r}")


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


# -- HTTP tools ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpToolConfig:
    """A user-defined tool that calls an HTTP API (e.g. an order lookup in the CRM).

    ``url`` holds ``{param}`` placeholders for path arguments; the other arguments become the
    query string (GET/DELETE) or a JSON body (POST/PUT).  ``${VAR}`` in url and headers is
    expanded from the environment at call time so tokens never sit in the config object;
    header values are masked in ``repr`` anyway, because the config may reach a log line.
    """

    name: str
    description: str
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeout_s: float = 5.0
    required: Sequence[str] | None = None

    def __post_init__(self) -> None:
        method = str(self.method).upper()
        if method not in HTTP_METHODS:
            raise ToolError(f"http tool {self.name!r}: method must be one of {', '.join(HTTP_METHODS)}")
        object.__setattr__(self, "method", method)
        if not re.match(r"^https?://[^/?#]", self.url, re.IGNORECASE):
            raise ToolError(f"http tool {self.name!r}: url must start with http:// or https:// and a host")
        host = re.split(r"[/?#]", self.url.split("://", 1)[1], maxsplit=1)[0]
        if _PLACEHOLDER.search(_ENV_REF.sub("", host)):  # the model must not choose where requests go
            raise ToolError(f"http tool {self.name!r}: the url's host cannot be an argument placeholder")
        if not isinstance(self.timeout_s, int | float) or not 0 < self.timeout_s <= 120:
            raise ToolError(f"http tool {self.name!r}: timeout_s must be in (0, 120]")
        headers = {str(k): str(v) for k, v in self.headers.items()}
        if any(re.search(r"[\r\n]", k + v) for k, v in headers.items()):
            raise ToolError(f"http tool {self.name!r}: header names and values must be single-line")
        object.__setattr__(self, "headers", headers)
        spec = self.spec  # validates the name and the parameters
        missing = [p for p in self.path_params if p not in spec.parameters]
        if missing:
            raise ToolError(f"http tool {self.name!r}: url placeholders {missing} are not parameters")
        optional = [p for p in self.path_params if p not in (spec.required or ())]
        if optional:
            raise ToolError(f"http tool {self.name!r}: url placeholders {optional} must be required")

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters, self.required)

    @property
    def path_params(self) -> list[str]:
        return _PLACEHOLDER.findall(_ENV_REF.sub("", self.url))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> HttpToolConfig:
        """From the YAML ``http:`` entry; a parameter may say ``required: false`` (the default is required)."""
        known = {"name", "description", "method", "url", "headers", "parameters", "timeout_s"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ToolError(f"http tool: unknown keys {unknown} (expected: {', '.join(sorted(known))})")
        for key in ("name", "url"):
            if not isinstance(data.get(key), str):
                raise ToolError(f"http tool: {key!r} is required and must be a string")
        params_in = data.get("parameters") or {}
        if not isinstance(params_in, Mapping):
            raise ToolError(f"http tool {data['name']!r}: parameters must be a mapping")
        params: dict[str, dict[str, Any]] = {}
        required: list[str] = []
        for pname, prop in params_in.items():
            prop = dict(prop or {})
            if prop.pop("required", True):
                required.append(str(pname))
            params[str(pname)] = prop
        return cls(
            name=data["name"],
            description=str(data.get("description", "")),
            url=data["url"],
            method=str(data.get("method", "GET")),
            headers=dict(data.get("headers") or {}),
            parameters=params,
            timeout_s=data.get("timeout_s", 5.0),
            required=required,
        )

    def __repr__(self) -> str:
        headers = {k: "***" for k in self.headers}
        return (
            f"HttpToolConfig(name={self.name!r}, method={self.method!r}, url={redact_url(self.url)!r}, "
            f"headers={headers!r}, parameters={list(self.parameters)!r}, timeout_s={self.timeout_s!r})"
        )


def redact_url(url: str) -> str:
    """``url`` with a userinfo password and literal query values masked; placeholders stay readable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = "&".join(
        f"{k}={v if _PLACEHOLDER.fullmatch(v) or _ENV_REF.fullmatch(v) else '***'}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# -- the ``tools:`` config section -----------------------------------------------------------------


@dataclass(frozen=True)
class ToolsConfig:
    """Everything the agent needs from the ``tools:`` list, by tool name in config order."""

    specs: dict[str, ToolSpec]
    transfer_targets: dict[str, str] = field(default_factory=dict)
    http: dict[str, HttpToolConfig] = field(default_factory=dict)
    transfer_plans: dict[str, TransferTarget] = field(default_factory=dict)  # name -> how it is reached


def load_tools(items: Sequence[object] | None, base_dir: Path | None = None) -> ToolsConfig:
    """The tool set from the parsed YAML list: ``- hangup``, ``- transfer: {targets: ...}``, ``- http: {...}``
    (``base_dir``: where relative file names, e.g. a transfer's ``hold_music``, are read from)."""
    from gateway.tools.transfer_options import read_transfer_targets  # it imports ToolError from here

    specs: dict[str, ToolSpec] = {}
    targets: dict[str, str] = {}
    plans: dict[str, TransferTarget] = {}
    http: dict[str, HttpToolConfig] = {}
    for i, item in enumerate(items or ()):
        if isinstance(item, str):
            kind, body = item, None
        elif isinstance(item, Mapping) and len(item) == 1:
            kind, body = next(iter(item.items()))
        else:
            raise ToolError(f"tools[{i}]: expected a tool name or a one-key mapping, got {item!r}")
        if kind == "transfer":
            if not isinstance(body, Mapping):
                raise ToolError(f"tools[{i}]: transfer needs targets: {{name: sip-uri, ...}}")
            plans = read_transfer_targets(i, body, base_dir)
            targets = {name: plan.uri for name, plan in plans.items()}
            spec = transfer_spec(targets)
        elif kind in ("hangup", "send_dtmf", "take_message"):
            if body:
                raise ToolError(f"tools[{i}]: {kind} takes no options")
            spec = {"hangup": hangup_spec, "send_dtmf": send_dtmf_spec, "take_message": take_message_spec}[kind]()
        elif kind == "http":
            if not isinstance(body, Mapping):
                raise ToolError(f"tools[{i}]: http needs a mapping")
            try:
                cfg = HttpToolConfig.from_mapping(body)
            except ToolError as e:
                raise ToolError(f"tools[{i}]: {e}") from None
            if cfg.name in BUILTIN_TOOLS:
                raise ToolError(f"tools[{i}]: http tool name {cfg.name!r} is a built-in tool")
            http[cfg.name] = cfg
            spec = cfg.spec
        else:
            raise ToolError(f"tools[{i}]: unknown tool {kind!r} (expected: {', '.join(BUILTIN_TOOLS)}, http)")
        if spec.name in specs:
            raise ToolError(f"tools[{i}]: tool {spec.name!r} is defined twice")
        specs[spec.name] = spec
    return ToolsConfig(specs, targets, http, plans)
