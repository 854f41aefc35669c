"""Parsing tool calls out of a small model's replies: the shapes it really writes, and the ways it gets them wrong."""

import ctypes
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tools import ToolCall, ToolCallDetector, ToolCallParse, load_tools, parse_tool_call, tool_call_grammar

SPECS = load_tools(
    [
        {"transfer": {"targets": {"billing": "sip:2003@pbx.example.com", "operator": "sip:2000@pbx.example.com"}}},
        "hangup",
        "send_dtmf",
        "take_message",
        {
            "http": {
                "name": "order_status",
                "description": "Look up an order",
                "url": "https://crm.local/orders/{order_id}",
                "parameters": {"order_id": {"type": "string", "description": "The order number"}},
            }
        },
    ]
).specs

BILLING = ToolCall("transfer", {"target": "billing"})
HANGUP = ToolCall("hangup", {})

# (reply, expected call, expected speech): replies in the shapes 0.5B models produce.
VALID = [
    (
        'Sure, let me transfer you to billing.\nCALL {"tool": "transfer", "arguments": {"target": "billing"}}',
        BILLING,
        "Sure, let me transfer you to billing.",
    ),
    (
        'One moment please. CALL {"tool": "transfer", "arguments": {"target": "billing"}}',
        BILLING,
        "One moment please.",
    ),
    (
        'I\'ll connect you now.\n```json\n{"tool": "transfer", "arguments": {"target": "billing"}}\n```',
        BILLING,
        "I'll connect you now.",
    ),
    ('```json {"tool": "transfer", "arguments": {"target": "billing"}}```', BILLING, ""),
    ('```\nCALL {"tool": "transfer", "arguments": {"target": "billing"}}\n```', BILLING, ""),
    ('Goodbye!\n<tool_call>\n{"name": "hangup", "arguments": {}}\n</tool_call>', HANGUP, "Goodbye!"),
    ('Goodbye! <tool_call>{"name": "hangup", "arguments": {}}', HANGUP, "Goodbye!"),  # closing tag never came
    ('<tool_call>CALL {"tool": "hangup", "arguments": {}}</tool_call>', HANGUP, ""),
    ("CALL {'tool': 'transfer', 'arguments': {'target': 'billing',},}", BILLING, ""),
    ('CALL {tool: "transfer", arguments: {target: billing}}', BILLING, ""),
    ('CALL {"tool": "transfer", "args": {"target": "billing"}}', BILLING, ""),
    ('CALL {"name": "transfer", "parameters": {"target": "billing"}}', BILLING, ""),
    ('CALL {"tool": "transfer", "arguments": "{\\"target\\": \\"billing\\"}"}', BILLING, ""),
    ('CALL {"tool": "transfer", "target": "billing"}', BILLING, ""),  # arguments next to the name
    (
        '{"type": "function", "function": {"name": "transfer", "arguments": "{\\"target\\": \\"billing\\"}"}}',
        BILLING,
        "",
    ),
    ('CALL {"transfer": {"target": "billing"}}', BILLING, ""),
    ('CALL {"tool": "Transfer", "arguments": {"target": "BILLING"}}', BILLING, ""),
    ('CALL {"tool": "functions.transfer", "arguments": {"target": "billing"}}', BILLING, ""),
    ('Okay, transferring. transfer(target="billing")', BILLING, "Okay, transferring."),
    ("transfer('billing')", BILLING, ""),
    ("CALL transfer(target=billing)", BILLING, ""),
    ('CALL transfer(target: "billing")', BILLING, ""),
    ('CALL transfer {"target": "billing"}', BILLING, ""),
    ("CALL: hangup()", HANGUP, ""),
    ('Connecting you. call: {"tool":"transfer","arguments":{"target":"billing"}}', BILLING, "Connecting you."),
    (
        'CALL {"tool": "hangup", "arguments": {}}\nThank you for calling, goodbye!',
        HANGUP,
        "Thank you for calling, goodbye!",
    ),
    ('CALL {"tool": "hangup", "arguments": null}', HANGUP, ""),
    ('CALL {"tool": "hangup"}', HANGUP, ""),
    ('CALL {"tool": "send-dtmf", "arguments": {"digits": 1234}}', ToolCall("send_dtmf", {"digits": "1234"}), ""),
    (
        "CALL {'tool': 'take_message', 'arguments': {'message': 'Running late, call me', 'name': None}}",
        ToolCall("take_message", {"message": "Running late, call me"}),
        "",
    ),
    (
        'I\'ll note that. CALL {"tool": "take_message", "arguments": {"message": "Invoice 12 is wrong", '
        '"name": "Maria", "callback_number": 5550199}}',
        ToolCall("take_message", {"message": "Invoice 12 is wrong", "name": "Maria", "callback_number": "5550199"}),
        "I'll note that.",
    ),
    (
        "Let me look that up. CALL {\u201ctool\u201d: \u201corder_status\u201d, \u201carguments\u201d: "
        "{\u201corder_id\u201d: 4711}}",
        ToolCall("order_status", {"order_id": "4711"}),
        "Let me look that up.",
    ),
]

# (reply, error fragment, expected speech): call attempts that must not be executed.
INVALID = [
    (
        'Let me transfer you.\nCALL {"tool": "transfer", "arguments": {"target": "bil',
        "incomplete tool call (truncated JSON)",
        "Let me transfer you.",
    ),
    ('CALL {"tool": "transfer", "arguments": {"target": "billing"}', "incomplete tool call", ""),
    ('Sure. {"tool": "hangup", "arguments": {', "incomplete tool call", "Sure."),
    ("One moment. transfer(target='billing'", "incomplete tool call (unclosed parenthesis)", "One moment."),
    (
        'I can book that. CALL {"tool": "book_appointment", "arguments": {"date": "tomorrow"}}',
        "unknown tool 'book_appointment' (available: transfer, hangup, send_dtmf, take_message, order_status)",
        "I can book that.",
    ),
    ("Let me check. lookup_order(id=5)", "unknown tool 'lookup_order'", "Let me check."),
    (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        "unknown tool 'get_weather'",
        "",
    ),
    (
        'CALL {"tool": "transfer", "arguments": {"department": "billing"}}',
        "transfer: unknown argument 'department' (expected: target)",
        "",
    ),
    ('CALL {"tool": "transfer", "arguments": {}}', "transfer: missing required argument 'target'", ""),
    ('CALL {"tool": "transfer", "arguments": {"target": "sales"}}', "'sales' is not one of billing, operator", ""),
    ('CALL {"tool": "transfer", "arguments": ["billing"]}', "arguments must be an object", ""),
    ('CALL {"tool": "send_dtmf", "arguments": {"digits": "one two"}}', "does not match", ""),
    ('CALL {"tool": "take_message", "arguments": {"message": "' + "blah " * 120 + '"}}', "too long", ""),
    ('CALL {"tool": "transfer", "arguments": {"target": billing department}}', "invalid JSON", ""),
    ('CALL {"tool": "transfer", "arguments": "{target: "}', "arguments are not valid JSON", ""),
    ('CALL {"target": "billing"}', 'no "tool" name', ""),
    ("Sure.\nCALL transfer to billing", "CALL must be followed by", "Sure."),
    ("Sure.\nCALL", "CALL must be followed by", "Sure."),
    ("<tool_call></tool_call> Anything else?", "empty tool_call", "Anything else?"),
    ("transfer(target=billing, extra=1, **more)", "malformed tool call transfer(...)", ""),
    ("transfer('billing', 'now')", "2 positional arguments, the tool takes 1", ""),
]

# Replies without any call: everything is speech, and nothing is an error.
SPEECH = [
    "Our office is open from nine to five. Please call us tomorrow.",
    "I can transfer you to billing if you like.",
    "Sure, I'll call you back.",
    "PLEASE CALL US AGAIN.",
    "Your code is {SAVE10}.",
    "That costs 5 dollars (plus tax).",
]


@pytest.mark.parametrize(("reply", "call", "speech"), VALID)
def test_valid_calls(reply, call, speech):
    result = parse_tool_call(reply, SPECS)
    assert (result.call, result.error, result.speech) == (call, None, speech)
    assert result.unspoken == speech


@pytest.mark.parametrize(("reply", "error", "speech"), INVALID)
def test_invalid_calls_are_errors_never_calls(reply, error, speech):
    result = parse_tool_call(reply, SPECS)
    assert result.call is None
    assert result.error is not None and error in result.error
    assert result.speech == speech  # the JSON never reaches TTS


@pytest.mark.parametrize("reply", SPEECH)
def test_plain_speech(reply):
    assert parse_tool_call(reply, SPECS) == ToolCallParse(call=None, speech=reply, error=None, notes=(), unspoken=reply)


def test_only_the_first_valid_call_counts():
    two = (
        'Transferring you, goodbye. CALL {"tool": "transfer", "arguments": {"target": "billing"}}\n'
        'CALL {"tool": "hangup", "arguments": {}}'
    )
    result = parse_tool_call(two, SPECS)
    assert result.call == BILLING and result.error is None
    assert result.notes == ("ignored a second tool call: hangup",)
    assert result.speech == "Transferring you, goodbye."


def test_an_invalid_first_attempt_does_not_hide_a_valid_second():
    reply = (
        'CALL {"tool": "transfer", "arguments": {"target": "sales"}}\n'
        'CALL {"tool": "transfer", "arguments": {"target": "billing"}}'
    )
    result = parse_tool_call(reply, SPECS)
    assert result.call == BILLING and result.error is None
    assert len(result.notes) == 1 and "ignored an invalid tool call" in result.notes[0] and "sales" in result.notes[0]


def test_no_tools_configured():
    result = parse_tool_call('CALL {"tool": "hangup", "arguments": {}}', {})
    assert result.call is None and result.error == "unknown tool 'hangup' (available: none)"
    assert parse_tool_call("Hello there.", {}).speech == "Hello there."


# -- streaming ----------------------------------------------------------------------------------

STREAM_CORPUS = [r for r, _, _ in VALID] + [r for r, _, _ in INVALID] + SPEECH
_MARKER_LEAKS = re.compile(r"\{|\bCALL\b|<tool_call>|```|\w+\(")


def stream(reply: str, cuts: list[int]) -> tuple[list[str], ToolCallParse]:
    detector = ToolCallDetector(SPECS)
    bounds = [0, *sorted(set(c % (len(reply) + 1) for c in cuts)), len(reply)]
    spoken = [detector.feed(reply[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return spoken, detector.finish()


def llm_tokens(text: str) -> list[str]:
    """Roughly how an LLM streams: words with their leading space, punctuation split off."""
    return re.findall(r"\s*(?:\w+|[^\w\s])", text)


@pytest.mark.parametrize("reply", STREAM_CORPUS)
def test_streaming_matches_parsing_and_never_speaks_a_call(reply):
    detector = ToolCallDetector(SPECS)
    spoken = [detector.feed(t) for t in llm_tokens(reply)]
    result = detector.finish()
    expected = parse_tool_call(reply, SPECS)
    assert (result.call, result.error, result.speech, result.notes) == (
        expected.call,
        expected.error,
        expected.speech,
        expected.notes,
    )
    assert " ".join(("".join(spoken) + " " + result.unspoken).split()) == expected.speech
    if expected.call or expected.error:
        assert not _MARKER_LEAKS.search("".join(spoken)), spoken


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STREAM_CORPUS), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_streaming_with_arbitrary_piece_boundaries(reply, cuts):
    spoken, result = stream(reply, cuts)
    expected = parse_tool_call(reply, SPECS)
    assert (result.call, result.error) == (expected.call, expected.error)
    assert " ".join(("".join(spoken) + " " + result.unspoken).split()) == expected.speech
    if expected.call or expected.error:
        assert not _MARKER_LEAKS.search("".join(spoken))


def test_speech_before_a_call_goes_out_immediately():
    detector = ToolCallDetector(SPECS)
    assert detector.feed("Sure, one moment.") == "Sure, one moment."
    assert detector.feed("\nCA") == "\n"
    assert detector.feed('LL {"tool": "transfer", ') == ""
    assert detector.feed('"arguments": {"target": "billing"}}') == ""
    result = detector.finish()
    assert result.call == BILLING and result.unspoken == "" and result.speech == "Sure, one moment."


def test_a_held_back_word_is_released_when_it_is_not_a_call():
    detector = ToolCallDetector(SPECS)
    assert detector.feed("Let me trans") == "Let me "
    assert detector.feed("fer you") == "transfer "
    assert detector.feed(" now. I will call") == "you now. I will "
    assert detector.feed(" you back.") == "call you back."
    assert detector.feed(" <") == " "
    assert detector.feed("3") == "<"
    result = detector.finish()
    assert result.unspoken == "3" and result.call is None and result.error is None


def test_text_after_a_marker_that_was_no_call_is_returned_by_finish():
    detector = ToolCallDetector(SPECS)
    assert detector.feed("Your code is ") == "Your code is "
    assert detector.feed("{SAVE10}, enjoy.") == ""
    assert detector.finish().unspoken == "{SAVE10}, enjoy."


def test_feed_after_finish_is_a_bug():
    detector = ToolCallDetector(SPECS)
    detector.finish()
    with pytest.raises(RuntimeError):
        detector.feed("more")


# -- grammar ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grammar_checker():
    """``accepts(grammar, text)``: whether llama.cpp's grammar sampler lets a model generate exactly ``text``.

    Uses the tiny test model's vocabulary only (no weights evaluated): each token of ``text`` is
    offered to the grammar sampler alone and must survive, then end-of-sequence must be allowed.
    """
    llama_cpp = pytest.importorskip("llama_cpp")
    from models.registry import WeightsError, resolve_test_llm

    try:
        path = resolve_test_llm()
    except WeightsError as e:
        pytest.skip(f"test LLM weights not installed: {e}")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llm._model.vocab

    def compile_grammar(grammar: str):
        return llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")

    def accepts(grammar: str, text: str) -> bool:
        sampler = compile_grammar(grammar)
        assert sampler, "the grammar does not compile"
        try:
            tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
            for token in [*tokens, llama_cpp.llama_vocab_eos(vocab)]:
                data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
                candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                if data[0].logit == float("-inf"):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    accepts.compiles = lambda grammar: bool(compile_grammar(grammar))  # type: ignore[attr-defined]
    return accepts


GRAMMAR_ACCEPTS = [
    "Hello, how can I help you?",
    "Sure.\nAnything else?",
    'CALL {"tool": "hangup", "arguments": {}}',
    'Sure, one moment.\nCALL {"tool": "transfer", "arguments": {"target": "billing"}}',
    'CALL {"tool":"transfer","arguments":{"target":"operator"}}',
    'CALL {"tool": "send_dtmf", "arguments": {"digits": "12#*A"}}',
    'CALL {"tool": "take_message", "arguments": {"message": "Say \\"hi\\"\\n", "callback_number": "555"}}',
    'CALL {"tool": "take_message", "arguments": {"message": "x", "name": "Bob", "callback_number": "1"}}',
    'CALL {"tool": "order_status", "arguments": {"order_id": "A-4711"}}',
    "CAL",
]
GRAMMAR_REJECTS = [
    'CALL {"tool": "transfer", "arguments": {"target": "sales"}}',  # not an enum value
    'CALL {"tool": "book", "arguments": {}}',  # hallucinated tool
    'CALL {"tool": "transfer", "arguments": {"department": "billing"}}',  # wrong argument name
    'CALL {"tool": "take_message", "arguments": {"name": "Bob"}}',  # required argument missing
    'CALL {"tool": "send_dtmf", "arguments": {"digits": "one"}}',
    'CALL {"tool": "hangup", "arguments": {}}\nGoodbye!',  # nothing after the call
    'CALL {"tool": "hangup", "arguments": {}}\nCALL {"tool": "hangup", "arguments": {}}',  # one call only
    "CALL me maybe",
    'CALL {"tool": "transfer", "arguments": {"target": "billing"}',  # truncated
]


def test_grammar_accepts_speech_and_well_formed_calls(grammar_checker):
    grammar = tool_call_grammar(SPECS)
    for text in GRAMMAR_ACCEPTS:
        assert grammar_checker(grammar, text), text
        result = parse_tool_call(text, SPECS)
        assert result.error is None, text  # whatever the grammar allows, the parser accepts


def test_grammar_rejects_what_the_parser_would_reject(grammar_checker):
    grammar = tool_call_grammar(SPECS)
    for text in GRAMMAR_REJECTS:
        assert not grammar_checker(grammar, text), text


def test_grammar_without_tools_and_with_all_optional_parameters(grammar_checker):
    assert grammar_checker(tool_call_grammar({}), "Just talking.\nStill talking.")
    assert not grammar_checker(tool_call_grammar({}), 'CALL {"tool": "hangup", "arguments": {}}')
    specs = load_tools(
        [
            {
                "http": {
                    "name": "search",
                    "url": "http://x/",
                    "parameters": {"q": {"required": False}, "n": {"type": "integer", "required": False}},
                }
            }
        ]
    ).specs
    grammar = tool_call_grammar(specs)
    for args in ("{}", '{"q": "a"}', '{"n": -3}', '{"q": "a", "n": 2}'):
        assert grammar_checker(grammar, f'CALL {{"tool": "search", "arguments": {args}}}'), args
    assert not grammar_checker(grammar, 'CALL {"tool": "search", "arguments": {"n": 2, "q": "a"}}')
    assert not grammar_checker(grammar, 'CALL {"tool": "search", "arguments": {, "n": 2}}')


def test_broken_grammar_is_detected(grammar_checker):
    assert not grammar_checker.compiles("root ::= undefined-rule")
