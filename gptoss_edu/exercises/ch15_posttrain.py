"""Checkers for chapter 15's exercises (exercises/15_teaching_it_to_think.ipynb): the addition
scratchpad, the loss mask of supervised fine-tuning, scoring a reply, and an effort level of the
reader's own design.

    ge.exercises.check_add_scratchpad(add_scratchpad)   # ✅ check_add_scratchpad: passed

The references are gptoss_edu.posttrain.data.analysis_text (the high-effort working),
gptoss_edu.posttrain.sft.render_with_mask (the mask) and the rule of gptoss_edu.evaluate (an
answer is right when the final channel's text, stripped, is the integer). The checkers recognise
the classic mistakes: a scratchpad that forgets the last carry, writes the result so far in the
wrong order or never drops the digits it used; a mask that trains on the prompt's
`<|start|>assistant`, on the tool's reply or on everything, or is shifted by one token, or a
rendering that drops the analysis; a score that finds the answer anywhere in the reply (the
analysis, or inside a longer number) or raises on a final that is not a number; an analysis
whose equations are false.
"""

from __future__ import annotations

import functools
import random
import re

from ._common import Checker, ExerciseFailure, cases

__all__ = [
    "check_add_scratchpad",
    "check_loss_mask",
    "check_score_reply",
    "check_effort_format",
]


# ---- 15.1 the addition scratchpad ---------------------------------------------------------


def _add_variant(a: int, b: int, final_carry=True, reverse_so_far=False, drop_used=True) -> str:
    """The high-effort working of a + b, or one of its classic mistakes (for naming them)."""
    lines = [f"Add {a} and {b} digit by digit, from the right.", f"{a} + {b}"]
    carry, so_far, ra, rb = 0, "", a, b
    while True:
        x, y = ra % 10, rb % 10
        s = x + y + carry
        ra, rb = ra // 10, rb // 10
        so_far = (so_far + str(s % 10)) if reverse_so_far else (str(s % 10) + so_far)
        shown = (ra, rb) if drop_used else (a, b)
        lines.append(
            f"{x} + {y} + {carry} = {s}, write {s % 10} carry {s // 10}, so far {so_far}, "
            f"left {shown[0]} + {shown[1]}"
        )
        carry = s // 10
        if ra == 0 and rb == 0:
            break
    if carry and final_carry:
        so_far = (so_far + str(carry)) if reverse_so_far else (str(carry) + so_far)
        lines.append(f"final carry {carry}, so far {so_far}")
    lines.append(f"So {a} + {b} = {a + b}.")
    return "\n".join(lines)


@Checker("check_add_scratchpad")
def check_add_scratchpad(fn, seed=None):
    """fn(a, b) -> str: the high-effort analysis of `What is a + b?`, line for line as
    gptoss_edu.posttrain.data writes it (0 <= a, b <= 9999)."""
    from ..posttrain.data import Problem, analysis_text

    def draw(rng):
        kind = rng.random()
        if kind < 0.3:  # a carry out of the last column
            a = rng.randint(5000, 9999)
            return a, rng.randint(10000 - a, 9999)
        if kind < 0.5:  # operands of different lengths
            return rng.randint(0, 99), rng.randint(1000, 9999)
        return rng.randint(0, 9999), rng.randint(0, 9999)

    visible = [(4827, 596), (999, 1), (0, 0), (5, 7000)]
    for a, b in cases(visible, seed, draw, n=8):
        want = analysis_text(Problem("+", a, b), "high")
        got = fn(a, b)
        if not isinstance(got, str):
            raise ExerciseFailure(
                f"add_scratchpad({a}, {b}): expected a str, got {type(got).__name__}"
            )
        if got.strip("\n") == want:
            if got != want:
                raise ExerciseFailure(
                    f"add_scratchpad({a}, {b}): right lines, but with extra newlines at the start "
                    "or the end; join the lines with '\\n' and add none after the last"
                )
            continue
        if got == _add_variant(a, b, final_carry=False):
            raise ExerciseFailure(
                f"add_scratchpad({a}, {b}): the carry out of the last column is lost; when a "
                "carry is left after the last column, add the line "
                f"'final carry 1, so far ...' (here the sum {a + b} has one more digit)"
            )
        if got == _add_variant(a, b, reverse_so_far=True):
            raise ExerciseFailure(
                f"add_scratchpad({a}, {b}): 'so far' has its digits in the wrong order; each new "
                "digit goes in FRONT of the result so far (we work from the right)"
            )
        if got == _add_variant(a, b, drop_used=False):
            raise ExerciseFailure(
                f"add_scratchpad({a}, {b}): 'left' repeats the whole operands; it must drop the "
                "digit just used (left 482 + 59 after the first column of 4827 + 596), so that "
                "the next digits are always the last ones on the line above"
            )
        g, w = got.split("\n"), want.split("\n")
        for i, (gl, wl) in enumerate(zip(g, w)):
            if gl != wl:
                raise ExerciseFailure(
                    f"add_scratchpad({a}, {b}), line {i + 1}: got {gl!r}, expected {wl!r}"
                )
        raise ExerciseFailure(
            f"add_scratchpad({a}, {b}): {len(g)} lines, expected {len(w)}; the expected working "
            f"ends {w[-2:]!r}"
        )
    return "column by column, every line restating what the next one needs"


# ---- 15.2 the loss mask ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from ..posttrain.reasoner import digit_tokenizer
    from ..tiny import load_tiny_tokenizer

    return digit_tokenizer(load_tiny_tokenizer("tiny"))


def _mask_variant(messages, tok, prompt_suffix=False, tool=False, between=True, every=False):
    """render_with_mask's rule with one thing changed (to name a classic mistake)."""
    from .. import harmony
    from ..harmony import START

    segments = harmony.render_segments(
        messages, for_completion=False, for_training=True, auto_drop_analysis=False
    )
    starts = [i for i, s in enumerate(segments) if s == ("special", START)] + [len(segments)]
    ids, mask = [], []
    for k, m in enumerate(messages):
        writes = m.role == "assistant" or (tool and m.role == "tool") or every
        after_other = k == 0 or messages[k - 1].role != "assistant"
        given = 0 if prompt_suffix else (2 if after_other else (0 if between else 2))
        for j, (kind, s) in enumerate(segments[starts[k] : starts[k + 1]]):
            piece = [tok.token_id(s)] if kind == "special" else tok.encode_ordinary(s)
            ids += piece
            mask += [int(writes and (j >= given or every))] * len(piece)
    return ids, mask


def _conversations(seed):
    from ..posttrain.data import EFFORTS, RANGES, TOOL_RANGE, Problem, conversation

    if seed is None:
        return [
            ("a calculator call at low effort", conversation(Problem("*", 234, 567), "low")),
            (
                "4827 + 596 at medium effort with the tool declared",
                conversation(Problem("+", 4827, 596), "medium", declare_tool=True),
            ),
        ]
    rng = random.Random(seed)
    out = []
    for _ in range(5):
        effort = rng.choice(EFFORTS)
        if rng.random() < 0.3:
            p = Problem("*", rng.randint(*TOOL_RANGE), rng.randint(*TOOL_RANGE))
        else:
            op = rng.choice("+-*")
            p = Problem(op, rng.randint(*RANGES[op]), rng.randint(*RANGES[op]))
        conv = conversation(p, effort, declare_tool=rng.random() < 0.5)
        out.append((f"{p.question} at {effort} effort", conv))
    return out


@Checker("check_loss_mask")
def check_loss_mask(fn, seed=None):
    """fn(messages, tokenizer) -> (ids, mask): the token ids of the training rendering of a
    conversation and a list of 0/1 of the same length, 1 exactly on the tokens the model
    writes (what gptoss_edu.posttrain.sft.render_with_mask returns)."""
    from .. import harmony
    from ..posttrain.sft import render_with_mask

    tok = _tokenizer()
    for name, conv in _conversations(seed):
        want_ids, want_mask = render_with_mask(conv, tok)
        got = fn(list(conv), tok)
        try:
            ids, mask = got
            ids, mask = [int(i) for i in ids], [int(v) for v in mask]
        except (TypeError, ValueError):
            raise ExerciseFailure(
                f"{name}: expected a pair (ids, mask) of lists of ints, got {type(got).__name__}"
            ) from None
        if ids != want_ids:
            if ids == harmony.render_tokens(conv, tok, for_training=True):
                raise ExerciseFailure(
                    f"{name}: your rendering drops the analysis message; harmony drops the "
                    "analysis of a finished turn from a prompt, but here it is what we teach: "
                    "render with auto_drop_analysis=False"
                )
            if ids == harmony.render_tokens(conv, tok, auto_drop_analysis=False):
                raise ExerciseFailure(
                    f"{name}: your rendering ends the answer with <|end|>; a training rendering "
                    "ends it with <|return|>, the token the model writes when done "
                    "(for_training=True)"
                )
            raise ExerciseFailure(
                f"{name}: {len(ids)} ids, expected the {len(want_ids)} of "
                "harmony.render_segments(messages, for_completion=False, for_training=True, "
                "auto_drop_analysis=False)"
            )
        if len(mask) != len(ids) or set(mask) - {0, 1}:
            raise ExerciseFailure(
                f"{name}: the mask has {len(mask)} values (of {sorted(set(mask))[:5]}); expected "
                f"{len(ids)} values, each 0 or 1, one per id"
            )
        if mask == want_mask:
            continue
        named = [
            (dict(every=True), "that trains on every token, the prompt too; only what the "
             "model writes is trained on"),
            (dict(prompt_suffix=True), "the <|start|>assistant after a user or tool message is "
             "part of the prompt (ge.chat writes it), not something the model writes"),
            (dict(tool=True), "the tool's reply (a message from functions.calculator) is "
             "given to the model, not written by it"),
            (dict(between=False), "the <|start|>assistant that opens an assistant message "
             "right after another assistant message IS written by the model (it decides to "
             "go on)"),
        ]  # fmt: skip
        for kwargs, why in named:
            if mask == _mask_variant(conv, tok, **kwargs)[1]:
                raise ExerciseFailure(f"{name}: {why}")
        if mask == want_mask[1:] + [0] or mask == [0] + want_mask[:-1]:
            raise ExerciseFailure(
                f"{name}: the mask is shifted by one token; it belongs to the ids as rendered "
                "(make_batch shifts it later, with the targets)"
            )
        i = next(i for i, (g, w) in enumerate(zip(mask, want_mask)) if g != w)
        raise ExerciseFailure(
            f"{name}: token {i} ({tok.decode([ids[i]])!r}, after "
            f"{tok.decode(ids[max(0, i - 6) : i])!r}) has mask {mask[i]}, expected {want_mask[i]}"
        )
    return "1 on exactly the tokens the model writes"


# ---- 15.3 scoring a reply -------------------------------------------------------------------


def _reply(analysis: str | None, final: str | None):
    from .. import harmony

    msgs = []
    if analysis is not None:
        msgs.append(harmony.assistant(analysis, channel="analysis"))
    if final is not None:
        msgs.append(harmony.assistant(final, channel="final"))
    return msgs


def _score_cases(seed):
    """(what, reply, expected, right, mistake named when fn gets it wrong)."""
    if seed is None:
        return [
            ("a right final", _reply("So 47 * 36 = 1692.", "1692"), 1692, True, None),
            ("a final with spaces and a newline", _reply(None, " 1692\n"), 1692, True, None),
            ("a negative answer", _reply("So 305 - 4827 = -4522.", "-4522"), -4522, True, None),
            ("a right analysis, a wrong final", _reply("So 47 * 36 = 1692.", "1792"), 1692,
             False, "analysis"),
            ("no final message", _reply("So 47 * 36 = 1692.", None), 1692, False, "no final"),
            ("a final that holds the answer inside a longer number", _reply(None, "16920"), 1692,
             False, "substring"),
            ("a final that is not a number", _reply(None, "I don't know"), 1692, False, None),
        ]  # fmt: skip
    rng = random.Random(seed)
    out = []
    for _ in range(10):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        right = a * b
        kind = rng.choice(["right", "wrong", "inside", "analysis only", "spaces"])
        work = f"So {a} * {b} = {right}."
        if kind == "right":
            out.append((f"right, {a} * {b}", _reply(work, str(right)), right, True, None))
        elif kind == "spaces":
            out.append((f"spaces, {a} * {b}", _reply(work, f"  {right} "), right, True, None))
        elif kind == "wrong":
            bad = str(right + rng.choice([-10, -1, 1, 100]))
            out.append((f"wrong final, {a} * {b}", _reply(work, bad), right, False, "analysis"))
        elif kind == "inside":
            bad = rng.choice([f"{right}0", f"1{right}", f"{right}{right}"])
            out.append((f"longer number, {a} * {b}", _reply(None, bad), right, False, "substring"))
        else:
            out.append((f"no final, {a} * {b}", _reply(work, None), right, False, "no final"))
    return out


@Checker("check_score_reply")
def check_score_reply(fn, seed=None):
    """fn(reply, expected) -> bool: True when the reply (a list of harmony.Message, what
    ge.chat returns) has a final message whose text, stripped of surrounding whitespace, is
    str(expected); False otherwise, without raising (the rule of gptoss_edu.evaluate)."""
    for what, reply, expected, right, mistake in _score_cases(seed):
        try:
            got = fn(list(reply), expected)
        except ValueError as e:
            raise ExerciseFailure(
                f"{what}: your function raised ValueError ({e}); a final that is not a number is "
                "a wrong answer, not an error: compare text with str(expected) instead of int()"
            ) from None
        if not isinstance(got, bool):
            raise ExerciseFailure(f"{what}: expected True or False, got {got!r}")
        if got == right:
            continue
        if mistake == "analysis":
            raise ExerciseFailure(
                f"{what}: you scored it right, but only the final channel is the answer; the "
                "analysis is the model's working, and a model that works it out and then writes "
                "something else has answered wrong"
            )
        if mistake == "substring":
            raise ExerciseFailure(
                f"{what}: `str(expected) in text` finds {expected} inside a longer number; "
                "compare the whole stripped text"
            )
        if mistake == "no final":
            raise ExerciseFailure(
                f"{what}: a reply with no final message has not answered: it counts as wrong, "
                "whatever its analysis says"
            )
        raise ExerciseFailure(f"{what}: got {got}, expected {right}")
    return "the final channel, stripped, equal to the integer"


# ---- 15.4 an effort level of your own -------------------------------------------------------

# one operator: "7 + 6 + 0 = 13" is not read as "6 + 0 = 13" (a chained sum is not checked)
EQUATION = re.compile(r"(?<![-+*] )(?<![\d-])(-?\d+) ([-+*]) (-?\d+) = (-?\d+)")


@Checker("check_effort_format")
def check_effort_format(fn, seed=None):
    """fn(problem) -> str: an analysis of your own design for an effort between medium and
    high. Checked on problems of every operation: a pure function of the problem; at least one
    equation `A op B = C` (one operator, integers) and every one of them true; the answer
    written in it; longer than the medium sketch and shorter than the high working, in tokens
    of the digit tokenizer."""
    from ..posttrain.data import RANGES, Problem, analysis_text

    tok = _tokenizer()

    def draw(rng):
        op = rng.choice("+-*")
        return Problem(op, rng.randint(*RANGES[op]), rng.randint(*RANGES[op]))

    visible = [Problem("+", 4827, 596), Problem("-", 305, 4827), Problem("*", 47, 36),
               Problem("+", 9999, 9999), Problem("*", 10, 10)]  # fmt: skip
    ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
    for p in cases(visible, seed, draw, n=9):
        got = fn(p)
        if not isinstance(got, str) or not got.strip():
            raise ExerciseFailure(f"{p.question}: expected a non-empty str, got {got!r}")
        if fn(Problem(p.op, p.a, p.b)) != got:
            raise ExerciseFailure(
                f"{p.question}: two calls gave two different texts; the analysis must be a pure "
                "function of the problem (no random module, no clock)"
            )
        eqs = EQUATION.findall(got)
        if not eqs:
            raise ExerciseFailure(
                f"{p.question}: no equation `A op B = C` in {got[:80]!r}; write each step as "
                "one, with spaces around the operator and the '='"
            )
        for x, op, y, z in eqs:
            if ops[op](int(x), int(y)) != int(z):
                raise ExerciseFailure(
                    f"{p.question}: the step '{x} {op} {y} = {z}' is false "
                    f"({x} {op} {y} is {ops[op](int(x), int(y))}); a model copies wrong steps "
                    "as faithfully as right ones"
                )
        if not re.search(rf"(?<![\d-]){p.answer}(?!\d)", got):
            raise ExerciseFailure(f"{p.question}: the answer {p.answer} is not written in it")
        n = len(tok.encode_ordinary(got))
        lo = len(tok.encode_ordinary(analysis_text(p, "medium")))
        hi = len(tok.encode_ordinary(analysis_text(p, "high")))
        if not lo < n < hi:
            raise ExerciseFailure(
                f"{p.question}: {n} tokens; an effort between medium and high needs more than "
                f"medium's {lo} and fewer than high's {hi}"
            )
    return "true steps, between medium and high in length"
