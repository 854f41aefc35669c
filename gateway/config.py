"""Load and validate the YAML configuration.

The YAML file is the public contract with users, so every mistake must be reported with
the file, the key path and what was expected: a gateway that silently ignores a typo in
`max_calls` answers calls it should have refused. Unknown keys are errors for the same
reason. `${VAR}` (and `${VAR:-default}`) in any string is replaced from the environment so
that secrets stay out of the file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.campaigns.policy import CampaignDefaults, PolicyError, read_defaults
from gateway.conversation.settings import CHOICES, ON_MACHINE, WORDS, AmdSettings, ConversationSettings, yaml_keys
from gateway.store.dsn import dsn_password, is_postgres_dsn, redact_dsn
from gateway.tools import ToolError, ToolsConfig, load_tools
from gateway.tools.transfer_options import wav_problem

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_AGENT_TYPES = ("echo", "conversation")
_CODECS = ("G722", "PCMU", "PCMA")  # offered in this order by default: wideband first
# OPUS is accepted but not in the default: the pjsua2 build we use for signalling has no opus codec,
# so pjsua can neither offer nor accept it (README, rtp.codecs); the RTP engine carries it.
_KNOWN_CODECS = ("OPUS", *_CODECS)


class ConfigError(ValueError):
    """A configuration problem, located by file and key path."""

    def __init__(self, file: str, key: str, expected: str, got: object = None, *, has_got: bool = True):
        self.file = file
        self.key = key
        self.expected = expected
        detail = f", got {got!r}" if has_got else ""
        super().__init__(f"{file}: {key or '<top level>'}: expected {expected}{detail}")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AccountConfig:
    username: str
    password: str
    registrar: str  # a SIP URI, e.g. "sip:127.0.0.1:5160"
    domain: str
    agent: str
    register_expires_s: int = 300
    auth_username: str | None = None
    ring_timeout_s: float | None = None  # outbound calls from this account: None takes sip.ring_timeout_s

    @property
    def aor(self) -> str:
        """The address of record this account registers."""
        return f"sip:{self.username}@{self.domain}"


@dataclass(frozen=True)
class TlsConfig:
    """SIP over TLS: where to listen and the certificate to present (files, never inline secrets)."""

    listen: HostPort
    certificate: str  # PEM certificate (chain) file
    private_key: str  # PEM private key file: readable by its owner only
    ca_list: str | None = None  # PEM CAs that verify peers (servers we connect to, client certificates)
    verify_server: bool = False  # check the certificate of a server we connect to (registrar, sips: calls)
    verify_peer: bool = False  # require a valid client certificate from peers that connect to us (mutual TLS)


@dataclass(frozen=True)
class SipConfig:
    listen: HostPort
    public_address: str
    max_calls: int
    default_agent: str
    accounts: tuple[AccountConfig, ...] = ()
    user_agent: str = "voicegate"
    routes: Mapping[str, str] = field(default_factory=dict)  # dialled number (R-URI user) -> agent
    trusted_sources: tuple[str, ...] = ()  # networks INVITEs may come from; empty: anywhere (a warning)
    invites_per_source_per_s: float = 5.0
    invite_burst: int = 20
    tls: TlsConfig | None = None
    drain_timeout_s: float = 3600.0  # a drain hangs up the calls still up after this long, then exits
    max_call_duration_s: float = 14400.0  # any call is hung up after this long (0: no limit)
    tcp: bool = True  # SIP over TCP on the listen address, beside UDP (gateway/sip/tcp_guard.py, tcp_gate.py)
    ring_timeout_s: float = 60.0  # an outbound call not answered by then is CANCELled (no_answer)


SRTP_MODES = ("off", "optional", "required")


@dataclass(frozen=True)
class RtpConfig:
    port_range: tuple[int, int] = (31000, 31999)
    inactivity_timeout_s: float = 30.0
    codecs: tuple[str, ...] = _CODECS
    dtmf_payload_type: int = 101
    jitter_min_delay_ms: int = 20
    jitter_max_delay_ms: int = 300
    srtp: str = "off"  # off | optional (SRTP when the peer offers or accepts it) | required (488 otherwise)


@dataclass(frozen=True)
class DtmfAction:
    """What a keypress does without asking the LLM: transfer to a target, hang up, or say a line."""

    transfer: str | None = None
    hangup: bool = False
    say: str | None = None


@dataclass(frozen=True)
class MemoryConfig:
    """Caller memory and messages: where they are kept and for how long.

    ``database`` is a SQLite file path (one gateway) or a PostgreSQL URI ``postgresql://...``
    (several gateways sharing callers, messages and call events); ``${VAR}`` keeps a password
    out of the file, or libpq's PGPASSWORD / ~/.pgpass supply it.
    """

    database: str = str(Path.home() / ".local" / "share" / "voicegate" / "voicegate.db")
    enabled: bool = True  # remember callers (name, last reason) by caller ID
    retention_days: float = 365.0


@dataclass(frozen=True)
class HttpConfig:
    """The operator's HTTP port: metrics, health, and the control API (bearer token)."""

    listen: HostPort | None = None  # None: no HTTP server
    token: str | None = None  # None: control API disabled (metrics and health still served)
    console_password: str | None = None  # the web console's admin password (the token also opens it)
    console_viewer_password: str | None = None  # a read-only login to the console
    console_session_hours: float = 12.0  # an idle console session ends after this long


@dataclass(frozen=True)
class RecordingConfig:
    directory: str | None = None  # None: no call records
    audio: bool = False  # also a stereo WAV per call (caller left, bot right)
    retention_days: float = 30.0


@dataclass(frozen=True)
class AgentConfig:
    name: str
    type: str
    answer_after_s: float = 0.0
    # conversation agents: every other key of the agent's block (gateway/conversation/settings.py
    # holds their defaults and ranges)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    knowledge: tuple[str, ...] = ()  # files or folders (Markdown, text) the agent answers from
    tools: ToolsConfig = field(default_factory=lambda: ToolsConfig({}))
    dtmf: Mapping[str, DtmfAction] = field(default_factory=dict)  # digit -> what pressing it does

    @property
    def instructions(self) -> str:
        return self.conversation.instructions

    @property
    def greeting(self) -> str:
        return self.conversation.greeting


@dataclass(frozen=True)
class ModelsConfig:
    """Which model files and engines to use; None means the pinned defaults from PyPI packages."""

    stt_engine: str = "local"  # local (faster-whisper in-process) | openai (a /v1/audio/transcriptions server)
    stt_model: str | None = None  # a CTranslate2 directory (local) or the served model's name (openai)
    stt_threads: int = 2
    stt_beam_size: int = 2  # see models/whisper.py WhisperConfig.beam_size and docs/benchmarks.md
    stt_word_probs: bool = True  # see models/whisper.py WhisperConfig.word_probs and confidence.doubted_words
    stt_base_url: str | None = None
    stt_api_key: str | None = None
    stt_timeout_s: float = 10.0
    stt_language: str = "en"
    llm_engine: str = "local"  # local (llama.cpp in-process) | openai (an OpenAI-compatible server)
    llm_model: str | None = None  # a GGUF path (local) or the served model's name (openai)
    llm_threads: int = 2
    llm_context: int = 2048
    llm_parallel: int = 2  # llama.cpp contexts: replies of that many calls stream at once, token by token
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    llm_api_key: str | None = None
    llm_timeout_s: float = 30.0
    tts_engine: str = "local"  # local (piper in-process) | openai (a /v1/audio/speech server)
    tts_voice: str | None = None  # a piper .onnx voice (its .onnx.json beside it), or the server's voice name
    tts_model: str = "tts-1"  # the served model's name (openai)
    tts_base_url: str | None = None
    tts_api_key: str | None = None
    tts_timeout_s: float = 10.0
    tts_response_format: str = "wav"  # wav | pcm (openai)
    tts_sample_rate: int = 24000  # of a server's raw pcm


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    sip_trace: bool = False


@dataclass(frozen=True)
class Config:
    source: str
    sip: SipConfig
    rtp: RtpConfig
    agents: Mapping[str, AgentConfig]
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    campaigns: CampaignDefaults = field(default_factory=CampaignDefaults)

    @property
    def needs_models(self) -> bool:
        return any(agent.type == "conversation" for agent in self.agents.values())


class _Reader:
    """Walks a parsed YAML tree, keeping the key path for error messages."""

    def __init__(self, file: str, env: Mapping[str, str]):
        self.file = file
        self.env = env

    def fail(self, key: str, expected: str, got: object = None, *, has_got: bool = True) -> ConfigError:
        return ConfigError(self.file, key, expected, got, has_got=has_got)

    def mapping(self, value: object, key: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, "a mapping", value)
        for name in value:
            if not isinstance(name, str) or name not in allowed:
                choices = ", ".join(sorted(allowed))
                raise self.fail(_join(key, str(name)), f"no such key (allowed here: {choices})", has_got=False)
        for name in sorted(required):
            if name not in value:
                raise self.fail(_join(key, name), "this key to be set", has_got=False)
        return value

    def string(self, value: object, key: str, *, allow_empty: bool = False) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(key, "a string", value)
        text = self.expand(str(value), key)
        if not text and not allow_empty:
            raise self.fail(key, "a non-empty string", text)
        return text

    def secret(self, value: object, key: str, *, allow_empty: bool = False) -> str:
        """A password or token: from the environment (``${VAR}``), or written in a file only its owner reads.

        A secret typed into a config file that other users can read is a leaked secret, so that
        is an error naming the key, not a warning scrolled past at start-up.
        """
        text = self.string(value, key, allow_empty=allow_empty)
        if isinstance(value, str | int) and _written_in_file(str(value)):
            self.require_private_file(key)
        return text

    def require_private_file(self, key: str) -> None:
        """The config file holds a secret at ``key``: refuse it if users other than its owner can read it."""
        if self.file.startswith("<"):
            return
        try:
            mode = Path(self.file).stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            raise self.fail(key, "a secret from the environment (\"${VAR}\") or a config file only its owner "
                            f"can read (the file's mode is {mode & 0o777:o}; chmod 600 it)", has_got=False)

    def expand(self, text: str, key: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            raise self.fail(key, f"environment variable {name} to be set (referenced as ${{{name}}})",
                            has_got=False)

        return _ENV_REF.sub(substitute, text)

    def expand_tree(self, value: object, key: str) -> object:
        """`${VAR}` replaced in every string of a nested YAML value (lists and mappings)."""
        if isinstance(value, str):
            return self.expand(value, key)
        if isinstance(value, list):
            return [self.expand_tree(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.expand_tree(v, _join(key, str(k))) for k, v in value.items()}
        return value

    def integer(self, value: object, key: str, lo: int, hi: int) -> int:
        if isinstance(value, str):
            value = self.expand(value, key)
            try:
                value = int(value)
            except ValueError:
                raise self.fail(key, f"an integer from {lo} to {hi}", value) from None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"an integer from {lo} to {hi}", value)
        return value

    def number(self, value: object, key: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, f"a number from {lo} to {hi}", value)
        return float(value)

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

    def host_port(self, value: object, key: str) -> HostPort:
        text = self.string(value, key)
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise self.fail(key, 'an address "host:port"', text)
        host = host.strip("[]")
        _check_host(self, host, key)
        return HostPort(host, self.integer(port, key, 1, 65535))

    def choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        if value is False and "off" in choices:  # YAML 1.1 reads a bare `off` (or `no`) as false
            return "off"
        text = self.string(value, key) if not isinstance(value, bool) else value
        if text not in choices:
            raise self.fail(key, f"one of {', '.join(choices)}", value)
        return str(text)

    @property
    def base_dir(self) -> Path:
        """What relative paths in the config are relative to: the config file's folder, not the working directory."""
        return Path(self.file).resolve().parent if not self.file.startswith("<") else Path.cwd()

    def path(self, value: object, key: str) -> Path:
        """A file path; a relative one is relative to the config file (:attr:`base_dir`)."""
        path = Path(self.string(value, key)).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def readable_file(self, value: object, key: str) -> str:
        path = self.path(value, key)
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise self.fail(key, f"a readable file ({exc.strerror})", str(path)) from None
        return str(path)

    def secret_file(self, value: object, key: str) -> str:
        """A readable file that only its owner can read: a key readable by others is a leaked key."""
        text = self.readable_file(value, key)
        mode = Path(text).stat().st_mode
        if mode & 0o077:
            raise self.fail(key, f"a file only its owner can access (mode is {mode & 0o777:o}; chmod 600 it)", text)
        return text

    def optional(self, data: Mapping, name: str, key: str, read: Callable[[object, str], Any], default: Any):
        return read(data[name], _join(key, name)) if name in data else default


def _written_in_file(text: str) -> str:
    """What of ``text`` is typed into the file: ``${VAR}`` comes from outside, a ``${VAR:-default}``'s default not."""
    return _ENV_REF.sub(lambda m: m.group(2) or "", text)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _check_host(reader: _Reader, host: str, key: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        raise reader.fail(key, "an IP address or host name", host)


def _sip_uri_host(reader: _Reader, uri: str, key: str) -> str:
    match = re.fullmatch(r"sips?:(?:[^@;]+@)?(\[[^\]]+\]|[^:;>]+)(?::(\d{1,5}))?(;.*)?", uri)
    if not match:
        raise reader.fail(key, 'a SIP URI like "sip:pbx.example.com:5060"', uri)
    host = match.group(1).strip("[]")
    _check_host(reader, host, key)
    if match.group(2) is not None:
        reader.integer(match.group(2), key, 1, 65535)
    return host


def _read_account(r: _Reader, raw: object, key: str, agents: Mapping[str, AgentConfig]) -> AccountConfig:
    data = r.mapping(raw, key, {"username", "password", "registrar", "domain", "agent", "register_expires_s",
                                "auth_username", "ring_timeout_s"}, {"username", "password", "registrar", "agent"})
    registrar = r.string(data["registrar"], _join(key, "registrar"))
    registrar_host = _sip_uri_host(r, registrar, _join(key, "registrar"))
    agent = r.string(data["agent"], _join(key, "agent"))
    if agent not in agents:
        raise r.fail(_join(key, "agent"), f"the name of an agent under `agents` ({', '.join(agents)})", agent)
    username = r.string(data["username"], _join(key, "username"))
    if not re.fullmatch(r"[A-Za-z0-9._~+\-!$&'()*,;=%]+", username):
        raise r.fail(_join(key, "username"), "a SIP user part (letters, digits, . _ - + etc.)", username)
    return AccountConfig(
        username=username,
        password=r.secret(data["password"], _join(key, "password"), allow_empty=True),
        registrar=registrar,
        domain=r.optional(data, "domain", key, r.string, registrar_host),
        agent=agent,
        register_expires_s=r.optional(data, "register_expires_s", key,
                                      lambda v, k: r.integer(v, k, 1, 86400), 300),
        auth_username=r.optional(data, "auth_username", key, r.string, None),
        ring_timeout_s=r.optional(data, "ring_timeout_s", key, lambda v, k: r.number(v, k, 1, 600), None),
    )


def _read_agent(r: _Reader, name: str, raw: object, key: str) -> AgentConfig:
    settings_keys = yaml_keys()
    data = r.mapping(raw, key, {"type", "answer_after_s", "knowledge", "tools", "dtmf", "amd", *settings_keys},
                     {"type"})
    kind = r.string(data["type"], _join(key, "type"))
    if kind not in _AGENT_TYPES:
        raise r.fail(_join(key, "type"), f"one of {', '.join(_AGENT_TYPES)}", kind)
    conversation_keys = set(data) - {"type", "answer_after_s"}
    if kind != "conversation" and conversation_keys:
        first = sorted(conversation_keys)[0]
        raise r.fail(_join(key, first), "no such key for an agent of type " + kind + " (only for conversation)",
                     has_got=False)
    if kind == "conversation" and "instructions" not in data:
        raise r.fail(_join(key, "instructions"), "the agent's instructions (its system prompt)", has_got=False)
    values = _read_settings(r, data, key, settings_keys)
    if "amd" in data:
        values["amd"] = _read_amd(r, data["amd"], _join(key, "amd"))
    if values.get("hold_music") not in (None, "", "tone"):  # a file, relative to the config file
        values["hold_music"] = str(r.path(values["hold_music"], _join(key, "hold_music")))
        problem = wav_problem(Path(values["hold_music"]))
        if problem:
            raise r.fail(_join(key, "hold_music"), f"an existing 16-bit PCM WAV file, or tone ({problem})",
                         values["hold_music"])
    conversation = ConversationSettings(**values)
    if conversation.end_of_turn_ms < conversation.pause_ms:
        raise r.fail(_join(key, "end_of_turn_ms"), f"at least pause_ms ({conversation.pause_ms})",
                     conversation.end_of_turn_ms)
    if conversation.turn_max_wait_ms < conversation.end_of_turn_ms:
        raise r.fail(_join(key, "turn_max_wait_ms"), f"at least end_of_turn_ms ({conversation.end_of_turn_ms})",
                     conversation.turn_max_wait_ms)
    tools = _read_tools(r, data.get("tools"), _join(key, "tools"))
    return AgentConfig(
        name=name,
        type=kind,
        answer_after_s=r.optional(data, "answer_after_s", key, lambda v, k: r.number(v, k, 0, 60), 0.0),
        conversation=conversation,
        knowledge=_read_knowledge(r, data.get("knowledge"), _join(key, "knowledge")),
        tools=tools,
        dtmf=_read_dtmf(r, data.get("dtmf"), _join(key, "dtmf"), tools),
    )


def _read_settings(r: _Reader, data: Mapping, key: str,
                   settings_keys: Mapping[str, tuple[type, tuple[float, float] | str | None]]) -> dict[str, Any]:
    """The keys of `settings_keys` present in `data`, each checked against its kind and range."""
    values: dict[str, Any] = {}
    for setting, (kind_of, bounds) in settings_keys.items():
        if setting not in data:
            continue
        where = _join(key, setting)
        if setting in CHOICES:
            values[setting] = r.string(data[setting], where)
            if values[setting] not in CHOICES[setting]:
                raise r.fail(where, f"one of {', '.join(CHOICES[setting])}", values[setting])
        elif bounds is None:
            values[setting] = r.string(data[setting], where, allow_empty=True)
        elif bounds == WORDS:
            items = data[setting]
            if not isinstance(items, list):
                raise r.fail(where, "a list of words or phrases", items)
            values[setting] = tuple(r.string(v, f"{where}[{i}]") for i, v in enumerate(items))
        elif kind_of is int and isinstance(bounds, tuple):
            values[setting] = r.integer(data[setting], where, int(bounds[0]), int(bounds[1]))
        elif isinstance(bounds, tuple):
            values[setting] = r.number(data[setting], where, bounds[0], bounds[1])
    return values


def _read_amd(r: _Reader, raw: object, key: str) -> AmdSettings:
    """An agent's `amd:` block (answering-machine detection on its outbound calls)."""
    keys = yaml_keys(AmdSettings)
    data = r.mapping(raw, key, {"enabled", "on_machine", *keys})
    values = _read_settings(r, data, key, keys)
    if "enabled" in data:
        values["enabled"] = r.boolean(data["enabled"], _join(key, "enabled"))
    if "on_machine" in data:
        values["on_machine"] = r.choice(data["on_machine"], _join(key, "on_machine"), ON_MACHINE)
    amd = AmdSettings(**values)
    if amd.on_machine == "leave_message" and not amd.message.strip():
        raise r.fail(_join(key, "message"), "the message to leave (on_machine is leave_message)", has_got=False)
    return amd


def _read_knowledge(r: _Reader, raw: object, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise r.fail(key, "a list of files or folders", raw)
    paths = []
    base = r.base_dir
    for i, item in enumerate(items):
        path = r.string(item, f"{key}[{i}]")
        path = str(base / path) if not Path(path).is_absolute() else path  # relative to the config file
        if not Path(path).exists():
            raise r.fail(f"{key}[{i}]", "an existing file or folder", path)
        paths.append(path)
    return tuple(paths)


def _read_tools(r: _Reader, raw: object, key: str) -> ToolsConfig:
    if raw is None:
        return ToolsConfig({})
    if not isinstance(raw, list):
        raise r.fail(key, "a list of tools (transfer, hangup, send_dtmf, take_message, http)", raw)
    try:
        return load_tools(r.expand_tree(raw, key), r.base_dir)  # type: ignore[arg-type]
    except ToolError as exc:
        text = str(exc)
        where, _, why = text.partition(": ")
        if where.startswith("tools["):
            raise r.fail(key + where.removeprefix("tools"), why, has_got=False) from None
        raise r.fail(key, text, has_got=False) from None


def _read_dtmf(r: _Reader, raw: object, key: str, tools: ToolsConfig) -> dict[str, DtmfAction]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise r.fail(key, 'a mapping of keypad digits to actions, e.g. {"0": {transfer: operator}}', raw)
    actions: dict[str, DtmfAction] = {}
    for digit, action in raw.items():
        digit_key = _join(key, str(digit))
        digit = str(digit)
        if not re.fullmatch(r"[0-9*#A-D]", digit):
            raise r.fail(digit_key, "a single keypad key: 0-9, *, #, A-D", digit)
        if action == "hangup":
            actions[digit] = DtmfAction(hangup=True)
            continue
        body = r.mapping(action, digit_key, {"transfer", "hangup", "say"})
        if len(body) != 1:
            raise r.fail(digit_key, "exactly one action: transfer, hangup or say", body)
        if "transfer" in body:
            target = r.string(body["transfer"], _join(digit_key, "transfer"))
            if target not in tools.transfer_targets:
                known = ", ".join(tools.transfer_targets) or "none: add a transfer tool with targets"
                raise r.fail(_join(digit_key, "transfer"), f"a transfer target of this agent ({known})", target)
            actions[digit] = DtmfAction(transfer=target)
        elif "say" in body:
            actions[digit] = DtmfAction(say=r.string(body["say"], _join(digit_key, "say")))
        else:
            actions[digit] = DtmfAction(hangup=r.boolean(body["hangup"], _join(digit_key, "hangup")))
    return actions


_URL_EXAMPLE = {"stt": "http://10.0.0.7:8000/v1", "llm": "http://10.0.0.7:8080/v1", "tts": "http://10.0.0.7:8000/v1"}


def _read_models(r: _Reader, raw: object) -> ModelsConfig:
    data = r.mapping(raw, "models", {"stt", "llm", "tts"})
    server_keys = {"engine", "base_url", "api_key", "timeout_s"}
    stt = r.mapping(data.get("stt", {}), "models.stt", {"model", "threads", "language", "beam_size", "word_probs"}
                    | server_keys)
    llm = r.mapping(data.get("llm", {}), "models.llm", {"model", "threads", "context", "parallel"} | server_keys)
    tts = r.mapping(data.get("tts", {}), "models.tts", {"voice", "model", "response_format", "sample_rate"}
                    | server_keys)
    engines = {}
    for section, values in (("stt", stt), ("llm", llm), ("tts", tts)):
        key = f"models.{section}"
        engine = r.optional(values, "engine", key, r.string, "local")
        if engine not in ("local", "openai"):
            raise r.fail(f"{key}.engine", "local or openai", engine)
        if engine == "openai" and "base_url" not in values:
            raise r.fail(f"{key}.base_url", f"the server's base URL (e.g. {_URL_EXAMPLE[section]})", has_got=False)
        if "base_url" in values:
            url = r.string(values["base_url"], f"{key}.base_url")
            if not re.fullmatch(r"https?://[^/\s:]+(:\d{1,5})?(/\S*)?", url):
                raise r.fail(f"{key}.base_url", "http(s)://host[:port]/path (e.g. " + _URL_EXAMPLE[section] + ")", url)
        engines[section] = engine
    if engines["stt"] == "openai" and "threads" in stt:
        raise r.fail("models.stt.threads", "no such key with engine: openai (the server has its own)", has_got=False)
    paths = {}
    for section, name, value in (("stt", "model", stt.get("model")), ("llm", "model", llm.get("model")),
                                 ("tts", "voice", tts.get("voice"))):
        key = f"models.{section}.{name}"
        if value is None:
            continue
        text = r.string(value, key)
        if engines[section] == "local" and not Path(text).exists():
            raise r.fail(key, "an existing file or directory", text)
        paths[section] = text
    if engines["tts"] == "local":
        for server_only in ("model", "response_format", "sample_rate"):
            if server_only in tts:
                raise r.fail(f"models.tts.{server_only}", "no such key with engine: local (a server's setting)",
                             has_got=False)
    response_format = r.optional(tts, "response_format", "models.tts", r.string, "wav")
    if response_format not in ("wav", "pcm"):
        raise r.fail("models.tts.response_format", "wav or pcm", response_format)

    def timeout(values: dict, section: str, default: float) -> float:
        return r.optional(values, "timeout_s", f"models.{section}", lambda v, k: r.number(v, k, 1, 600), default)

    return ModelsConfig(
        stt_engine=engines["stt"],
        stt_model=paths.get("stt"),
        stt_threads=r.optional(stt, "threads", "models.stt", lambda v, k: r.integer(v, k, 1, 64), 2),
        stt_beam_size=r.optional(stt, "beam_size", "models.stt", lambda v, k: r.integer(v, k, 1, 10), 2),
        stt_word_probs=r.optional(stt, "word_probs", "models.stt", r.boolean, True),
        stt_base_url=r.optional(stt, "base_url", "models.stt", r.string, None),
        stt_api_key=r.optional(stt, "api_key", "models.stt", r.string, None),
        stt_timeout_s=timeout(stt, "stt", 10.0),
        stt_language=r.optional(stt, "language", "models.stt", r.string, "en"),
        llm_engine=engines["llm"],
        llm_model=paths.get("llm"),
        llm_threads=r.optional(llm, "threads", "models.llm", lambda v, k: r.integer(v, k, 1, 64), 2),
        llm_context=r.optional(llm, "context", "models.llm", lambda v, k: r.integer(v, k, 256, 131072), 2048),
        llm_parallel=r.optional(llm, "parallel", "models.llm", lambda v, k: r.integer(v, k, 1, 16), 2),
        llm_base_url=r.optional(llm, "base_url", "models.llm", r.string, "http://127.0.0.1:8080/v1"),
        llm_api_key=r.optional(llm, "api_key", "models.llm", r.string, None),
        llm_timeout_s=timeout(llm, "llm", 30.0),
        tts_engine=engines["tts"],
        tts_voice=paths.get("tts"),
        tts_model=r.optional(tts, "model", "models.tts", r.string, "tts-1"),
        tts_base_url=r.optional(tts, "base_url", "models.tts", r.string, None),
        tts_api_key=r.optional(tts, "api_key", "models.tts", r.string, None),
        tts_timeout_s=timeout(tts, "tts", 10.0),
        tts_response_format=response_format,
        tts_sample_rate=r.optional(tts, "sample_rate", "models.tts", lambda v, k: r.integer(v, k, 8000, 48000), 24000),
    )


def _read_rtp(r: _Reader, raw: object) -> RtpConfig:
    data = r.mapping(raw, "rtp", {"port_range", "inactivity_timeout_s", "codecs", "dtmf_payload_type",
                                  "jitter_min_delay_ms", "jitter_max_delay_ms", "srtp"})
    port_range = RtpConfig.port_range
    if "port_range" in data:
        value = data["port_range"]
        if not isinstance(value, list) or len(value) != 2:
            raise r.fail("rtp.port_range", "a list of two ports [first, last]", value)
        first = r.integer(value[0], "rtp.port_range[0]", 1024, 65534)
        last = r.integer(value[1], "rtp.port_range[1]", 1025, 65535)
        if last - first < 3:
            raise r.fail("rtp.port_range", "a range holding at least two even/odd port pairs", value)
        port_range = (first, last)
    codecs = RtpConfig.codecs
    if "codecs" in data:
        value = data["codecs"]
        if not isinstance(value, list) or not value:
            raise r.fail("rtp.codecs", f"a non-empty list drawn from {', '.join(_KNOWN_CODECS)}", value)
        codecs = tuple(r.string(v, f"rtp.codecs[{i}]").upper() for i, v in enumerate(value))
        for i, codec in enumerate(codecs):
            if codec not in _KNOWN_CODECS:
                raise r.fail(f"rtp.codecs[{i}]", f"one of {', '.join(_KNOWN_CODECS)}", codec)
    min_delay = r.optional(data, "jitter_min_delay_ms", "rtp", lambda v, k: r.integer(v, k, 0, 500), 20)
    max_delay = r.optional(data, "jitter_max_delay_ms", "rtp", lambda v, k: r.integer(v, k, 20, 2000), 300)
    if max_delay < min_delay:
        raise r.fail("rtp.jitter_max_delay_ms", f"at least jitter_min_delay_ms ({min_delay})", max_delay)
    return RtpConfig(
        port_range=port_range,
        inactivity_timeout_s=r.optional(data, "inactivity_timeout_s", "rtp",
                                        lambda v, k: r.number(v, k, 1, 3600), 30.0),
        codecs=codecs,
        dtmf_payload_type=r.optional(data, "dtmf_payload_type", "rtp", lambda v, k: r.integer(v, k, 96, 127), 101),
        jitter_min_delay_ms=min_delay,
        jitter_max_delay_ms=max_delay,
        srtp=r.optional(data, "srtp", "rtp", lambda v, k: r.choice(v, k, SRTP_MODES), "off"),
    )


def _read_sip(r: _Reader, raw: object, agents: Mapping[str, AgentConfig]) -> SipConfig:
    data = r.mapping(raw, "sip", {"listen", "public_address", "max_calls", "default_agent", "accounts",
                                  "user_agent", "routes", "trusted_sources", "invites_per_source_per_s",
                                  "invite_burst", "tls", "drain_timeout_s", "max_call_duration_s", "tcp",
                                  "ring_timeout_s"}, {"listen"})
    listen = r.host_port(data["listen"], "sip.listen")
    public = r.optional(data, "public_address", "sip", r.string, None)
    if public is None:
        if _is_ip(listen.host) and ipaddress.ip_address(listen.host).is_unspecified:
            raise r.fail("sip.public_address", "an address to advertise when sip.listen is a wildcard address",
                         has_got=False)
        public = listen.host
    else:
        _check_host(r, public, "sip.public_address")
    default_agent = r.optional(data, "default_agent", "sip", r.string, None)
    if default_agent is None:
        if len(agents) != 1:
            raise r.fail("sip.default_agent", "the agent for direct calls (several agents are defined)",
                         has_got=False)
        default_agent = next(iter(agents))
    if default_agent not in agents:
        raise r.fail("sip.default_agent", f"the name of an agent under `agents` ({', '.join(agents)})",
                     default_agent)
    accounts_raw = data.get("accounts", [])
    if accounts_raw is None:
        accounts_raw = []
    if not isinstance(accounts_raw, list):
        raise r.fail("sip.accounts", "a list of accounts", accounts_raw)
    accounts = tuple(_read_account(r, a, f"sip.accounts[{i}]", agents) for i, a in enumerate(accounts_raw))
    seen: set[str] = set()
    for i, account in enumerate(accounts):
        if account.aor in seen:
            raise r.fail(f"sip.accounts[{i}].username", "each account (username@domain) only once", account.aor)
        seen.add(account.aor)
    return SipConfig(
        listen=listen,
        public_address=public,
        max_calls=r.optional(data, "max_calls", "sip", lambda v, k: r.integer(v, k, 1, 1000), 4),
        default_agent=default_agent,
        accounts=accounts,
        user_agent=r.optional(data, "user_agent", "sip", r.string, "voicegate"),
        routes=_read_routes(r, data.get("routes"), agents),
        trusted_sources=_read_networks(r, data.get("trusted_sources"), "sip.trusted_sources"),
        invites_per_source_per_s=r.optional(data, "invites_per_source_per_s", "sip",
                                            lambda v, k: r.number(v, k, 0.01, 10000), 5.0),
        invite_burst=r.optional(data, "invite_burst", "sip", lambda v, k: r.integer(v, k, 1, 100000), 20),
        tls=_read_tls(r, data["tls"]) if "tls" in data else None,
        drain_timeout_s=r.optional(data, "drain_timeout_s", "sip", lambda v, k: r.number(v, k, 1, 7 * 86400), 3600.0),
        max_call_duration_s=r.optional(data, "max_call_duration_s", "sip",
                                       lambda v, k: r.number(v, k, 0, 7 * 86400), 14400.0),
        tcp=r.optional(data, "tcp", "sip", r.boolean, True),
        ring_timeout_s=r.optional(data, "ring_timeout_s", "sip", lambda v, k: r.number(v, k, 1, 600), 60.0),
    )


def _read_tls(r: _Reader, raw: object) -> TlsConfig:
    data = r.mapping(raw, "sip.tls", {"listen", "certificate", "private_key", "ca_list", "verify_server",
                                      "verify_peer"}, {"listen", "certificate", "private_key"})
    listen = r.host_port(data["listen"], "sip.tls.listen")
    ca_list = r.optional(data, "ca_list", "sip.tls", lambda v, k: r.readable_file(v, k), None)
    verify = r.optional(data, "verify_peer", "sip.tls", r.boolean, False)
    verify_server = r.optional(data, "verify_server", "sip.tls", r.boolean, ca_list is not None)
    for name, on in (("verify_peer", verify), ("verify_server", verify_server)):
        if on and ca_list is None:
            raise r.fail("sip.tls.ca_list", f"the CA file to verify certificates with ({name} is true)",
                         has_got=False)
    return TlsConfig(
        listen=listen,
        certificate=r.readable_file(data["certificate"], "sip.tls.certificate"),
        private_key=r.secret_file(data["private_key"], "sip.tls.private_key"),
        ca_list=ca_list,
        verify_server=verify_server,
        verify_peer=verify,
    )


def _read_networks(r: _Reader, raw: object, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.fail(key, 'a list of addresses or networks, e.g. ["10.0.0.5/32"]', raw)
    networks = []
    for i, item in enumerate(raw):
        text = r.string(item, f"{key}[{i}]")
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise r.fail(f"{key}[{i}]", "an IP address or network (CIDR)", text) from None
    return tuple(networks)


def _read_http(r: _Reader, raw: object) -> HttpConfig:
    data = r.mapping(raw, "http", {"listen", "token", "console_password", "console_viewer_password",
                                   "console_session_hours"})
    listen = r.host_port(data["listen"], "http.listen") if "listen" in data else None
    token = r.optional(data, "token", "http", r.secret, None)
    if token is not None and len(token) < 16:
        raise r.fail("http.token", "a token of at least 16 characters (e.g. from `openssl rand -hex 24`)",
                     has_got=False)
    passwords = {}
    for key in ("console_password", "console_viewer_password"):
        passwords[key] = r.optional(data, key, "http", r.secret, None)
        if passwords[key] is not None and len(passwords[key]) < 12:
            raise r.fail(f"http.{key}", "a password of at least 12 characters (use ${VAR})", has_got=False)
    hours = r.optional(data, "console_session_hours", "http", lambda v, k: r.number(v, k, 0.05, 720.0), 12.0)
    return HttpConfig(listen=listen, token=token, console_password=passwords["console_password"],
                      console_viewer_password=passwords["console_viewer_password"], console_session_hours=hours)


def _read_recording(r: _Reader, raw: object) -> RecordingConfig:
    data = r.mapping(raw, "recording", {"directory", "audio", "retention_days"})
    return RecordingConfig(
        directory=r.optional(data, "directory", "recording", r.string, None),
        audio=r.optional(data, "audio", "recording", r.boolean, False),
        retention_days=r.optional(data, "retention_days", "recording", lambda v, k: r.number(v, k, 0.01, 36500),
                                  30.0),
    )


def _read_routes(r: _Reader, raw: object, agents: Mapping[str, AgentConfig]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise r.fail("sip.routes", "a mapping of dialled numbers to agent names", raw)
    routes = {}
    for number, agent in raw.items():
        key = _join("sip.routes", str(number))
        name = r.string(agent, key)
        if name not in agents:
            raise r.fail(key, f"the name of an agent under `agents` ({', '.join(agents)})", name)
        routes[str(number)] = name
    return routes


def _read_memory(r: _Reader, raw: object, database: object) -> MemoryConfig:
    data = r.mapping(raw, "memory", {"enabled", "retention_days"})
    default = MemoryConfig()
    path = default.database if database is None else r.string(database, "database")
    if "://" in path and not is_postgres_dsn(path):  # shown redacted: a refused URI may carry a password
        raise r.fail("database", "a SQLite file path or a PostgreSQL URI (postgresql://user@host/db)",
                     redact_dsn(path))
    # libpq's other form ("host=db dbname=voice user=vg") would become a SQLite file of that name in
    # the working directory; the value is not shown, since it may hold password=...
    if not is_postgres_dsn(path) and re.search(r"(?:^|\s)(?:host|hostaddr|dbname|user|port|password|sslmode)\s*=",
                                                path, re.IGNORECASE):
        raise r.fail("database", "a PostgreSQL URI (postgresql://user@host/db), not libpq key=value settings, "
                     "or a SQLite file path", has_got=False)
    if isinstance(database, str) and is_postgres_dsn(path) and dsn_password(_written_in_file(database)):
        r.require_private_file("database")  # a password typed into the URI, not from ${VAR}
    return MemoryConfig(
        database=path,
        enabled=r.optional(data, "enabled", "memory", r.boolean, True),
        retention_days=r.optional(data, "retention_days", "memory", lambda v, k: r.number(v, k, 0.01, 36500), 365.0),
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _read_logging(r: _Reader, raw: object) -> LoggingConfig:
    data = r.mapping(raw, "logging", {"level", "sip_trace"})
    level = r.optional(data, "level", "logging", r.string, "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise r.fail("logging.level", "one of debug, info, warning, error", level)
    return LoggingConfig(level=level, sip_trace=r.optional(data, "sip_trace", "logging", r.boolean, False))


def parse_config(data: object, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML document."""
    r = _Reader(source, os.environ if env is None else env)
    top = r.mapping(data, "", {"sip", "rtp", "agents", "logging", "models", "memory", "database", "http",
                               "recording", "campaigns"}, {"sip", "agents"})
    agents_raw = top["agents"]
    if not isinstance(agents_raw, dict) or not agents_raw:
        raise r.fail("agents", "at least one agent", agents_raw)
    agents: dict[str, AgentConfig] = {}
    for name, raw in agents_raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise r.fail(f"agents.{name}", "an agent name of letters, digits, '_', '-' or '.'", has_got=False)
        agents[name] = _read_agent(r, name, raw, f"agents.{name}")
    return Config(
        source=source,
        sip=_read_sip(r, top["sip"], agents),
        rtp=_read_rtp(r, top.get("rtp", {})),
        agents=agents,
        logging=_read_logging(r, top.get("logging", {})),
        models=_read_models(r, top.get("models", {})),
        memory=_read_memory(r, top.get("memory", {}), top.get("database")),
        http=_read_http(r, top.get("http", {})),
        recording=_read_recording(r, top.get("recording", {})),
        campaigns=_read_campaigns(r, top.get("campaigns", {})),
    )


def _read_campaigns(r: _Reader, raw: object) -> CampaignDefaults:
    """The campaigns' defaults; their one parser (gateway/campaigns/policy.py) also reads API requests."""
    try:
        return read_defaults(raw)
    except PolicyError as exc:
        key = "campaigns" if exc.key == "campaigns" else f"campaigns.{exc.key}"
        given = exc.got is not dataclasses.MISSING
        raise r.fail(key, exc.expected, exc.got if given else None, has_got=given) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a YAML configuration file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", f"a readable file ({exc.strerror})", has_got=False) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, "", f"valid YAML{where} ({getattr(exc, 'problem', exc)})", has_got=False) from exc
    return parse_config(data, source, env)
