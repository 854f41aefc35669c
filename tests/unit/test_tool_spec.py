"""Tool specs, argument validation (forgiving only where the intent is clear), the tools: config and the prompt."""

import pytest

from gateway.tools import (
    HttpToolConfig,
    ToolError,
    ToolSpec,
    hangup_spec,
    load_tools,
    send_dtmf_spec,
    take_message_spec,
    tool_instructions,
    transfer_spec,
    validate_arguments,
)

# The example from the docs, as yaml.safe_load returns it.
TOOLS_YAML = [
    {"transfer": {"targets": {"billing": "sip:2003@pbx.example.com", "operator": "sip:2000@pbx.example.com"}}},
    "hangup",
    "send_dtmf",
    "take_message",
    {
        "http": {
            "name": "order_status",
            "description": "Look up an order",
            "method": "GET",
            "url": "https://crm.local/orders/{order_id}",
            "headers": {"Authorization": "Bearer ${CRM_TOKEN}"},
            "parameters": {"order_id": {"type": "string", "description": "The order number"}},
            "timeout_s": 5,
        }
    },
]

NUMBERS = ToolSpec(
    "book",
    "Book a table",
    {
        "people": {"type": "integer", "description": "How many"},
        "budget": {"type": "number", "description": "Per person"},
        "outside": {"type": "boolean", "description": "Terrace"},
        "note": {"type": "string", "description": "Anything else"},
    },
    required=("people",),
)


def test_builtin_specs():
    transfer = transfer_spec({"billing": "sip:2003@pbx", "operator": "sip:2000@pbx"})
    assert transfer.parameters["target"]["enum"] == ["billing", "operator"]
    assert "sip:" not in repr(transfer)  # the dial plan is not the model's business
    assert transfer.required == ("target",)
    assert hangup_spec().parameters == {} and hangup_spec().required == ()
    assert send_dtmf_spec().required == ("digits",)
    assert take_message_spec().required == ("message",)
    assert take_message_spec().json_schema() == {
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "The message"},
            "name": {"type": "string", "description": "The caller's name"},
            "callback_number": {"type": "string", "description": "Number to call back"},
        },
        "required": ["message"],
        "additionalProperties": False,
    }
    with pytest.raises(ToolError):
        transfer_spec({})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"people": 4}, {"people": 4}),
        ({"people": "42"}, {"people": 42}),  # models quote numbers
        ({"people": 4.0}, {"people": 4}),
        ({"people": " 1,200 "}, {"people": 1200}),
        ({"people": 2, "budget": "30.5"}, {"people": 2, "budget": 30.5}),
        ({"people": 2, "budget": "30"}, {"people": 2, "budget": 30}),
        ({"people": 2, "outside": "true"}, {"people": 2, "outside": True}),
        ({"people": 2, "outside": "No"}, {"people": 2, "outside": False}),
        ({"people": 2, "outside": 1}, {"people": 2, "outside": True}),
        ({"people": 2, "note": 7}, {"people": 2, "note": "7"}),  # ints to str for strings
        ({"people": 2, "note": "  window seat "}, {"people": 2, "note": "window seat"}),
        ({"people": 2, "note": None}, {"people": 2}),  # null for "don't know": dropped
    ],
)
def test_validation_coerces_unambiguous_values(args, expected):
    assert validate_arguments(NUMBERS, args) == expected


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({}, "missing required argument 'people'"),
        ({"people": None}, "missing required argument 'people'"),
        ({"people": 2, "guests": 3}, "unknown argument 'guests' (expected: people, budget, outside, note)"),
        ({"people": "four"}, "argument 'people': expected an integer"),
        ({"people": 2.5}, "argument 'people': expected an integer"),
        ({"people": True}, "argument 'people': expected an integer"),  # a bool is never a number
        ({"people": 2, "budget": "cheap"}, "argument 'budget': expected a number"),
        ({"people": 2, "budget": "nan"}, "argument 'budget': expected a number"),
        ({"people": 2, "outside": "maybe"}, "argument 'outside': expected true or false"),
        ({"people": 2, "note": True}, "argument 'note': expected a string"),
        ({"people": 2, "note": ["a"]}, "argument 'note': expected a string"),
        ({"people": 2, "note": "x" * 501}, "argument 'note': too long (501 characters, at most 500)"),
    ],
)
def test_validation_rejects_with_a_reason(args, reason):
    with pytest.raises(ToolError) as e:
        validate_arguments(NUMBERS, args)
    assert str(e.value).startswith("book: ")
    assert reason in str(e.value)


def test_validation_of_non_objects():
    assert validate_arguments(hangup_spec(), None) == {}
    with pytest.raises(ToolError, match="arguments must be an object, got list"):
        validate_arguments(hangup_spec(), ["billing"])
    with pytest.raises(ToolError, match="unknown argument 'reason'"):
        validate_arguments(hangup_spec(), {"reason": "done"})


def test_enum_matching_is_case_insensitive_and_normalized():
    spec = transfer_spec({"billing": "sip:1@x", "Front Desk": "sip:2@x"})
    assert validate_arguments(spec, {"target": "BILLING"}) == {"target": "billing"}
    assert validate_arguments(spec, {"target": "front desk"}) == {"target": "Front Desk"}
    with pytest.raises(ToolError, match="'sales' is not one of billing, Front Desk"):
        validate_arguments(spec, {"target": "sales"})


def test_dtmf_digits_pattern():
    spec = send_dtmf_spec()
    assert validate_arguments(spec, {"digits": "1*2#A"}) == {"digits": "1*2#A"}
    assert validate_arguments(spec, {"digits": 123}) == {"digits": "123"}
    with pytest.raises(ToolError, match="does not match"):
        validate_arguments(spec, {"digits": "one"})
    with pytest.raises(ToolError, match="too long"):
        validate_arguments(spec, {"digits": "1" * 21})


def test_spec_definition_errors():
    with pytest.raises(ToolError, match="tool name"):
        ToolSpec("Transfer Call", "x")
    with pytest.raises(ToolError, match="type must be one of"):
        ToolSpec("t", "x", {"a": {"type": "array"}})
    with pytest.raises(ToolError, match="required"):
        ToolSpec("t", "x", {"a": {}}, required=("b",))
    with pytest.raises(ToolError, match="enum value expected an integer"):
        ToolSpec("t", "x", {"a": {"type": "integer", "enum": ["one"]}})
    assert ToolSpec("t", "x", {"a": {}}).parameters == {"a": {"type": "string", "description": ""}}


def test_load_tools_from_the_documented_yaml():
    tools = load_tools(TOOLS_YAML)
    assert list(tools.specs) == ["transfer", "hangup", "send_dtmf", "take_message", "order_status"]
    assert tools.transfer_targets == {"billing": "sip:2003@pbx.example.com", "operator": "sip:2000@pbx.example.com"}
    order = tools.http["order_status"]
    assert order.method == "GET" and order.timeout_s == 5 and order.path_params == ["order_id"]
    assert tools.specs["order_status"].required == ("order_id",)


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        (["fax"], "unknown tool 'fax'"),
        (["hangup", "hangup"], "defined twice"),
        (["transfer"], "transfer needs targets"),
        ([{"transfer": {"targets": {}}}], "transfer needs targets"),
        ([{"hangup": {"x": 1}}], "hangup takes no options"),
        ([{"http": {"name": "hangup", "url": "http://x/"}}], "is a built-in tool"),
        ([{"http": {"name": "x", "url": "http://x/", "verb": "GET"}}], "unknown keys ['verb']"),
        ([{"http": {"name": "x", "url": "ftp://x/"}}], "http:// or https://"),
        ([{"http": {"name": "x", "url": "${BASE}/orders"}}], "http:// or https://"),
        ([{"http": {"name": "x", "url": "http://x/", "method": "PATCH"}}], "method must be one of"),
        ([{"http": {"name": "x", "url": "http://x/{id}"}}], "placeholders ['id'] are not parameters"),
        (
            [{"http": {"name": "x", "url": "http://x/{id}", "parameters": {"id": {"required": False}}}}],
            "must be required",
        ),
        ([{"http": {"name": "x", "url": "http://x/", "timeout_s": 0}}], "timeout_s"),
        ([{"a": 1, "b": 2}], "one-key mapping"),
    ],
)
def test_load_tools_errors(items, reason):
    with pytest.raises(ToolError, match="tools\\[") as e:
        load_tools(items)
    assert reason in str(e.value)


def test_http_config_repr_masks_secrets():
    config = HttpToolConfig(
        "crm",
        "CRM",
        "https://bob:hunter22@crm.local/orders/{id}?api_key=literal-secret&page={page}",
        headers={"Authorization": "Bearer literal-token-123", "X-Api-Key": "${CRM_KEY}"},
        parameters={"id": {}, "page": {"type": "integer"}},
    )
    text = repr(config)
    for secret in ("hunter22", "literal-secret", "literal-token-123", "CRM_KEY"):
        assert secret not in text
    assert "crm.local/orders/{id}" in text and "page={page}" in text and "Authorization" in text


def test_prompt_lists_tools_compactly():
    text = tool_instructions(load_tools(TOOLS_YAML).specs)
    lines = text.splitlines()
    assert "- transfer(target: billing|operator) \u2014 Transfer the caller to a person or department" in lines
    assert "- hangup() \u2014 End the call after saying goodbye" in lines
    assert "- take_message(message, name?, callback_number?) \u2014 Take a message for the staff" in lines
    assert "- order_status(order_id) \u2014 Look up an order" in lines
    assert 'CALL {"tool": "transfer", "arguments": {"target": "billing"}}' in lines  # an example it can copy
    assert any("short sentence to the caller" in line for line in lines)
    words = len(text.split())
    assert words <= 120, f"{words} words: small models lose the thread of long prompts"
    assert tool_instructions({}) == ""


def test_prompt_trims_long_descriptions_and_shows_types():
    spec = ToolSpec(
        "book",
        "Book a table at the restaurant for the caller and their guests, at a time they choose. Confirms by SMS.",
        {"people": {"type": "integer"}, "vip": {"type": "boolean"}},
        required=("people",),
    )
    text = tool_instructions({"book": spec})
    assert (
        "- book(people: integer, vip?: boolean) \u2014 Book a table at the restaurant for the caller and"
        in text.splitlines()
    )
    assert 'CALL {"tool": "book", "arguments": {"people": 1}}' in text
