"""harmony: rendering is character-exact against hand-written strings; parsing never raises.

The expected strings below are typed by hand from harmony's documented format (SPEC.md,
openai/harmony docs/format.md and test-data/), not produced by our renderer.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptoss_edu import harmony as h
from gptoss_edu.tokenizer.o200k import o200k_harmony

SYSTEM_HIGH_DATED = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: 2025-06-28\n"
    "\n"
    "Reasoning: high\n"
    "\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
)
TOOLS_LINE = "\nCalls to these tools must go to the commentary channel: 'functions'."


@pytest.fixture(scope="module")
def tok():
    return o200k_harmony()


@pytest.fixture(scope="module")
def tok_py():
    return o200k_harmony(engine="python")


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
    },
    "required": ["location"],
}

KITCHEN_SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "description": "How many"},
        "ratio": {"type": "number", "default": 0.5},
        "verbose": {"type": "boolean", "default": False},
        "tags": {"type": "array", "items": {"type": "string"}},
        "mode": {"type": "string", "default": "fast"},
        "options": {
            "type": "object",
            "properties": {"units": {"type": "string", "enum": ["metric", "imperial"]}},
            "required": ["units"],
        },
    },
    "required": ["count", "tags"],
}


def tools_conversation():
    return [
        h.system(reasoning_effort="high", current_date="2025-06-28"),
        h.developer(
            "Always respond in riddles",
            [
                h.Tool("get_location", "Gets the location of the user."),
                h.Tool(
                    "get_current_weather",
                    "Gets the current weather in the provided location.",
                    WEATHER_SCHEMA,
                ),
                {
                    "type": "function",
                    "function": {
                        "name": "kitchen",
                        "description": "Line one.\nLine two.",
                        "parameters": KITCHEN_SCHEMA,
                    },
                },
            ],
        ),
        h.user("What is the weather like in SF?"),
    ]


TOOLS_EXPECTED = (
    SYSTEM_HIGH_DATED + TOOLS_LINE + "<|end|>"
    "<|start|>developer<|message|># Instructions\n"
    "\n"
    "Always respond in riddles\n"
    "\n"
    "# Tools\n"
    "\n"
    "## functions\n"
    "\n"
    "namespace functions {\n"
    "\n"
    "// Gets the location of the user.\n"
    "type get_location = () => any;\n"
    "\n"
    "// Gets the current weather in the provided location.\n"
    "type get_current_weather = (_: {\n"
    "// The city and state, e.g. San Francisco, CA\n"
    "location: string,\n"
    'format?: "celsius" | "fahrenheit", // default: celsius\n'
    "}) => any;\n"
    "\n"
    "// Line one.\n"
    "// Line two.\n"
    "type kitchen = (_: {\n"
    "// How many\n"
    "count: number,\n"
    "ratio?: number, // default: 0.5\n"
    "verbose?: boolean, // default: false\n"
    "tags: string[],\n"
    'mode?: string, // default: "fast"\n'
    "options?: {\n"
    '    units: "metric" | "imperial",\n'
    "    },\n"
    "}) => any;\n"
    "\n"
    "} // namespace functions<|end|>"
    "<|start|>user<|message|>What is the weather like in SF?<|end|>"
    "<|start|>assistant"
)


def test_system_and_user_completion_prompt():
    conv = [h.system(reasoning_effort="high", current_date="2025-06-28"), h.user("What is 2 + 2?")]
    expected = (
        SYSTEM_HIGH_DATED + "<|end|><|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant"
    )
    assert h.render(conv) == expected


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_reasoning_effort_and_defaults(effort):
    # default: knowledge cutoff 2024-06, no date line
    text = h.render([h.system(reasoning_effort=effort)], for_completion=False)
    assert text == (
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\n\n"
        f"Reasoning: {effort}\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
    )


def test_default_reasoning_is_medium_and_bad_effort_raises():
    assert "Reasoning: medium" in h.render([h.system()])
    with pytest.raises(ValueError, match="reasoning_effort"):
        h.system(reasoning_effort="extreme")


def test_developer_instructions_only():
    text = h.render([h.developer("Answer like a robot.")], for_completion=False)
    assert text == "<|start|>developer<|message|># Instructions\n\nAnswer like a robot.<|end|>"


def test_function_tools_namespace():
    assert h.render(tools_conversation()) == TOOLS_EXPECTED


def test_render_tokens_equal_encoding_the_expected_text(tok, tok_py):
    want = tok.encoding.encode(TOOLS_EXPECTED, allowed_special="all")
    assert h.render_tokens(tools_conversation(), tok) == want
    assert h.render_tokens(tools_conversation(), tok_py) == want


def test_tool_call_loop_keeps_analysis():
    conv = [
        h.user("What is the weather in SF?"),
        h.assistant("User asks for weather. Use lookup_weather.", channel="analysis"),
        h.tool_call("lookup_weather", '{"location": "San Francisco"}'),
        h.tool_result("lookup_weather", {"temperature": 20, "description": "sunny"}),
    ]
    expected = (
        "<|start|>user<|message|>What is the weather in SF?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>User asks for weather. Use lookup_weather.<|end|>"
        "<|start|>assistant to=functions.lookup_weather<|channel|>commentary <|constrain|>json"
        '<|message|>{"location": "San Francisco"}<|call|>'
        "<|start|>functions.lookup_weather to=assistant<|channel|>commentary"
        '<|message|>{"temperature": 20, "description": "sunny"}<|end|>'
        "<|start|>assistant"
    )
    assert h.render(conv) == expected


def test_tool_call_tokens_keep_constrain_special(tok):
    msg = h.tool_call("get_weather", {"location": "Tokyo"})
    ids = h.render_tokens([msg], tok, for_completion=False)
    text = (
        "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json"
        '<|message|>{"location": "Tokyo"}<|call|>'
    )
    assert ids == tok.encoding.encode(text, allowed_special="all")
    assert 200003 in ids and ids[-1] == 200012


def test_analysis_dropped_once_final_exists():
    conv = [
        h.user("What is 2 + 2?"),
        h.assistant("Simple arithmetic.", channel="analysis"),
        h.assistant("2 + 2 equals 4.", channel="final"),
        h.user("What about 9 / 2?"),
    ]
    expected = (
        "<|start|>user<|message|>What is 2 + 2?<|end|>"
        "<|start|>assistant<|channel|>final<|message|>2 + 2 equals 4.<|end|>"
        "<|start|>user<|message|>What about 9 / 2?<|end|>"
        "<|start|>assistant"
    )
    assert h.render(conv) == expected
    kept = h.render(conv, auto_drop_analysis=False)
    assert "<|channel|>analysis<|message|>Simple arithmetic.<|end|>" in kept


def test_training_rendering_ends_with_return():
    conv = [h.user("hi"), h.assistant("think", channel="analysis"), h.assistant("hello")]
    assert h.render(conv, for_training=True) == (
        "<|start|>user<|message|>hi<|end|><|start|>assistant<|channel|>final<|message|>hello<|return|>"
    )
    assert h.render(conv, for_training=True, auto_drop_analysis=False) == (
        "<|start|>user<|message|>hi<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>think<|end|>"
        "<|start|>assistant<|channel|>final<|message|>hello<|return|>"
    )
    # not ending in a final answer: nothing changes
    assert h.render([h.user("hi")], for_training=True) == "<|start|>user<|message|>hi<|end|>"


def test_keep_analysis_between_finals():
    # harmony drops only the analysis before the conversation's first final message
    conv = [
        h.user("What is 2 + 2?"),
        h.assistant("thinking 2+2", channel="analysis"),
        h.assistant("4"),
        h.user("What is 3 + 5?"),
        h.assistant("thinking 3+5", channel="analysis"),
        h.assistant("8"),
    ]
    assert h.render(conv, for_completion=False) == (
        "<|start|>user<|message|>What is 2 + 2?<|end|>"
        "<|start|>assistant<|channel|>final<|message|>4<|end|>"
        "<|start|>user<|message|>What is 3 + 5?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>thinking 3+5<|end|>"
        "<|start|>assistant<|channel|>final<|message|>8<|end|>"
    )


def test_content_that_looks_like_a_token_stays_text(tok):
    ids = h.render_tokens([h.user("say <|end|> please")], tok, for_completion=False)
    assert ids.count(200007) == 1 and ids[-1] == 200007


def test_stop_tokens(tok, tok_py):
    assert h.STOP_TOKENS == {200002, 200007, 200012}
    assert h.STOP_TOKENS_ASSISTANT_ACTIONS == {200002, 200012}
    for t in (tok, tok_py):
        assert h.stop_tokens(t) == h.STOP_TOKENS
        assert h.stop_tokens(t, assistant_actions=True) == h.STOP_TOKENS_ASSISTANT_ACTIONS


def test_schema_oneof_and_nullable():
    schema = {
        "type": "object",
        "properties": {
            "s": {
                "type": "string",
                "nullable": True,
                "description": "A nullable string",
                "default": "d",
            },
            "x": {
                "oneOf": [{"type": "string"}, {"type": "number", "description": "or a number"}],
                "description": "a oneof",
            },
        },
    }
    assert h.schema_to_typescript(schema) == (
        "{\n"
        "// A nullable string\n"
        's?: string | null, // default: "d"\n'
        "// a oneof\n"
        "x?:\n"
        " | string\n"
        " | number // or a number\n"
        ",\n"
        "}"
    )


# ---- parsing ---------------------------------------------------------------------------


def test_parse_completion_tokens(tok):
    text = "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>"
    r = h.parse(tok.encoding.encode(text, allowed_special="all"), tok, role="assistant")
    assert r.errors == [] and r.complete
    assert r.messages == [
        h.Message("assistant", "Simple.", channel="analysis"),
        h.Message("assistant", "2 + 2 = 4.", channel="final"),
    ]
    assert r.final == "2 + 2 = 4."


@pytest.mark.parametrize(
    "text",
    [
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"a": 1}<|call|>',
        '<|start|>assistant to=functions.get_weather<|channel|>commentary<|constrain|>json<|message|>{"a": 1}<|call|>',
        '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"a": 1}<|call|>',
        '<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>{"a": 1}<|call|>',
    ],
)
def test_parse_tool_call_headers(text):
    r = h.parse(text)
    assert r.errors == []
    assert r.messages == [
        h.Message(
            "assistant",
            '{"a": 1}',
            channel="commentary",
            recipient="functions.get_weather",
            content_type="<|constrain|>json",
        )
    ]


def test_parse_tool_result_and_roundtrip(tok):
    conv = [
        h.user("Weather?"),
        h.assistant("Need the tool.", channel="analysis"),
        h.tool_call("get_weather", {"city": "Lisboa"}),
        h.tool_result("get_weather", "sunny, 21 °C"),
        h.assistant("Está sol: 21 °C. 🙂"),
    ]
    text = h.render(conv, for_completion=False, auto_drop_analysis=False)
    for r in (
        h.parse(text),
        h.parse(h.render_tokens(conv, tok, for_completion=False, auto_drop_analysis=False), tok),
    ):
        assert r.errors == [] and r.complete
        assert r.messages == conv


def test_parse_reports_truncation(tok):
    ids = tok.encode("<|channel|>final<|message|>The answer is", allowed_special="all")
    r = h.parse(ids, tok, role="assistant")
    assert not r.complete and any("ended inside a message" in e for e in r.errors)
    assert r.messages == [h.Message("assistant", "The answer is", channel="final")]


def test_parse_malformed_inputs_say_what_is_wrong(tok):
    r = h.parse("hello<|message|>x<|start|>user<|message|>hi<|end|>")
    assert r.messages == [h.Message("user", "hi")]
    assert any("outside any message" in e for e in r.errors)
    r = h.parse([200006, 10**9, -5, 200008, 200007], tok)
    assert any("not in the vocabulary" in e for e in r.errors)
    r = h.parse(12345)  # not even a sequence
    assert r.messages == [] and r.errors


FORMAT_IDS = [200006, 200005, 200008, 200007, 200002, 200012, 200003, 199999, 200013]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(
        st.one_of(st.sampled_from(FORMAT_IDS), st.integers(0, 201087), st.integers(-10, 300_000)),
        max_size=60,
    ),
    role=st.sampled_from([None, "assistant"]),
)
def test_parse_fuzzed_tokens_never_raises(tok, ids, role):
    r = h.parse(ids, tok, role=role)
    assert isinstance(r.messages, list) and isinstance(r.errors, list)
    assert not any("internal parser error" in e for e in r.errors)


PIECES = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>",
          "assistant", "user", " to=functions.f", "final", "analysis", " ", "json", "hé", "\n", "<|"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=40))
def test_parse_fuzzed_text_never_raises(pieces):
    r = h.parse("".join(pieces))
    assert not any("internal parser error" in e for e in r.errors)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, 10_000))
def test_parse_truncated_rendering(tok, cut):
    conv = [
        h.user("Weather in Paris?"),
        h.assistant("Call the tool.", channel="analysis"),
        h.tool_call("get_weather", json.dumps({"city": "Paris"})),
        h.tool_result("get_weather", "rain"),
        h.assistant("Il pleut. 雨です。"),
    ]
    ids = h.render_tokens(conv, tok, for_completion=False, auto_drop_analysis=False)
    cut = cut % (len(ids) + 1)
    r = h.parse(ids[:cut], tok)
    assert not any("internal parser error" in e for e in r.errors)
    # every message whose end token survived the cut is read back exactly
    n_closed = sum(1 for t in ids[:cut] if t in (200007, 200012))
    assert r.messages[:n_closed] == conv[:n_closed]
    assert r.complete == (cut == len(ids) or ids[cut - 1] in (200007, 200012) if cut else True)


def test_harmony_importable_by_its_public_name():
    # gptoss_edu.harmony is the package; gptoss_edu.tokenizer.harmony (its old address) is a plain
    # module re-exporting the same objects: no sys.modules swap.
    import gptoss_edu as ge
    import gptoss_edu.harmony as package
    from gptoss_edu.tokenizer import harmony as old_address

    assert ge.harmony is package and package.__file__.endswith("harmony/__init__.py")
    assert old_address is not package
    for name in package.__all__:
        assert getattr(old_address, name) is getattr(package, name), name
    from gptoss_edu.harmony import render  # noqa: F401
    from gptoss_edu.harmony.parse import StreamParser  # noqa: F401
