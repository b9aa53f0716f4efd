"""Checkers for chapter 16's exercises (exercises/16_fine_tuning_and_evaluation.ipynb): LoRA
parameters of a config, the Wilson interval, the forgetting metric (replies with an empty
analysis), and a new skill of the reader's own design.

    ge.exercises.check_lora_parameters(my_lora_parameters)   # ✅ check_lora_parameters: passed

The references are gptoss_edu.posttrain.lora.lora_parameters, gptoss_edu.evaluate.wilson_interval
and hand-checkable cases. The checkers recognise the classic mistakes: a LoRA pair counted as the
full d_in x d_out matrix, or as one factor only, or for one layer; the textbook (Wald) interval
p +- z sqrt(p(1-p)/n) in place of Wilson's; an "empty analysis" that counts only missing analysis
messages (not empty ones), or a count in place of a share; a generator that is not a function
of its seed.
"""

from __future__ import annotations

import math
import random
import re

from ..evaluate import wilson_interval
from ._common import Checker, ExerciseFailure, cases

__all__ = [
    "check_lora_parameters",
    "check_wilson_interval",
    "check_empty_analysis_share",
    "check_new_skill",
]


def _config(layers, H, heads, kv_heads, head_dim):
    from ..config import ModelConfig

    return ModelConfig(
        num_hidden_layers=layers,
        hidden_size=H,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
    )


@Checker("check_lora_parameters")
def check_lora_parameters(fn, seed=None):
    """fn(config, r) -> int: LoRA parameters with rank r on the attention of every layer of
    `config`: the qkv projection (H -> qkv_dim) and the output projection (q_dim -> H), each
    adapted by A (r x d_in) and B (d_out x r)."""
    from ..config import ModelConfig
    from ..posttrain.lora import lora_parameters

    def draw(rng):
        heads = rng.choice([4, 8, 64])
        return (rng.randint(1, 36), rng.choice([64, 128, 2880]), heads,
                rng.choice([k for k in (1, 2, 8) if heads % k == 0]), rng.choice([32, 64]),
                rng.choice([1, 4, 8, 16, 64]))  # fmt: skip

    visible = [("tiny", 8), ("20b", 8), ("120b", 16)]
    for case in cases(visible, seed, draw):
        if isinstance(case[0], str):
            name, r = case
            config = {
                "tiny": ModelConfig.tiny,
                "20b": ModelConfig.gpt_oss_20b,
                "120b": ModelConfig.gpt_oss_120b,
            }[name]()
        else:
            config, r, name = _config(*case[:5]), case[5], "a drawn config"
        want = lora_parameters(config, ("attention",), r)
        got = fn(config, r)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailure(f"expected an int, got {type(got).__name__}")
        if got == want:
            continue
        c, L, H = config, config.num_hidden_layers, config.hidden_size
        full = L * (H * c.qkv_dim + c.q_dim * H)
        if got == full:
            raise ExerciseFailure(
                "that is the size of the full matrices; LoRA trains two thin factors per matrix, "
                "A (r x d_in) and B (d_out x r): r * (d_in + d_out) parameters"
            )
        if got in (L * r * (H + c.q_dim), L * r * (c.qkv_dim + H)):
            raise ExerciseFailure("you counted one factor per matrix; LoRA has two, A and B")
        if L > 1 and got * L == want:
            raise ExerciseFailure(f"that is one layer; {name} has {L} layers, each adapted")
        raise ExerciseFailure(f"{name}, r={r}: got {got:,}, expected {want:,}")
    return "r * (d_in + d_out) per adapted matrix, every layer"


@Checker("check_wilson_interval")
def check_wilson_interval(fn, seed=None):
    """fn(k, n) -> (low, high): the Wilson score 95% interval (z = 1.96) of k successes in n."""

    def draw(rng):
        n = rng.randint(1, 500)
        return rng.choice([0, n, rng.randint(0, n)]), n

    for k, n in cases(((7, 10), (0, 5), (30, 30), (41, 100)), seed, draw):
        want = wilson_interval(k, n)
        got = fn(k, n)
        try:
            lo, hi = (float(v) for v in got)
        except (TypeError, ValueError):
            raise ExerciseFailure(f"expected a pair (low, high), got {got!r}") from None
        if abs(lo - want[0]) <= 1e-3 and abs(hi - want[1]) <= 1e-3:
            continue
        p = k / n
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        if abs(lo - (p - half)) <= 1e-3 or abs(lo - max(0.0, p - half)) <= 1e-3:
            if abs(hi - min(1.0, p + half)) <= 1e-3 or abs(hi - (p + half)) <= 1e-3:
                raise ExerciseFailure(
                    f"k={k}, n={n}: that is the textbook (Wald) interval p +- z sqrt(p(1-p)/n); "
                    "at k = 0 or k = n it has width 0, as if a handful of tasks proved a "
                    "certainty. Wilson's centre moves toward 1/2 and its width never vanishes"
                )
        raise ExerciseFailure(
            f"k={k}, n={n}: got ({lo:.4f}, {hi:.4f}), expected ({want[0]:.4f}, {want[1]:.4f})"
        )
    return "Wilson, not Wald"


def _replies(rng: random.Random, n: int):
    """n (kind, reply) pairs; a reply is a list of harmony.Message whose analysis is absent,
    empty or written."""
    from .. import harmony

    out = []
    for _ in range(n):
        kind = rng.choice(["absent", "empty", "text", "text"])
        msgs = []
        if kind == "empty":
            msgs.append(harmony.assistant("", channel="analysis"))
        elif kind == "text":
            msgs.append(harmony.assistant("7 + 5 = 12, write 2 carry 1", channel="analysis"))
        msgs.append(harmony.assistant(str(rng.randint(0, 99)), channel="final"))
        out.append((kind, msgs))
    return out


def _one_of_each():
    from .. import harmony

    final = harmony.assistant("12", channel="final")
    return [
        ("absent", [final]),
        ("empty", [harmony.assistant("", channel="analysis"), final]),
        ("text", [harmony.assistant("5 + 7 = 12", channel="analysis"), final]),
        ("absent", [final]),
    ]


@Checker("check_empty_analysis_share")
def check_empty_analysis_share(fn, seed=None):
    """fn(replies) -> float in [0, 1]: the share of replies (each a list of harmony.Message)
    whose analysis is absent or empty: no analysis message, or analysis messages with no text
    (what gptoss_edu.posttrain.forgetting.reasoning_summary counts as 0 analysis tokens)."""
    for s, n in cases(((None, 4), (1, 9), (2, 12)), seed, lambda rng: (rng.randint(0, 10**6), 15)):
        replies = _one_of_each() if s is None else _replies(random.Random(s), n)
        kinds = [k for k, _ in replies]
        n_empty = sum(k != "text" for k in kinds)
        want = n_empty / len(kinds)
        got = fn([list(m) for _, m in replies])
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise ExerciseFailure(f"expected a float, got {type(got).__name__}")
        if abs(got - want) <= 1e-9:
            continue
        if abs(got - n_empty) <= 1e-9 and len(kinds) > 1:
            raise ExerciseFailure("that is a count; return the share (divide by the number)")
        if abs(got - kinds.count("absent") / len(kinds)) <= 1e-9:
            raise ExerciseFailure(
                "you counted only replies with no analysis message; an analysis message with no "
                "text is an empty analysis too (what fine-tuned models emit)"
            )
        raise ExerciseFailure(f"replies of kinds {kinds}: got {got}, expected {want}")
    return "absent and empty analyses, as a share"


CH15 = re.compile(r"^What is \d+ [-+*] \d+\?$")


@Checker("check_new_skill")
def check_new_skill(fn, seed=None):
    """fn(seed, n) -> list of n (question, answer) string pairs: a new skill of your design.
    Checked: a pure function of the seed, n distinct non-empty questions, answers non-empty and
    the same for the same question, not the chapter-15 `What is A op B?` format."""
    for s, n in cases(((0, 20), (1, 50)), seed, lambda rng: (rng.randint(0, 10**6), 30)):
        got = fn(s, n)
        if not isinstance(got, list) or len(got) != n:
            raise ExerciseFailure(
                f"fn({s}, {n}): expected a list of {n} pairs, got "
                f"{type(got).__name__} of length {len(got) if hasattr(got, '__len__') else '?'}"
            )
        for i, pair in enumerate(got):
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or not all(isinstance(x, str) and x.strip() for x in pair)
            ):
                raise ExerciseFailure(
                    f"item {i} is {pair!r}; expected a (question, answer) tuple of non-empty str"
                )
        if got != fn(s, n):
            raise ExerciseFailure(
                f"fn({s}, {n}) gave two different lists: draw from random.Random(seed), not from "
                "the global random module or the clock"
            )
        questions = [q for q, _ in got]
        if len(set(questions)) != n:
            raise ExerciseFailure(f"fn({s}, {n}): {n - len(set(questions))} repeated questions")
        if any(CH15.match(q) for q in questions):
            raise ExerciseFailure(
                "some questions are chapter-15 arithmetic (`What is A + B?`); the point is a "
                "skill the reasoner was not trained on"
            )
        if fn(s + 1, n) == got:
            raise ExerciseFailure(f"fn({s + 1}, {n}) == fn({s}, {n}): the seed changes nothing")
    return "a seeded, distinct, new skill"
