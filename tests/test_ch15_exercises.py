"""Chapter 15's checkers: a solution passes (visible and hidden cases), an unfinished starter
fails, and each classic mistake is named. Plus the shipped reasoner's TRAINING.md is its
training.json rendered (so the record cannot be edited by hand)."""

import json
import re

import pytest

from gptoss_edu import harmony
from gptoss_edu.exercises import ch15_posttrain as ch
from gptoss_edu.harmony import START
from gptoss_edu.posttrain.data import Problem, conversation

# ---- solutions, written independently of the package's generator and mask --------------------


def scratchpad_solution(a, b):
    lines = [f"Add {a} and {b} digit by digit, from the right.", f"{a} + {b}"]
    carry, so_far = 0, ""
    while True:
        x, y = a % 10, b % 10
        s = x + y + carry
        a, b = a // 10, b // 10
        so_far = str(s % 10) + so_far
        lines.append(
            f"{x} + {y} + {carry} = {s}, write {s % 10} carry {s // 10}, so far {so_far}, "
            f"left {a} + {b}"
        )
        carry = s // 10
        if a == 0 and b == 0:
            break
    if carry:
        so_far = str(carry) + so_far
        lines.append(f"final carry {carry}, so far {so_far}")
    total = int(so_far)
    a0, b0 = lines[1].split(" + ")
    lines.append(f"So {a0} + {b0} = {total}.")
    return "\n".join(lines)


def mask_solution(messages, tokenizer):
    segments = harmony.render_segments(
        messages, for_completion=False, for_training=True, auto_drop_analysis=False
    )
    ids, mask, k = [], [], -1
    for j, (kind, s) in enumerate(segments):
        if (kind, s) == ("special", START):
            k += 1
            first = j
        m = messages[k]
        piece = [tokenizer.token_id(s)] if kind == "special" else tokenizer.encode_ordinary(s)
        after_other = k == 0 or messages[k - 1].role != "assistant"
        trained = m.role == "assistant" and not (after_other and j - first < 2)
        ids += piece
        mask += [int(trained)] * len(piece)
    return ids, mask


def score_solution(reply, expected):
    finals = [m for m in reply if m.channel == "final"]
    return bool(finals) and finals[-1].text.strip() == str(expected)


def effort_solution(p):
    if p.op == "*":
        tens, ones = p.b - p.b % 10, p.b % 10
        return (
            f"{p.a} * {ones} = {p.a * ones}\n{p.a} * {tens} = {p.a * tens}\n"
            f"{p.a * ones} + {p.a * tens} = {p.answer}\nSo {p.a} * {p.b} = {p.answer}."
        )
    steps, acc = [], p.a
    for place in (1000, 100, 10, 1):
        part = p.b // place % 10 * place
        new = acc + part if p.op == "+" else acc - part
        steps.append(f"{acc} {p.op} {part} = {new}")
        acc = new
    return "\n".join(steps + [f"So {p.a} {p.op} {p.b} = {p.answer}."])


def starter(*args):
    raise NotImplementedError("exercise 15.1: write the body of f()")


CASES = [
    (ch.check_add_scratchpad, scratchpad_solution),
    (ch.check_loss_mask, mask_solution),
    (ch.check_score_reply, score_solution),
    (ch.check_effort_format, effort_solution),
]


@pytest.mark.parametrize("check, solution", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_solution_passes_visible_and_hidden(check, solution, capsys):
    assert check(solution)
    assert check.hidden
    for seed in (0, 7, 123):
        assert check(solution, seed=seed), capsys.readouterr().out
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("check, _", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_starter_fails_with_not_done(check, _, capsys):
    assert not check(starter)
    assert "not done yet" in capsys.readouterr().out


def test_scratchpad_by_hand_and_mistakes(capsys):
    # 999 + 1, worked by hand: three carries and a final carry
    assert scratchpad_solution(999, 1).split("\n")[2:] == [
        "9 + 1 + 0 = 10, write 0 carry 1, so far 0, left 99 + 0",
        "9 + 0 + 1 = 10, write 0 carry 1, so far 00, left 9 + 0",
        "9 + 0 + 1 = 10, write 0 carry 1, so far 000, left 0 + 0",
        "final carry 1, so far 1000",
        "So 999 + 1 = 1000.",
    ]

    def no_final_carry(a, b):
        return "\n".join(ln for ln in scratchpad_solution(a, b).split("\n") if "final" not in ln)

    assert not ch.check_add_scratchpad(no_final_carry)
    assert "last column" in capsys.readouterr().out

    def reversed_so_far(a, b):
        lines = scratchpad_solution(a, b).split("\n")
        out = []
        for ln in lines:
            m = re.search(r"so far (\d+)", ln)
            out.append(ln.replace(m.group(0), f"so far {m.group(1)[::-1]}") if m else ln)
        return "\n".join(out)

    assert not ch.check_add_scratchpad(reversed_so_far)
    assert "wrong order" in capsys.readouterr().out

    def whole_operands(a, b):
        return re.sub(r"left \d+ \+ \d+", f"left {a} + {b}", scratchpad_solution(a, b))

    assert not ch.check_add_scratchpad(whole_operands)
    assert "drop the" in capsys.readouterr().out


def test_mask_mistakes(capsys):
    def everything(messages, tok):
        ids, mask = mask_solution(messages, tok)
        return ids, [1] * len(ids)

    assert not ch.check_loss_mask(everything)
    assert "every token" in capsys.readouterr().out

    def tool_too(messages, tok):  # also trains the tool's reply
        ids, mask = mask_solution(messages, tok)
        roles = [m.role for m in messages]
        if "tool" in roles:
            k = roles.index("tool")
            lo = len(mask_solution(messages[:k], tok)[0])
            hi = len(mask_solution(messages[: k + 1], tok)[0])
            mask[lo:hi] = [1] * (hi - lo)
        return ids, mask

    assert not ch.check_loss_mask(tool_too)
    assert "tool's reply" in capsys.readouterr().out

    def whole_assistant(messages, tok):  # trains the prompt's <|start|>assistant too
        segments = harmony.render_segments(
            messages, for_completion=False, for_training=True, auto_drop_analysis=False
        )
        ids, mask, k = [], [], -1
        for kind, s in segments:
            k += (kind, s) == ("special", START)
            piece = [tok.token_id(s)] if kind == "special" else tok.encode_ordinary(s)
            ids += piece
            mask += [int(messages[k].role == "assistant")] * len(piece)
        return ids, mask

    assert not ch.check_loss_mask(whole_assistant)
    assert "part of the prompt" in capsys.readouterr().out

    def shifted(messages, tok):
        ids, mask = mask_solution(messages, tok)
        return ids, mask[1:] + [0]

    assert not ch.check_loss_mask(shifted)
    assert "shifted by one" in capsys.readouterr().out

    def dropped_analysis(messages, tok):
        ids = harmony.render_tokens(messages, tok, for_training=True)
        return ids, [0] * len(ids)

    assert not ch.check_loss_mask(dropped_analysis)
    assert "auto_drop_analysis=False" in capsys.readouterr().out


def test_mask_solution_on_a_hand_counted_case():
    # the calculator conversation: trained = analysis run + the call, then the final run
    tok = ch._tokenizer()
    conv = conversation(Problem("*", 234, 567), "low")
    ids, mask = mask_solution(conv, tok)
    runs, prev = [], 0
    for i, m in zip(ids, mask):
        if m and not prev:
            runs.append("")
        if m:
            runs[-1] += tok.decode([i])
        prev = m
    assert runs == [
        "<|channel|>analysis<|message|>234 * 567 is beyond what I compute reliably; use the "
        "calculator.<|end|><|start|>assistant to=functions.calculator<|channel|>commentary "
        '<|constrain|>json<|message|>{"expression": "234 * 567"}<|call|>',
        "<|channel|>final<|message|>132678<|return|>",
    ]


def test_score_mistakes(capsys):
    def anywhere(reply, expected):
        return any(str(expected) in m.text for m in reply)

    assert not ch.check_score_reply(anywhere)
    out = capsys.readouterr().out
    assert "final channel" in out or "longer number" in out or "no final" in out

    def any_channel_exact(reply, expected):
        return any(m.text.strip() == str(expected) for m in reply) or any(
            m.text.endswith(f"= {expected}.") for m in reply
        )

    assert not ch.check_score_reply(any_channel_exact)
    assert "only the final channel" in capsys.readouterr().out

    def analysis_when_no_final(reply, expected):
        finals = [m for m in reply if m.channel == "final"]
        if finals:
            return finals[-1].text.strip() == str(expected)
        return any(m.text.endswith(f"= {expected}.") for m in reply)

    assert not ch.check_score_reply(analysis_when_no_final)
    assert "no final message" in capsys.readouterr().out

    def substring(reply, expected):
        finals = [m for m in reply if m.channel == "final"]
        return bool(finals) and str(expected) in finals[-1].text

    assert not ch.check_score_reply(substring)
    assert "longer number" in capsys.readouterr().out

    def with_int(reply, expected):
        finals = [m for m in reply if m.channel == "final"]
        return bool(finals) and int(finals[-1].text) == expected

    assert not ch.check_score_reply(with_int)
    assert "not a number" in capsys.readouterr().out


def test_effort_format_mistakes(capsys):
    def false_step(p):
        return effort_solution(p).replace(" = ", " = 1", 1)

    assert not ch.check_effort_format(false_step)
    assert "is false" in capsys.readouterr().out

    from gptoss_edu.posttrain.data import analysis_text

    assert not ch.check_effort_format(lambda p: analysis_text(p, "high"))
    assert "fewer than high" in capsys.readouterr().out

    calls = []

    def unseeded(p):
        calls.append(1)
        return effort_solution(p) + "\n" * (len(calls) % 2)

    assert not ch.check_effort_format(unseeded)
    assert "pure" in capsys.readouterr().out


# ---- the shipped reasoner's record ------------------------------------------------------------


def test_reasoner_training_md_is_rendered_from_training_json():
    from gptoss_edu.posttrain.reasoner import render_record
    from gptoss_edu.tiny import tiny_path

    try:
        rdir = tiny_path("reasoner")
    except (FileNotFoundError, ValueError):
        pytest.skip("no shipped reasoner in this installation")
    record_path = rdir / "training.json"
    if not record_path.is_file():
        pytest.skip(f"{record_path} does not exist: no shipped reasoner record to check")
    record = json.loads(record_path.read_text())
    assert (rdir / "TRAINING.md").read_text() == render_record(record), (
        "TRAINING.md is not render_record(training.json): regenerate it from the record "
        "(it is never edited by hand)"
    )
