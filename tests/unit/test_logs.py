"""Log rendering follows where the lines go: coloured console lines on a terminal, JSON elsewhere."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from gateway.logs import LogFormat, configure_logging, resolve_format


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_structlog():
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def log_one(stream: io.StringIO, log_format: LogFormat = LogFormat.AUTO) -> str:
    chosen = configure_logging("info", stream, log_format)
    structlog.get_logger("test").bind(call_id="c-1").info("call_started", agent="front-desk")
    return f"{chosen}|{stream.getvalue()}"


def test_a_pipe_gets_one_json_object_per_line():
    chosen, text = log_one(io.StringIO()).split("|", 1)
    assert chosen == "json"
    entry = json.loads(text.strip())
    assert entry["event"] == "call_started" and entry["call_id"] == "c-1" and entry["level"] == "info"
    assert entry["timestamp"].endswith("Z")


def test_a_terminal_gets_coloured_readable_lines():
    chosen, text = log_one(Terminal()).split("|", 1)
    assert chosen == "console"
    assert "\033[" in text  # ANSI colours
    plain = text
    for code in ("\033[0m", "\033[1m", "\033[2m", "\033[32m", "\033[36m", "\033[35m"):
        plain = plain.replace(code, "")
    assert "call_started" in plain and "call_id=c-1" in plain and "agent=front-desk" in plain
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip())


def test_log_format_json_wins_over_a_terminal():
    chosen, text = log_one(Terminal(), LogFormat.JSON).split("|", 1)
    assert chosen == "json"
    assert json.loads(text.strip())["event"] == "call_started"


def test_console_can_be_forced_into_a_pipe():
    assert resolve_format(LogFormat.CONSOLE, io.StringIO()) is LogFormat.CONSOLE
    assert resolve_format(LogFormat.AUTO, io.StringIO()) is LogFormat.JSON


def test_levels_below_the_configured_one_are_dropped():
    stream = io.StringIO()
    configure_logging("warning", stream, LogFormat.JSON)
    log = structlog.get_logger("test")
    log.info("quiet")
    log.warning("loud")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["loud"]
