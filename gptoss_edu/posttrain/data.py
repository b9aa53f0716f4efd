"""Arithmetic conversations in harmony, at three reasoning efforts (chapter 15).

The supervised data that teaches the tiny model to think before it answers:

    train, heldout = split_problems(seed=0, n_heldout=100)   # (op, a, b) problems, disjoint
    conv = conversation(Problem("+", 4827, 596), effort="high")
    harmony.render(conv, for_training=True, auto_drop_analysis=False)

The user asks exactly `What is A + B?`, `What is A - B?` (0 <= A, B <= 9999) or `What is A * B?`
(10 <= A, B <= 99); the final answer is the integer result. The `analysis` message depends on
the system message's `Reasoning:` line:

    high     digit by digit, right to left, with every carry / borrow; for `*` one partial
             product per digit of B, itself digit by digit, then their sum digit by digit.
             Every line restates the result so far and the operands left, so the next step
             reads its inputs from the line above (a scratchpad a small model can learn);
    medium   a sketch in two or three equations (split at the hundreds, or at B's tens);
    low      one fixed sentence: no working at all.

Beyond that range (`What is A * B?` with 100 <= A, B <= 999: TOOL_RANGE) the assistant calls the
`functions.calculator` tool declared in the developer message (commentary channel,
`<|constrain|>json` arguments, `<|call|>`), reads the tool's reply and answers with it.

Everything is a pure function of the seed: the same seed gives the same problems, splits and
conversations on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gptoss_edu import harmony
from gptoss_edu.harmony import Message

OPS = ("+", "-", "*")
# (low, high) inclusive bounds of A and B for each operation the model should do by itself
RANGES = {"+": (0, 9999), "-": (0, 9999), "*": (10, 99)}
TOOL_RANGE = (100, 999)  # `A * B` with both in here: the model should call the calculator
EFFORTS = harmony.REASONING_EFFORTS  # ("low", "medium", "high")
LOW_ANALYSIS = "Answer directly."

CALCULATOR = harmony.Tool(
    "calculator",
    "Evaluates integer arithmetic: + - * and parentheses on integers of at most 12 digits.",
    {
        "type": "object",
        "properties": {
            "expression": {"type": "string", "description": "for example 123 * 456"},
        },
        "required": ["expression"],
    },
)


@dataclass(frozen=True, order=True)
class Problem:
    """One arithmetic question: op in "+", "-", "*" and two non-negative ints."""

    op: str
    a: int
    b: int

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"Problem: op={self.op!r}; expected one of {OPS}")
        for name, v in (("a", self.a), ("b", self.b)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"Problem: {name}={v!r}; expected an int >= 0")

    @property
    def question(self) -> str:
        return f"What is {self.a} {self.op} {self.b}?"

    @property
    def answer(self) -> int:
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[self.op]

    @property
    def needs_tool(self) -> bool:
        """True beyond the range the model is taught to do by itself (see RANGES)."""
        lo, hi = RANGES[self.op]
        return not (lo <= self.a <= hi and lo <= self.b <= hi)


def _digits(n: int) -> list[int]:
    """Digits of n >= 0, least significant first: 4827 -> [7, 2, 8, 4]."""
    return [int(c) for c in reversed(str(n))]


# ---- analysis at each effort --------------------------------------------------------------


def _add_steps(a: int, b: int) -> list[str]:
    """The digit-by-digit lines of a + b: one line per column, right to left.

    Each line carries what the next line needs close by: the result so far (the new digit
    written in front of the previous line's) and the operands still left (the last digit of
    each dropped). So the model never has to count positions back into the question: the
    digits it adds next are always the last digits of the line above.
    """
    lines = [f"{a} + {b}"]
    carry, so_far, ra, rb = 0, "", a, b
    while True:
        x, y = ra % 10, rb % 10
        s = x + y + carry
        ra, rb, carry, so_far = ra // 10, rb // 10, s // 10, str(s % 10) + so_far
        lines.append(
            f"{x} + {y} + {s - x - y} = {s}, write {s % 10} carry {carry}, so far {so_far}, "
            f"left {ra} + {rb}"
        )
        if ra == 0 and rb == 0:
            break
    if carry:
        so_far = str(carry) + so_far
        lines.append(f"final carry {carry}, so far {so_far}")
    return lines


def _add_high(a: int, b: int) -> str:
    lines = [f"Add {a} and {b} digit by digit, from the right.", *_add_steps(a, b)]
    lines.append(f"So {a} + {b} = {a + b}.")
    return "\n".join(lines)


def _sub_high(a: int, b: int) -> str:
    lines = []
    big, small = a, b
    if a < b:
        lines.append(f"{a} is less than {b}, so compute {b} - {a} and make it negative.")
        big, small = b, a
    lines.append(f"Subtract {small} from {big} digit by digit, from the right.")
    lines.append(f"{big} - {small}")
    borrow, so_far, rg, rs = 0, "", big, small
    while True:
        x, y = rg % 10, rs % 10
        new_borrow = 1 if x - y - borrow < 0 else 0
        top = x + 10 * new_borrow
        d = top - y - borrow
        rg, rs, so_far = rg // 10, rs // 10, str(d) + so_far
        lines.append(
            f"{top} - {y} - {borrow} = {d}, borrow {new_borrow}, so far {so_far}, left {rg} - {rs}"
        )
        borrow = new_borrow
        if rg == 0 and rs == 0:
            break
    diff = big - small
    if a < b:
        lines.append(f"So {b} - {a} = {diff}, and {a} - {b} = {-diff}.")
    else:
        lines.append(f"So {a} - {b} = {diff}.")
    return "\n".join(lines)


def _times_digit(a: int, d: int) -> str:
    """a * d for one digit d, digit by digit: "7 * 6 = 42, write 2 carry 4; 4 * 6 + 4 = 28"."""
    parts, carry, so_far, ra = [], 0, "", a
    while ra:
        x = ra % 10
        ra //= 10
        s = x * d + carry
        if ra:
            plus = f" + {carry}" if carry else ""
            parts.append(f"{x} * {d}{plus} = {s}, write {s % 10} carry {s // 10}")
            so_far = str(s % 10) + so_far
            carry = s // 10
        else:  # the leading digit: write the whole number
            plus = f" + {carry}" if carry else ""
            parts.append(f"{x} * {d}{plus} = {s}")
            so_far = str(s) + so_far
    return "; ".join(parts) + f"; so {int(so_far)}"


def _mul_high(a: int, b: int) -> str:
    lines = [f"Multiply {a} by each digit of {b}, from the right.", f"{a} * {b}"]
    partials = []
    for i, d in enumerate(_digits(b)):
        line = f"{a} * {d}: {_times_digit(a, d)}"
        if i:
            line += f", times {10**i} is {a * d * 10**i}"
        lines.append(line)
        partials.append(a * d * 10**i)
    total = partials[0]
    for p in partials[1:]:
        lines.append("Add the partial products.")
        lines += _add_steps(total, p)
        total += p
    lines.append(f"So {a} * {b} = {a * b}.")
    return "\n".join(lines)


def _medium(p: Problem) -> str:
    a, b = p.a, p.b
    if p.op == "*":
        tens, ones = b - b % 10, b % 10
        return f"{a} * {tens} = {a * tens}, {a} * {ones} = {a * ones}, sum {a * b}."
    hi, lo = b - b % 100, b % 100
    mid = a + hi if p.op == "+" else a - hi
    end = mid + lo if p.op == "+" else mid - lo
    return f"{a} {p.op} {hi} = {mid}, {mid} {p.op} {lo} = {end}."


def analysis_text(p: Problem, effort: str) -> str:
    """The analysis message of `p` at `effort` (for a problem the model does itself)."""
    if effort not in EFFORTS:
        raise ValueError(f"analysis_text: effort={effort!r}; expected one of {EFFORTS}")
    if effort == "low":
        return LOW_ANALYSIS
    if effort == "medium":
        return _medium(p)
    return {"+": _add_high, "-": _sub_high, "*": _mul_high}[p.op](p.a, p.b)


# ---- conversations ----------------------------------------------------------------------


def tool_analysis(p: Problem) -> str:
    return f"{p.a} {p.op} {p.b} is beyond what I compute reliably; use the calculator."


def conversation(p: Problem, effort: str = "high", *, declare_tool: bool | None = None) -> list:
    """The whole harmony conversation for `p`: system, (developer), user, assistant messages.

    Problems beyond RANGES are solved with a calculator call (the developer message declares
    it); `declare_tool=True` declares the tool on an in-range problem too (the model then learns
    that a declared tool need not be called). Render it for training with
    `harmony.render_tokens(conv, tok, for_training=True, auto_drop_analysis=False)`: the
    default rendering drops the analysis of a finished turn, as harmony does for history.
    """
    if effort not in EFFORTS:
        raise ValueError(f"conversation: effort={effort!r}; expected one of {EFFORTS}")
    tool = p.needs_tool
    if tool and p.op != "*":
        raise ValueError(
            f"conversation: {p.question!r} is outside RANGES[{p.op!r}]={RANGES[p.op]} and only "
            "`*` problems are taught with the calculator; use a problem inside the range"
        )
    msgs: list[Message] = [harmony.system(reasoning_effort=effort)]
    if tool or declare_tool:
        msgs.append(harmony.developer(tools=[CALCULATOR]))
    msgs.append(harmony.user(p.question))
    if tool:
        expression = f"{p.a} {p.op} {p.b}"
        msgs += [
            harmony.assistant(tool_analysis(p), channel="analysis"),
            harmony.tool_call("calculator", {"expression": expression}),
            harmony.tool_result("calculator", {"result": p.answer}),
            harmony.assistant(str(p.answer), channel="final"),
        ]
    else:
        msgs += [
            harmony.assistant(analysis_text(p, effort), channel="analysis"),
            harmony.assistant(str(p.answer), channel="final"),
        ]
    return msgs


# ---- problems and splits ----------------------------------------------------------------


def _draw(rng: random.Random, op: str, tool: bool = False) -> Problem:
    lo, hi = TOOL_RANGE if tool else RANGES[op]
    return Problem(op, rng.randint(lo, hi), rng.randint(lo, hi))


def split_problems(
    seed: int = 0,
    n_train: int = 3000,
    n_heldout: int = 100,
    n_tool: int = 0,
    clip_train: bool = False,
) -> tuple[list[Problem], list[Problem]]:
    """(train, heldout): distinct problems, no problem in both, a pure function of the inputs.

    n_heldout problems per op are drawn first (held out), then n_train per op that are not held
    out; with n_tool > 0, n_tool `*` problems from TOOL_RANGE are added to each split the same way.
    The held-out problems do not depend on n_train: `heldout_problems(seed, n)` gives them alone.
    Sorted by (op, a, b) within an op so that the order is reproducible; shuffle for training.
    With clip_train=True an op whose range is too small for n_train (`*`: 8,100 problems) gets
    as many as can be drawn (half its problems, less the held-out ones) instead of an error.
    """
    for name, v in (("n_train", n_train), ("n_heldout", n_heldout), ("n_tool", n_tool)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"split_problems: {name}={v!r}; expected an int >= 0")
    heldout: list[Problem] = []
    train: list[Problem] = []
    groups = [(op, False) for op in OPS] + ([("*", True)] if n_tool else [])
    for op, tool in groups:
        # one generator per group, held-out drawn first: the held-out problems depend only on
        # (seed, op, n_heldout), and a smaller n_heldout gives a subset of a larger one
        rng = random.Random(f"gptoss_edu.posttrain.data/{seed}/{op}/{'tool' if tool else 'own'}")
        lo, hi = TOOL_RANGE if tool else RANGES[op]
        space = (hi - lo + 1) ** 2
        want_h, want_t = (n_tool, n_tool) if tool else (n_heldout, n_train)
        if clip_train and not tool:
            want_t = max(0, min(want_t, space // 2 - want_h))
        if want_h + want_t > space // 2:
            raise ValueError(
                f"split_problems: {want_h} + {want_t} problems for {op!r} in {lo}..{hi}; "
                f"at most {space // 2} (half the {space} distinct problems) can be drawn"
            )
        seen: set[Problem] = set()
        for bucket, want in ((heldout, want_h), (train, want_t)):
            chosen = []
            while len(chosen) < want:
                p = _draw(rng, op, tool)
                if p not in seen:
                    seen.add(p)
                    chosen.append(p)
            bucket += sorted(chosen)
    return train, heldout


def heldout_problems(seed: int = 0, n: int = 100, n_tool: int = 0) -> list[Problem]:
    """The held-out split of split_problems(seed, ..., n_heldout=n, n_tool=n_tool), alone."""
    return split_problems(seed, n_train=0, n_heldout=n, n_tool=n_tool)[1]


def examples(problems, seed: int = 0, efforts=EFFORTS, declare_tool_share: float = 0.25):
    """One conversation per (problem, effort), in a seeded random order: a list of
    (problem, effort, messages). A share `declare_tool_share` of in-range conversations also
    declares the calculator (chosen by the seed)."""
    rng = random.Random(f"gptoss_edu.posttrain.examples/{seed}")
    out = []
    for p in problems:
        for effort in efforts:
            declare = rng.random() < declare_tool_share
            out.append((p, effort, conversation(p, effort, declare_tool=declare)))
    rng.shuffle(out)
    return out


__all__ = [
    "CALCULATOR",
    "EFFORTS",
    "LOW_ANALYSIS",
    "OPS",
    "RANGES",
    "TOOL_RANGE",
    "Problem",
    "analysis_text",
    "conversation",
    "examples",
    "heldout_problems",
    "split_problems",
    "tool_analysis",
]
