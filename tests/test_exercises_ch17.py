"""Chapter 17's checkers: pass a correct answer (visible and hidden cases), fail each classic
mistake with the line that names it."""

from __future__ import annotations

import torch

import gptoss_edu as ge
from gptoss_edu.exercises import ch17_distributed as ch17


def owner(experts, E, N):
    return experts // (E // N)


def split_sizes(experts, E, N):
    return torch.bincount(owner(experts, E, N).reshape(-1), minlength=N)


def test_correct_answers_pass_visible_and_hidden(capsys):
    def a2a(send):
        return [[send[r][d] for r in range(len(send))] for d in range(len(send))]

    def wire(T, k, H, N, b):
        return 2 * T * k * (N - 1) / N * H * b

    def imbalance(experts, E, N):
        return split_sizes(experts, E, N).max().item() / (experts.numel() / N)

    for seed in (None, 1, 2):
        kw = {} if seed is None else {"seed": seed}
        assert ch17.check_owner(owner, **kw)
        assert ch17.check_split_sizes(split_sizes, **kw)
        assert ch17.check_all_to_all(a2a, **kw)
        assert ch17.check_wire_bytes(wire, **kw)
        assert ch17.check_rank_imbalance(imbalance, **kw)
    assert ge.exercises.check_owner is ch17.check_owner


def test_classic_mistakes_are_named(capsys):
    assert not ch17.check_owner(lambda experts, E, N: experts % N)
    assert "round-robin" in capsys.readouterr().out
    assert not ch17.check_split_sizes(
        lambda experts, E, N: torch.bincount(owner(experts, E, N).reshape(-1))
    )
    assert "minlength" in capsys.readouterr().out
    assert not ch17.check_all_to_all(lambda send: send)
    assert "what each rank sends" in capsys.readouterr().out
    assert not ch17.check_wire_bytes(lambda T, k, H, N, b: 2 * T * k * H * b)
    assert "(N-1)/N" in capsys.readouterr().out
    assert not ch17.check_wire_bytes(lambda T, k, H, N, b: T * k * (N - 1) / N * H * b)
    assert "combine" in capsys.readouterr().out
    by_expert = lambda experts, E, N: (
        torch.bincount(experts.reshape(-1), minlength=E).max().item() / (experts.numel() / E)
    )
    assert not ch17.check_rank_imbalance(by_expert)
    assert "busiest *rank*" in capsys.readouterr().out


def test_unfinished_answer_is_not_done(capsys):
    def todo(*a):
        raise NotImplementedError("exercise 17.1")

    assert not ch17.check_owner(todo)
    assert "not done yet" in capsys.readouterr().out
