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


ADD_STEP = re.compile(
    r"^(\d) \+ (\d) \+ (\d) = (\d+), write (\d) carry (\d), so far (\d+), left (\d+) \+ (\d+)$",
    re.M,
)


def _check_add_steps(text: str, a: int, b: int) -> None:
    """The column lines of a + b in `text` (the first run of them after the line "a + b")."""
    lines = text.splitlines()
    start = lines.index(f"{a} + {b}") + 1
    steps = []
    for line in lines[start:]:
        m = ADD_STEP.match(line)
        if not m:
            break
        steps.append(tuple(map(int, m.groups())))
    da, db = str(a)[::-1], str(b)[::-1]
    assert len(steps) == max(len(da), len(db))
    carry, digits = 0, ""
    for i, (x, y, c, s, d, c2, so_far, left_a, left_b) in enumerate(steps):
        assert x == int(da[i] if i < len(da) else 0) and y == int(db[i] if i < len(db) else 0)
        assert c == carry and s == x + y + c and d == s % 10 and c2 == s // 10
        carry, digits = c2, str(d) + digits
        assert (
            so_far == int(digits) and left_a == a // 10 ** (i + 1) and left_b == b // 10 ** (i + 1)
        )
    if carry:
        assert lines[start + len(steps)] == f"final carry {carry}, so far {carry}{digits}"
    assert int(str(carry) + digits if carry else digits) == a + b


def _check_high(p: Problem, text: str) -> None:
    """Each digit step of a `high` analysis, checked against the digits of A and B."""
    big, small = (max(p.a, p.b), min(p.a, p.b)) if p.op == "-" else (p.a, p.b)
    da, db = str(big)[::-1], str(small)[::-1]
    if p.op == "+":
        _check_add_steps(text, p.a, p.b)
    elif p.op == "-":
        steps = re.findall(
            r"^(\d+) - (\d) - (\d) = (\d), borrow (\d), so far (\d+), left (\d+) - (\d+)$",
            text,
            re.M,
        )
        assert len(steps) == len(da)
        borrow, digits = 0, ""
        for i, step in enumerate(steps):
            top, y, b, d, b2, so_far, left_g, left_s = map(int, step)
            assert top == int(da[i]) + 10 * b2 and y == int(db[i] if i < len(db) else 0)
            assert b == borrow and d == top - y - b and 0 <= d <= 9
            borrow, digits = b2, str(d) + digits
            assert so_far == int(digits) and left_g == big // 10 ** (i + 1)
            assert left_s == small // 10 ** (i + 1)
        assert borrow == 0 and int(digits) == big - small
    else:
        partials = re.findall(
            r"^(\d+) \* (\d): (.*); so (\d+)(?:, times (\d+) is (\d+))?$", text, re.M
        )
        assert len(partials) == len(db)
        values = []
        for i, (a, d, work, prod, place, shifted) in enumerate(partials):
            assert int(a) == p.a and int(d) == int(db[i]) and int(prod) == p.a * int(d)
            for x, dd, carry, s in re.findall(r"(\d) \* (\d)(?: \+ (\d))? = (\d+)", work):
                assert int(dd) == int(d) and int(s) == int(x) * int(d) + int(carry or 0)
            if i:
                assert int(place) == 10**i and int(shifted) == int(prod) * 10**i
            values.append(int(shifted) if i else int(prod))
        total = values[0]
        for v in values[1:]:  # each partial product is added digit by digit
            _check_add_steps(text, total, v)
            total += v
        assert total == p.a * p.b


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
    assert "7 + 6 + 0 = 13, write 3 carry 1, so far 3, left 482 + 59" in text
    assert text.endswith(
        "4 + 0 + 1 = 5, write 5 carry 0, so far 5423, left 0 + 0\nSo 4827 + 596 = 5423."
    )
    text = data.analysis_text(Problem("-", 1000, 1), "high")
    assert "10 - 1 - 0 = 9, borrow 1, so far 9, left 100 - 0" in text
    assert text.endswith("1000 - 1 = 999.")
    text = data.analysis_text(Problem("*", 47, 86), "high")
    assert "47 * 6: 7 * 6 = 42, write 2 carry 4; 4 * 6 + 4 = 28; so 282\n" in text
    assert "47 * 8: 7 * 8 = 56, write 6 carry 5; 4 * 8 + 5 = 37; so 376, times 10 is 3760" in text
    assert "282 + 3760\n2 + 0 + 0 = 2, write 2 carry 0, so far 2, left 28 + 376\n" in text
    assert text.endswith(
        "0 + 3 + 1 = 4, write 4 carry 0, so far 4042, left 0 + 0\nSo 47 * 86 = 4042."
    )
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
