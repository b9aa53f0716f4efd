"""Loss by role (gptoss_edu.posttrain.diagnose, chapter 15): the roles of a hand-checked
analysis, and the losses of a model whose answer is known (uniform logits: ln V everywhere)."""

import math

import pytest
import torch

from gptoss_edu.posttrain.data import Problem, analysis_text, conversation
from gptoss_edu.posttrain.diagnose import (
    ROLES,
    char_roles,
    loss_by_role,
    repeat_test,
    token_losses,
)
from gptoss_edu.posttrain.reasoner import digit_tokenizer
from gptoss_edu.posttrain.sft import render_with_mask
from gptoss_edu.tiny import load_tiny_tokenizer


def _roles_of(text, roles, needle, start=0):
    i = text.index(needle, start)
    return roles[i : i + len(needle)]


def test_roles_of_an_addition_by_hand():
    text = analysis_text(Problem("+", 3064, 4979), "high")
    r = char_roles(text)
    q, above, arith, sofar, left, final = (ROLES[i] for i in (1, 2, 3, 5, 6, 7))
    assert _roles_of(text, r, "3064 and 4979") == [q] * 4 + [None] * 5 + [q] * 4
    line = "4 + 9 + 0 = 13, write 3 carry 1, so far 3, left 306 + 497"
    at = text.index(line)
    assert r[at] == above and r[at + 4] == above and r[at + 8] == above
    assert r[at + 12 : at + 14] == [arith, arith]
    assert r[at + line.index("so far 3") + 7] == sofar
    assert r[at + line.index("306")] == left
    assert _roles_of(text, r, "= 8043.") == [None, None, final, final, final, final, None]
    assert all(x is None for x, ch in zip(r, text) if not ch.isdigit())


class Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab)


@pytest.mark.parametrize(
    "p", [Problem("+", 3064, 4979), Problem("-", 425, 8943), Problem("*", 19, 53)]
)
def test_a_uniform_model_costs_ln_v_on_every_trained_token(p):
    tok = digit_tokenizer(load_tiny_tokenizer())
    conv = conversation(p, "high")
    rows = token_losses(Uniform(tok.n_vocab), tok, conv)
    _, mask = render_with_mask(conv, tok)
    assert len(rows) == sum(mask[1:])  # every trained token, no other
    assert all(abs(n - math.log(tok.n_vocab)) < 1e-4 for _, n, _ in rows)
    digits = [s for s, _, role in rows if role != ROLES[0]]
    assert all(any(c.isdigit() for c in s) for s in digits) and len(digits) > 20
    by = loss_by_role(Uniform(tok.n_vocab), tok, [p])
    assert set(by) <= set(ROLES) and sum(n for _, n in by.values()) == len(rows)


class Copier(torch.nn.Module):
    """A model that predicts, at every position, the token that followed the previous occurrence
    of the current pair of tokens (an ideal induction head), and is uniform where there is none."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        out = torch.zeros(*x.shape, self.vocab)
        seq = x[0].tolist()
        for t in range(1, len(seq)):
            for u in range(t - 1, 0, -1):
                if seq[u - 1 : u + 1] == seq[t - 1 : t + 1]:
                    out[0, t, seq[u + 1]] = 30.0
                    break
        return out


def test_repeat_test_tells_a_copier_from_a_guesser():
    tok = digit_tokenizer(load_tiny_tokenizer())
    guess = repeat_test(Uniform(tok.n_vocab), tok, n=2)
    assert abs(guess["first"] - math.log(tok.n_vocab)) < 1e-4
    assert abs(guess["second"] - guess["first"]) < 1e-4
    copy = repeat_test(Copier(tok.n_vocab), tok, n=4)
    assert copy["second"] < 0.5 * copy["first"], copy  # a repeated pair inside S misleads it


def test_each_digit_token_takes_the_role_of_its_character():
    tok = digit_tokenizer(load_tiny_tokenizer())
    p = Problem("+", 3064, 4979)
    text = analysis_text(p, "high")
    expected = [r for r, ch in zip(char_roles(text), text) if ch.isdigit()]
    expected += [ROLES[7]] * len(str(p.answer))  # the final channel's digits
    rows = token_losses(Uniform(tok.n_vocab), tok, conversation(p, "high"))
    assert [role for _, _, role in rows if role != ROLES[0]] == expected
