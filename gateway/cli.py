"""`voicegate` command line: run, call, chat, dial, check-config and the record commands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import structlog

from gateway.config import ConfigError, HostPort, load_config
from gateway.dial.arguments import add_dial_arguments
from gateway.logs import LogFormat, configure_logging

log = structlog.get_logger("cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicegate", description="On-prem AI voice agent: a SIP/RTP gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument("--log-format", choices=[f.value for f in LogFormat], default=LogFormat.AUTO.value,
                      help="log lines as JSON or coloured console lines (auto: console on a terminal, else JSON)")
    run = sub.add_parser("run", help="run the gateway in the foreground", parents=[logs])
    run.add_argument("--config", required=True, help="YAML configuration file")
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config", help="YAML configuration file")
    call = sub.add_parser("call", help="place one outbound call, run its agent, exit when it ends", parents=[logs])
    call.add_argument("--config", required=True, help="YAML configuration file")
    call.add_argument("--account", help="account (username or AOR) to call from; default: the first one")
    call.add_argument("--agent", help="agent to attach; default: the account's agent")
    call.add_argument("--listen", help="override sip.listen (host:port), e.g. beside a running gateway")
    call.add_argument("uri", help="SIP URI or extension to call")
    forget = sub.add_parser("forget", help="delete everything remembered about a caller (memory and messages)")
    forget.add_argument("--config", required=True, help="YAML configuration file (for the database)")
    forget.add_argument("caller", help="the caller ID (number or SIP URI) to forget")
    messages = sub.add_parser("messages", help="list the messages callers left (take_message)")
    messages.add_argument("--config", required=True, help="YAML configuration file (for the database)")
    report = sub.add_parser("report", help="draw a call's timeline (speech, barge-ins, tools, stage latencies) as PNG")
    report.add_argument("--config", required=True,
                        help="YAML configuration file (recording.directory, and a PostgreSQL database: all gateways)")
    report.add_argument("--out", help="output PNG (default: ./<call id>.png)")
    report.add_argument("call_id", help="the call's Call-ID (as in the logs)")
    chat = sub.add_parser("chat", parents=[logs],
                          help="talk to an agent by typing: its planner, knowledge, tools (dry run) and LLM")
    chat.add_argument("--config", default="configs/default.yaml",
                      help="YAML configuration file (default: configs/default.yaml)")
    chat.add_argument("--agent", help="conversation agent; default: sip.default_agent or the first one")
    chat.add_argument("--live-tools", action="store_true",
                      help="really run HTTP tools and store messages (default: print the call it would make)")
    chat.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                      help="log lines shown beside the chat (default: warning)")
    add_dial_arguments(sub.add_parser("dial", parents=[logs],
                                      help="call the running gateway over SIP/RTP, speak lines, print the "
                                           "bot's answers and the voice-to-voice latency"))
    args = parser.parse_args(argv)

    if args.command == "check-config":
        return _check_config(args.config)
    try:
        config = load_config(args.config)
        if getattr(args, "listen", None):
            host, _, port = args.listen.rpartition(":")
            config = replace(config, sip=replace(config.sip, listen=HostPort(host, int(port))))
        if getattr(args, "agent", None) and args.agent not in config.agents:
            raise ConfigError(args.config, "agents", f"an agent named {args.agent!r}", list(config.agents))
    except (ConfigError, ValueError) as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 2
    if args.command in ("forget", "messages"):
        return _memory_command(config, args)
    if args.command == "report":
        return _report_command(config, args)
    log_format = LogFormat(args.log_format)
    if args.command == "chat":
        configure_logging(args.log_level, log_format=log_format)
        return _chat_command(config, args)
    if args.command == "dial":
        from gateway.dial.command import dial_command  # audio and SIP code: only for this command

        configure_logging(args.log_level, log_format=log_format)
        return dial_command(config, args)
    chosen = configure_logging(config.logging.level, log_format=log_format)
    if args.command == "run":
        return _run(config, args.config if chosen is LogFormat.CONSOLE else None)
    return _call(config, args.uri, args.account, args.agent)


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: OK ({len(config.sip.accounts)} account(s), agents: {', '.join(config.agents)})")
    return 0


def _memory_command(config, args) -> int:
    from gateway.store import StoreError, normalize_caller_id, open_store

    try:
        store = open_store(config.memory.database)
    except StoreError as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 1
    with store:
        if args.command == "messages":
            for m in store.messages():
                print(json.dumps({"id": m.id, "at": m.created_at, "caller_id": m.caller_id, "name": m.caller_name,
                                  "callback": m.callback_number, "message": m.text, "call_id": m.call_id}))
            return 0
        caller = normalize_caller_id(args.caller)
        if caller is None:
            print(f"voicegate: {args.caller!r} is not a caller ID", file=sys.stderr)
            return 2
        deleted = store.forget(caller)
    print(f"forgot {caller}: {deleted} record(s) deleted")
    return 0


def _report_command(config, args) -> int:
    from gateway.report import report_main  # matplotlib: imported only for this command
    from gateway.store import StoreError, is_postgres_dsn

    shared = config.memory.database if is_postgres_dsn(config.memory.database) else None
    if config.recording.directory is None and shared is None:
        print(f"voicegate: {args.config}: recording.directory is not set, so there are no call records",
              file=sys.stderr)
        return 2
    directory = Path(config.recording.directory) if config.recording.directory else None
    try:
        out = report_main(args.call_id, directory, Path(args.out) if args.out else None, shared)
    except (FileNotFoundError, StoreError) as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _chat_command(config, args) -> int:
    from gateway.chat import run_chat  # loads the LLM engine: only for this command

    try:
        return run_chat(config, args.config, args.agent, args.live_tools)
    except ConfigError as exc:
        print(f"voicegate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _signal_event(*signums: signal.Signals) -> threading.Event:
    """An event set (and logged) when one of ``signums`` arrives."""
    event = threading.Event()

    def handler(signum: int, _frame) -> None:
        event.set()
        # Not logged here: the handler runs on the main thread between two bytecodes, possibly while
        # that thread is inside a log call holding structlog's (non-reentrant) write lock; logging
        # from the handler then waited for that lock forever (a gateway that ignored SIGTERM, seen
        # about once in ten starts). Another thread takes the lock once the main thread lets go.
        threading.Thread(target=log.info, args=("signal_received",), kwargs={"signal": signal.Signals(signum).name},
                         name="signal-log", daemon=True).start()

    for signum in signums:
        signal.signal(signum, handler)
    return event


def _stop_event() -> threading.Event:
    return _signal_event(signal.SIGINT, signal.SIGTERM)


def _drain_event() -> threading.Event:
    """SIGUSR1: drain (no new calls, exit 0 once the calls up have ended); SIGTERM still stops at once."""
    return _signal_event(signal.SIGUSR1)


def _start(config):
    from gateway.app import Gateway  # imports pjsua2: keep check-config light

    try:
        gateway = Gateway(config)  # loads and warms up the models, if any agent needs them
        gateway.start()
    except (OSError, RuntimeError) as exc:  # a busy port, a missing or corrupt model package
        log.error("gateway_start_failed", error=str(exc), kind=type(exc).__name__)
        return None
    return gateway


def _run(config, hint_for: str | None = None) -> int:
    stop = _stop_event()
    drain = _drain_event()
    gateway = _start(config)
    if gateway is None:
        return 1
    if hint_for is not None:
        _try_it_hint(config, hint_for)
    try:
        while not stop.wait(0.2):
            if drain.is_set():
                gateway.drain()
            if gateway.drained:
                log.info("gateway_drained")
                break
            if gateway.drain_expired:
                log.warning("gateway_drain_timeout", active_calls=gateway.calls.active_count)
                break
    finally:
        gateway.stop()
    return 0


def _try_it_hint(config, path: str) -> None:
    """For a person at the terminal (console logs): how to talk to what just started."""
    listen = config.sip.listen
    host = config.sip.public_address if listen.host in ("0.0.0.0", "::") else listen.host
    voicegate = sys.argv[0] if Path(sys.argv[0]).name == "voicegate" else f"{sys.executable} -m gateway.cli"
    config_arg = "" if Path(path) == Path("configs/default.yaml") else f" --config {path}"
    chat = f"  {voicegate} chat{config_arg}\n" if config.needs_models else ""
    print(f"\nready: point a softphone at sip:voicegate@{host}:{listen.port}, or in another terminal:\n"
          f'  {voicegate} dial{config_arg} --say "What are your opening hours?"\n{chat}', file=sys.stderr,
          flush=True)


def _call(config, uri: str, account: str | None, agent: str | None) -> int:
    stop = _stop_event()
    gateway = _start(config)
    if gateway is None:
        return 1
    ended: dict[str, tuple[int, str, bool]] = {}
    done = threading.Event()

    def on_end(call, code: int, reason: str) -> None:
        ended[call.call_id] = (code, reason, call.confirmed)
        done.set()

    gateway.calls.on_ended(on_end)
    try:
        call_id = gateway.originate(uri, account, agent).result(timeout=10)
        log.info("call_placed", call_id=call_id, uri=uri)
        while call_id not in ended and not stop.is_set():
            done.wait(0.5)
            done.clear()
    except Exception as exc:
        log.error("call_failed", uri=uri, error=str(exc))
        return 1
    finally:
        gateway.stop()
    if call_id in ended:
        code, reason, confirmed = ended[call_id]
        return 0 if confirmed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
