"""The calculator tool and the agent loop (gptoss_edu.tools, chapter 15), driven by a stand-in
model that replays scripted replies: no training needed, and the model's text is known."""

import builtins
import json

import pytest

from gptoss_edu import harmony, tools
from gptoss_edu.posttrain.standin import ScriptedModel
from gptoss_edu.tiny import load_tiny_tokenizer
from gptoss_edu.tools import CalculatorError, calculate, execute_call, run_agent


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture
def no_eval(monkeypatch):
    """eval and exec fail the test if anything calls them while the loop runs (recorded, so
    that no `except Exception` in the code under test can hide the call)."""
    seen = []

    def forbidden(*args, **kwargs):
        seen.append(args[:1])
        raise AssertionError(f"eval/exec called with {args[:1]!r}")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    yield
    monkeypatch.undo()
    assert seen == [], f"eval/exec was called: {seen}"


def call(arguments: str, name: str = "functions.calculator") -> str:
    return (
        "<|channel|>analysis<|message|>Use the calculator.<|end|>"
        f"<|start|>assistant to={name}<|channel|>commentary <|constrain|>json"
        f"<|message|>{arguments}<|call|>"
    )


FINAL = "<|channel|>final<|message|>{}<|return|>"


def test_calculate_is_right_on_hand_checked_cases():
    assert calculate("123 * 456") == 56088
    assert calculate(" 2 + 3 * 4 ") == 14
    assert calculate("(2 + 3) * 4") == 20
    assert calculate("10 - 20 - 5") == -15
    assert calculate("-3 * -(4 - 6)") == -6
    assert calculate("999999999999 * 999999999999") == 999999999998000000000001


@pytest.mark.parametrize(
    "expression, why",
    [
        ("__import__('os').system('echo pwned')", "unexpected character '_'"),
        ("os.system('ls')", "unexpected character 'o'"),
        ("2 ** 100000", "expected a number, found '\\*'"),
        ("1" * 13, "13 digits"),
        ("999999999999 * " * 4 + "9", "more than 40 digits"),
        ("(" * 20 + "1" + ")" * 20, "nested"),
        ("1 +", "ends where a number"),
        ("(1 + 2", "not closed"),
        ("1 2", "unexpected '2'"),
        ("", "empty"),
        ("1 + " * 60 + "1", "at most 200"),
    ],
)
def test_calculate_refuses(expression, why):
    with pytest.raises(CalculatorError, match=why):
        calculate(expression)
    with pytest.raises(CalculatorError, match="expected a string"):
        calculate(12)


def test_the_loop_executes_a_correct_call(tok, no_eval):
    model = ScriptedModel.from_texts(
        tok, [call('{"expression": "123 * 456"}'), FINAL.format(56088)]
    )
    result = run_agent(model, tok, "What is 123 * 456?", reasoning="high")
    assert result.stopped == "final" and result.final == "56088" and result.calls == 1
    (reply,) = result.tool_messages
    assert reply.name == "functions.calculator" and json.loads(reply.text) == {"result": 123 * 456}
    # the model saw the declared tool first, then its call and the tool's reply
    first, second = (tok.decode(p) for p in model.prompts)
    assert "type calculator = (_: {" in first and "Reasoning: high" in first
    assert first.endswith("<|start|>user<|message|>What is 123 * 456?<|end|><|start|>assistant")
    assert second.endswith(
        '{"expression": "123 * 456"}<|call|><|start|>functions.calculator to=assistant'
        '<|channel|>commentary<|message|>{"result": 56088}<|end|><|start|>assistant'
    )


@pytest.mark.parametrize(
    "script, error",
    [
        (
            call("{\"expression\": \"__import__('os').system('echo pwned')\"}"),
            "unexpected character",
        ),
        (call('{"expression": "12345678901234567890 * 2"}'), "20 digits"),
        (
            call('{"expression": "1 + 1"}', name="functions.python"),
            "unknown tool 'functions.python'",
        ),
        (call('{"expression": "1 + 1"}', name="browser.open"), "unknown tool 'browser.open'"),
        (call("{expression: 1 +}"), "not valid JSON"),
        (call('{"expression": "1 + 1", "x": 1}'), "expected exactly"),
        (call('["1 + 1"]'), "expected exactly"),
        (call('"' + "[" * 1200 + '"'), "at most 1000"),
    ],
)
def test_malformed_calls_get_an_error_message_never_an_exception(tok, no_eval, script, error):
    model = ScriptedModel.from_texts(tok, [script, FINAL.format("sorry")])
    result = run_agent(model, tok, "What is 1 + 1?", max_new_tokens=4000)
    assert result.stopped == "final" and result.calls == 1
    (reply,) = result.tool_messages
    assert error in json.loads(reply.text)["error"]
    assert "result" not in json.loads(reply.text)


def test_a_call_cut_off_by_max_new_tokens_is_not_executed(tok, no_eval):
    script = call('{"expression": "' + "1 + " * 100 + '1"}')
    model = ScriptedModel.from_texts(tok, [script, FINAL.format("?")])
    result = run_agent(model, tok, "What is 1 + 1?", max_new_tokens=60)
    (reply,) = result.tool_messages
    assert "cut off after 60 tokens" in json.loads(reply.text)["error"]


def test_execute_call_never_raises_on_strange_messages():
    msgs = [
        harmony.Message("assistant", "{}", recipient="functions.calculator"),
        harmony.Message("assistant", "[[[[" * 10000, recipient="functions.calculator"),
        harmony.Message("assistant", '{"expression": "1"}', recipient="functions.<|end|>"),
        harmony.Message("assistant", '{"expression": 7}', recipient="functions.calculator"),
    ]
    for m in msgs:
        reply = execute_call(m)
        assert reply.role == "tool" and "error" in json.loads(reply.text)
        harmony.render([reply])  # the reply can always be written into the conversation

    def broken(arguments):
        raise ZeroDivisionError("boom")

    m = harmony.Message("assistant", "{}", recipient="functions.broken")
    assert "ZeroDivisionError" in json.loads(execute_call(m, {"broken": broken}).text)["error"]


def test_the_loop_stops_after_the_bound(tok, no_eval):
    model = ScriptedModel.from_texts(tok, [call('{"expression": "1 + 1"}')] * 3)
    result = run_agent(model, tok, "What is 1 + 1?", max_calls=2)
    assert result.stopped == "call limit" and result.calls == 2 and result.final is None
    assert model.calls == 3 and len(result.tool_messages) == 2
    assert "limit is 2" in result.errors[-1]
    with pytest.raises(ValueError, match="max_calls=-1"):
        run_agent(model, tok, "x", max_calls=-1)


def test_no_call_answers_directly(tok):
    model = ScriptedModel.from_texts(tok, ["<|channel|>final<|message|>5<|return|>"])
    result = run_agent(model, tok, "What is 2 + 3?")
    assert (result.final, result.calls, result.stopped) == ("5", 0, "final")
    model = ScriptedModel.from_texts(tok, ["<|channel|>analysis<|message|>hmm<|end|>"])
    result = run_agent(model, tok, "What is 2 + 3?", max_new_tokens=20)
    assert result.final is None and result.stopped == "no answer"
    assert tools.TOOLS["calculator"]({"expression": "6 * 7"}) == {"result": 42}
