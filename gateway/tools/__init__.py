"""Tools the conversation agent's LLM may call: specs, parsing its replies, prompt text, HTTP tools.

The LLM never acts directly: its reply is parsed (:func:`parse_tool_call` or the streaming
:class:`ToolCallDetector`), the call is validated against a :class:`ToolSpec`, and only then
does the agent transfer, hang up, send DTMF, take a message or run an HTTP tool.
"""

from gateway.tools.http_tool import ToolResult, run_http_tool
from gateway.tools.parse import (
    TOOL_CHOICE_NONE,
    ToolCall,
    ToolCallDetector,
    ToolCallParse,
    parse_tool_call,
    tool_call_grammar,
    tool_choice_grammar,
)
from gateway.tools.prompt import tool_instructions, tool_signature
from gateway.tools.spec import (
    BUILTIN_TOOLS,
    HttpToolConfig,
    ToolError,
    ToolsConfig,
    ToolSpec,
    hangup_spec,
    load_tools,
    send_dtmf_spec,
    take_message_spec,
    transfer_spec,
    validate_arguments,
)

__all__ = [
    "BUILTIN_TOOLS",
    "TOOL_CHOICE_NONE",
    "HttpToolConfig",
    "ToolCall",
    "ToolCallDetector",
    "ToolCallParse",
    "ToolError",
    "ToolResult",
    "ToolSpec",
    "ToolsConfig",
    "hangup_spec",
    "load_tools",
    "parse_tool_call",
    "run_http_tool",
    "send_dtmf_spec",
    "take_message_spec",
    "tool_call_grammar",
    "tool_choice_grammar",
    "tool_instructions",
    "tool_signature",
    "transfer_spec",
    "validate_arguments",
]
