"""The arithmetic data of chapter 15 (gptoss_edu.posttrain.data): every answer and every step
of the working is checked by arithmetic written here, independently of the generator."""

import json
import re

import pytest

from gptoss_edu import harmony
from gptoss_edu.posttrain import data
from gptoss_edu.posttrain.data import Problem, conversation, split_problems

EQUATION = re.compile(r"(-?\d+(?: [-+*] -?\d+)+) = (-?\d+)")


def _value(expr: str) -> int:
    """Evaluate "a op b op c ..." left to right with * first: an evaluator independent of data.py."""
    tokens = expr.split(" ")
    nums, ops = [int(tokens[0])], []
    for op, n in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            nums[-1] *= int(n)
        else:
            ops.append(op)
            nums.append(int(n))
    total = nums[0]
    for op, n in zip(ops, nums[1:]):
        total = total + n if op == "+" else total - n
    return total


def _truth(p: Problem) -> int:
    return {"+": p.a + p.b, "-": p.a - p.b, "*": p.a * p.b}[p.op]


def _messages(conv, channel):
    return [m.text for m in conv if m.role == "assistant" and m.channel == channel]


def _check_high(p: Problem, text: str) -> None:
    """Each digit step of a `high` analysis, checked against the digits of A and B."""
    big, small = (max(p.a, p.b), min(p.a, p.b)) if p.op == "-" else (p.a, p.b)
    da, db = str(big)[::-1], str(small)[::-1]
    if p.op == "+":
        steps = re.findall(r"^(\d) \+ (\d) \+ (\d) = (\d+), write (\d) carry (\d)$", text, re.M)
        assert len(steps) == max(len(da), len(db))
        carry, digits = 0, ""
        for i, (x, y, c, s, d, c2) in enumerate(map(lambda t: map(int, t), steps)):
            assert x == int(da[i] if i < len(da) else 0) and y == int(db[i] if i < len(db) else 0)
            assert c == carry and s == x + y + c and d == s % 10 and c2 == s // 10
            carry, digits = c2, str(d) + digits
        assert int(str(carry) + digits if carry else digits) == p.a + p.b
    elif p.op == "-":
        steps = re.findall(r"^(\d+) - (\d) - (\d) = (\d), borrow (\d)$", text, re.M)
        assert len(steps) == len(da)
        borrow, digits = 0, ""
        for i, (top, y, b, d, b2) in enumerate(map(lambda t: map(int, t), steps)):
            assert top == int(da[i]) + 10 * b2 and y == int(db[i] if i < len(db) else 0)
            assert b == borrow and d == top - y - b and 0 <= d <= 9
            borrow, digits = b2, str(d) + digits
        assert borrow == 0 and int(digits) == big - small
    else:
        partials = re.findall(r"^(\d+) \* (\d+) = (\d+)$", text, re.M)
        assert len(partials) == len(db)
        for i, (a, place, prod) in enumerate(partials):
            assert int(a) == p.a and int(place) == int(db[i]) * 10**i
            assert int(prod) == p.a * int(db[i]) * 10**i


@pytest.fixture(scope="module")
def splits():
    return split_problems(seed=3, n_train=200, n_heldout=40, n_tool=20)


def test_every_answer_and_every_step_is_right(splits):
    train, heldout = splits
    for p in train + heldout:
        assert p.question == f"What is {p.a} {p.op} {p.b}?"
        if p.needs_tool:
            assert p.op == "*" and 100 <= p.a <= 999 and 100 <= p.b <= 999
        else:
            lo, hi = (10, 99) if p.op == "*" else (0, 9999)
            assert lo <= p.a <= hi and lo <= p.b <= hi
        for effort in ("low", "medium", "high"):
            conv = conversation(p, effort)
            assert conv[-1].role == "assistant" and conv[-1].channel == "final"
            assert conv[-1].text == str(_truth(p))
            assert [m.text for m in conv if m.role == "user"] == [p.question]
            for text in _messages(conv, "analysis"):
                for expr, value in EQUATION.findall(text):
                    assert _value(expr) == int(value), (p, effort, expr, value)
            if effort == "high" and not p.needs_tool:
                _check_high(p, _messages(conv, "analysis")[0])


def test_hand_checked_examples():
    text = data.analysis_text(Problem("+", 4827, 596), "high")
    assert "7 + 6 + 0 = 13, write 3 carry 1" in text and text.endswith("= 5423.")
    text = data.analysis_text(Problem("-", 1000, 1), "high")
    assert "10 - 1 - 0 = 9, borrow 1" in text and text.endswith("1000 - 1 = 999.")
    text = data.analysis_text(Problem("*", 47, 86), "high")
    assert "47 * 6 = 282\n47 * 80 = 3760\n282 + 3760 = 4042" in text
    assert conversation(Problem("-", 596, 4827), "low")[-1].text == "-4231"


def test_tool_conversation_calls_the_calculator():
    p = Problem("*", 123, 456)
    conv = conversation(p, "medium")
    dev = [m for m in conv if m.role == "developer"]
    assert len(dev) == 1 and "type calculator = (_: {" in harmony.render(dev[0])
    call = next(m for m in conv if m.recipient == "functions.calculator")
    assert call.channel == "commentary" and call.content_type == "<|constrain|>json"
    assert json.loads(call.text) == {"expression": "123 * 456"}
    reply = next(m for m in conv if m.role == "tool")
    assert reply.name == "functions.calculator" and json.loads(reply.text) == {"result": 56088}
    assert conv[-1].text == "56088"
    text = harmony.render(conv, for_training=True, auto_drop_analysis=False)
    assert (
        "<|constrain|>json<|message|>" in text and "<|call|><|start|>functions.calculator" in text
    )


def test_splits_are_disjoint_distinct_and_reproducible(splits):
    train, heldout = splits
    assert not set(train) & set(heldout)
    assert len(set(train)) == len(train) and len(set(heldout)) == len(heldout)
    assert len(train) == 3 * 200 + 20 and len(heldout) == 3 * 40 + 20
    again = split_problems(seed=3, n_train=200, n_heldout=40, n_tool=20)
    assert again == splits
    # the held-out split does not depend on n_train, and a smaller one is a subset
    assert data.heldout_problems(seed=3, n=40, n_tool=20) == heldout
    assert set(data.heldout_problems(seed=3, n=10)) < set(heldout)
    other = split_problems(seed=4, n_train=200, n_heldout=40, n_tool=20)
    assert other[1] != heldout
    ex1 = data.examples(heldout[:10], seed=1)
    ex2 = data.examples(heldout[:10], seed=1)
    assert [(p, e, harmony.render(c)) for p, e, c in ex1] == [
        (p, e, harmony.render(c)) for p, e, c in ex2
    ]


def test_effort_levels_differ_in_analysis_length(splits):
    from gptoss_edu.tiny import load_tiny_tokenizer

    tok = load_tiny_tokenizer()
    _, heldout = splits
    mean = {}
    for effort in ("low", "medium", "high"):
        lengths = [
            len(tok.encode_ordinary(_messages(conversation(p, effort), "analysis")[0]))
            for p in heldout
            if not p.needs_tool
        ]
        mean[effort] = sum(lengths) / len(lengths)
    assert mean["low"] <= 8 < mean["medium"] and 2 * mean["medium"] < mean["high"], mean


def test_every_conversation_round_trips_through_parse(splits):
    from gptoss_edu.tiny import load_tiny_tokenizer

    tok = load_tiny_tokenizer()
    train, heldout = splits
    for p in heldout[::7] + [q for q in heldout if q.needs_tool][:3]:
        for effort in ("low", "high"):
            conv = conversation(p, effort, declare_tool=True)
            ids = harmony.render_tokens(conv, tok, for_training=True, auto_drop_analysis=False)
            result = harmony.parse(ids, tok)
            assert result.errors == [] and result.complete
            assert len(result.messages) == len(conv)
            for got, want in zip(result.messages, conv):
                assert (got.role, got.channel) == (want.role, want.channel)
                if want.role == "tool":
                    assert got.name == want.name
                if isinstance(want.content, str):
                    assert got.text == want.text
                    assert got.recipient == want.recipient
                    assert got.content_type == want.content_type
            assert result.final == str(_truth(p))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="op='/'"):
        Problem("/", 1, 2)
    with pytest.raises(ValueError, match="b=-1"):
        Problem("+", 1, -1)
    with pytest.raises(ValueError, match="effort='extreme'"):
        conversation(Problem("+", 1, 2), "extreme")
    with pytest.raises(ValueError, match="only `\\*` problems"):
        conversation(Problem("+", 10000, 2))
    with pytest.raises(ValueError, match="at most"):
        split_problems(n_train=5000, n_heldout=100)
