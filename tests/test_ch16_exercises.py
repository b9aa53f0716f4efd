"""Chapter 16's checkers: a solution passes (visible and hidden cases), an unfinished starter
fails, and each classic mistake is named."""

import math
import random

import pytest

import gptoss_edu as ge
from gptoss_edu.exercises import ch16_finetune as ch


def lora_solution(config, r):
    H = config.hidden_size
    qkv = (config.num_attention_heads + 2 * config.num_key_value_heads) * config.head_dim
    q = config.num_attention_heads * config.head_dim
    return config.num_hidden_layers * (r * (H + qkv) + r * (q + H))


def wilson_solution(k, n, z=1.96):
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z / d * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, c - h), min(1.0, c + h)


def empty_solution(replies):
    def empty(reply):
        return all(not m.text for m in reply if m.channel == "analysis")

    return sum(empty(r) for r in replies) / len(replies)


def skill_solution(seed, n):
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        w = "".join(rng.choice("abcdefgh") for _ in range(5))
        if w not in seen:
            seen.add(w)
            out.append((f"Spell {w} backwards", w[::-1]))
    return out


def starter(*args):
    raise NotImplementedError("exercise 16.1: write the body of f()")


CASES = [
    (ch.check_lora_parameters, lora_solution),
    (ch.check_wilson_interval, wilson_solution),
    (ch.check_empty_analysis_share, empty_solution),
    (ch.check_new_skill, skill_solution),
]


@pytest.mark.parametrize("check, solution", CASES)
def test_solution_passes_visible_and_hidden(check, solution, capsys):
    assert check(solution)
    assert check.hidden
    for seed in (0, 7):
        assert check(solution, seed=seed)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("check, _", CASES)
def test_starter_fails_with_not_done(check, _, capsys):
    assert not check(starter)
    assert "not done yet" in capsys.readouterr().out


def test_lora_hand_checked_and_mistakes(capsys):
    tiny = ge.ModelConfig.tiny()  # H 128, 4 heads, 2 kv heads, head_dim 32: qkv 256, q 128
    assert lora_solution(tiny, 8) == 4 * (8 * (128 + 256) + 8 * (128 + 128)) == 20480
    full = lambda c, r: c.num_hidden_layers * (c.hidden_size * c.qkv_dim + c.q_dim * c.hidden_size)  # noqa: E731
    assert not ch.check_lora_parameters(full)
    assert "full matrices" in capsys.readouterr().out
    one_factor = lambda c, r: c.num_hidden_layers * r * (c.hidden_size + c.q_dim)  # noqa: E731
    assert not ch.check_lora_parameters(one_factor)
    assert "one factor" in capsys.readouterr().out
    one_layer = lambda c, r: lora_solution(c, r) // c.num_hidden_layers  # noqa: E731
    assert not ch.check_lora_parameters(one_layer)
    assert "layers" in capsys.readouterr().out


def test_wilson_hand_checked_and_wald_named(capsys):
    lo, hi = wilson_solution(7, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.397, 0.892)  # evaluate.py's docstring, by hand

    def wald(k, n):
        p = k / n
        h = 1.96 * math.sqrt(p * (1 - p) / n)
        return max(0.0, p - h), min(1.0, p + h)

    assert not ch.check_wilson_interval(wald)
    assert "Wald" in capsys.readouterr().out


def test_empty_analysis_mistakes(capsys):
    def absent_only(replies):
        return sum(not any(m.channel == "analysis" for m in r) for r in replies) / len(replies)

    assert not ch.check_empty_analysis_share(absent_only)
    assert "no analysis message" in capsys.readouterr().out

    def count(replies):
        return float(sum(all(not m.text for m in r if m.channel == "analysis") for r in replies))

    assert not ch.check_empty_analysis_share(count)
    assert "count" in capsys.readouterr().out


def test_new_skill_mistakes(capsys):
    def unseeded(seed, n):
        return [(f"Spell {random.random()}", "x") for _ in range(n)]

    assert not ch.check_new_skill(unseeded)
    assert "random.Random(seed)" in capsys.readouterr().out

    def arithmetic(seed, n):
        rng = random.Random(seed)
        return [(f"What is {i} + {rng.randint(0, 9)}?", "x") for i in range(n)]

    assert not ch.check_new_skill(arithmetic)
    assert "chapter-15" in capsys.readouterr().out
