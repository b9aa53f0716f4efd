"""Chapters 13 and 14's checkers accept a right answer, reject each classic mistake with a line
that names it, and draw hidden cases from a seed (the autograder's). The right answers here are
written independently of the checkers (float64 where it matters, the chapters' formulas)."""

import keyword
import math
import string

import pytest
import torch

from gptoss_edu.exercises import ch13_inside as ch13
from gptoss_edu.exercises import ch14_training as ch14
from gptoss_edu.model import Recorder, route


def run(check, fn, capsys, **kw):
    ok = check(fn, **kw)
    return ok, capsys.readouterr().out


def passes(check, fn, capsys, **kw):
    ok, out = run(check, fn, capsys, **kw)
    assert ok and out.startswith("✅"), out


def fails(check, fn, capsys, words):
    ok, out = run(check, fn, capsys)
    assert not ok and out.startswith("❌"), out
    assert words in out, out


# ---------------------------------------------------------------- chapter 13


def entropy(logits):
    p = torch.softmax(logits.double(), -1)
    return (-(p * p.clamp(min=1e-300).log()).sum(-1)).float()


def test_router_entropy(capsys):
    passes(ch13.check_router_entropy, entropy, capsys)
    passes(ch13.check_router_entropy, entropy, capsys, seed=3)
    fails(ch13.check_router_entropy, lambda l: entropy(l) / math.log(2), capsys, "bits")
    naive = lambda l: -(torch.softmax(l, -1) * torch.softmax(l, -1).log()).sum(-1)
    fails(ch13.check_router_entropy, naive, capsys, "NaN")
    top2 = lambda l: entropy(torch.topk(l, 2).values)
    fails(ch13.check_router_entropy, top2, capsys, "top-2 gate weights")


def load(ids, E):
    out = torch.zeros(E)
    for e in ids.reshape(-1).tolist():
        out[e] += 1
    return out / ids.numel()


def test_expert_load(capsys):
    passes(ch13.check_expert_load, load, capsys)
    passes(ch13.check_expert_load, load, capsys, seed=1)
    fails(ch13.check_expert_load, lambda i, E: load(i, E) * i.shape[1], capsys, "T*k")
    fails(ch13.check_expert_load, lambda i, E: load(i, E) * i.numel(), capsys, "counts")
    fails(ch13.check_expert_load, lambda i, E: load(i[:, :1], E), capsys, "first choice")
    short = lambda i, E: torch.bincount(i.reshape(-1)).float() / i.numel()
    fails(ch13.check_expert_load, short, capsys, "minlength")


def first_choice(model, tokens, column=0):
    rec = Recorder("routing")
    with torch.no_grad():
        model(tokens, recorder=rec)
    return torch.stack([experts[:, column] for experts, _ in rec["routing"]])


@pytest.mark.slow  # loads and runs the tiny model (about 5 s on an idle machine)
def test_first_choice(capsys):
    passes(ch13.check_first_choice, first_choice, capsys)
    passes(ch13.check_first_choice, first_choice, capsys, seed=2)
    fails(ch13.check_first_choice, lambda m, t: first_choice(m, t, -1), capsys, "last-choice")
    fails(ch13.check_first_choice, lambda m, t: first_choice(m, t).T, capsys, "(T, L)")
    fails(ch13.check_first_choice, lambda m, t: first_choice(m, t).flip(0), capsys, "reverse")


def sink(scores, z):
    s = torch.cat([scores.double(), torch.tensor([float(z)], dtype=torch.float64)])
    return float(torch.exp(s[-1] - torch.logsumexp(s, 0)))


def test_sink_share(capsys):
    passes(ch13.check_sink_share, sink, capsys)
    passes(ch13.check_sink_share, sink, capsys, seed=4)
    no_sink = lambda s, z: math.exp(z) / float(torch.exp(s.double()).sum())
    fails(ch13.check_sink_share, no_sink, capsys, "denominator")
    keys = lambda s, z: 1 - sink(s, z)
    fails(ch13.check_sink_share, keys, capsys, "real keys")

    def overflow(s, z):
        e = torch.exp(torch.cat([s.float(), torch.tensor([float(z)])]))
        return float(e[-1] / e.sum())

    fails(ch13.check_sink_share, overflow, capsys, "overflows")


def mi(a, b, na, nb):
    n = len(a)
    total = 0.0
    pa = [sum(1 for x in a.tolist() if x == i) / n for i in range(na)]
    pb = [sum(1 for y in b.tolist() if y == j) / n for j in range(nb)]
    pairs = list(zip(a.tolist(), b.tolist()))
    for i in range(na):
        for j in range(nb):
            p = pairs.count((i, j)) / n
            if p:
                total += p * math.log(p / (pa[i] * pb[j]))
    return total


def test_mutual_information(capsys):
    passes(ch13.check_mutual_information, mi, capsys)
    fails(ch13.check_mutual_information, lambda *x: mi(*x) / math.log(2), capsys, "bits")

    def conditional_only(a, b, na, nb):  # divides the joint by P(a) only: -H(B|A)
        n = len(a)
        pairs = list(zip(a.tolist(), b.tolist()))
        pa = [a.tolist().count(i) / n for i in range(na)]
        return sum(
            (pairs.count((i, j)) / n) * math.log((pairs.count((i, j)) / n) / pa[i])
            for i in range(na)
            for j in range(nb)
            if pairs.count((i, j))
        )

    fails(ch13.check_mutual_information, conditional_only, capsys, "product of the marginals")


def kind_of(piece):  # chapter 13's five kinds
    s = piece.strip()
    if piece and not s:
        return "indent"
    if s.isdigit():
        return "digit"
    if s in keyword.kwlist:
        return "keyword"
    if s and all(c in string.punctuation for c in s):
        return "punct"
    return "name/other"


@pytest.mark.slow
def test_token_kinds(capsys):
    passes(ch13.check_token_kinds, kind_of, capsys)
    fails(ch13.check_token_kinds, lambda p: "all", capsys, "at least 3 kinds")
    fails(ch13.check_token_kinds, lambda p: hash(p) % 4, capsys, "do not sort")


# ---------------------------------------------------------------- chapter 14


def lr(step, steps, lr, min_lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (steps - warmup))
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def test_lr_schedule(capsys):
    passes(ch14.check_lr_schedule, lr, capsys)
    passes(ch14.check_lr_schedule, lr, capsys, seed=7)
    zero_start = lambda s, S, a, b, w: a * s / w if s < w else lr(s, S, a, b, w)
    fails(ch14.check_lr_schedule, zero_start, capsys, "step 0 has lr 0")
    to_zero = lambda s, S, a, b, w: lr(s, S, a, 0.0, w)
    fails(ch14.check_lr_schedule, to_zero, capsys, "ends at 0")

    def all_steps(s, S, a, b, w):
        if s < w:
            return a * (s + 1) / w
        return b + (a - b) * (1 + math.cos(math.pi * min(1.0, s / S))) / 2

    fails(ch14.check_lr_schedule, all_steps, capsys, "after the warm-up")


def batch(data, starts, T):
    x = torch.stack([data[s : s + T] for s in starts.tolist()])
    y = torch.stack([data[s + 1 : s + 1 + T] for s in starts.tolist()])
    return x, y


def test_next_token_batch(capsys):
    passes(ch14.check_next_token_batch, batch, capsys)
    passes(ch14.check_next_token_batch, batch, capsys, seed=8)
    fails(ch14.check_next_token_batch, lambda d, s, T: (batch(d, s, T)[0],) * 2, capsys, "copy")
    fails(ch14.check_next_token_batch, lambda d, s, T: batch(d, s, T)[::-1], capsys, "swapped")


def aux(logits, k, per=None, first_only=False, factor=True, detach=False):
    N, E = logits.shape
    probs = torch.softmax((logits.detach() if detach else logits).double(), -1)
    ids, _ = route(logits.detach(), k)
    ids = ids[:, :1] if first_only else ids
    f = torch.bincount(ids.reshape(-1), minlength=E).double() / (per or ids.numel())
    return ((E if factor else 1) * (f * probs.mean(0)).sum()).float()


def test_load_balancing_loss(capsys):
    passes(ch14.check_load_balancing_loss, aux, capsys)
    passes(ch14.check_load_balancing_loss, aux, capsys, seed=9)
    fails(ch14.check_load_balancing_loss, lambda l, k: aux(l, k, per=len(l)), capsys, "N * k")
    fails(ch14.check_load_balancing_loss, lambda l, k: aux(l, k, first_only=True), capsys, "first")
    fails(ch14.check_load_balancing_loss, lambda l, k: aux(l, k, factor=False), capsys, "factor E")
    fails(ch14.check_load_balancing_loss, lambda l, k: aux(l, k, detach=True), capsys, "gradient")


def test_router_z_loss(capsys):
    z = lambda l: (torch.logsumexp(l.double(), -1) ** 2).mean().float()
    passes(ch14.check_router_z_loss, z, capsys)
    fails(ch14.check_router_z_loss, lambda l: (torch.logsumexp(l, -1) ** 2).sum(), capsys, "mean")
    fails(ch14.check_router_z_loss, lambda l: torch.logsumexp(l, -1).mean(), capsys, "squared")
    naive = lambda l: (torch.exp(l).sum(-1).log() ** 2).mean()
    fails(ch14.check_router_z_loss, naive, capsys, "overflow")


def unigram(train, held, V):
    counts = [1.0] * V
    for t in train.tolist():
        counts[t] += 1
    total = sum(counts)
    return -sum(math.log(counts[t] / total) for t in held[1:].tolist()) / (len(held) - 1)


def test_unigram_loss(capsys):
    passes(ch14.check_unigram_loss, unigram, capsys)
    passes(ch14.check_unigram_loss, unigram, capsys, seed=10)
    all_held = lambda tr, he, V: unigram(tr, torch.cat([he[:1], he]), V)
    fails(ch14.check_unigram_loss, all_held, capsys, "held_ids[1:]")

    def unsmoothed(tr, he, V):
        p = torch.bincount(tr, minlength=V).double() / len(tr)
        return float(-p[he[1:]].log().mean())

    fails(ch14.check_unigram_loss, unsmoothed, capsys, "add-one")
    fails(ch14.check_unigram_loss, lambda *a: unigram(*a) / math.log(2), capsys, "bits")


@pytest.mark.slow
def test_bias_balancing(capsys):
    passes(
        ch14.check_bias_balancing, lambda b, load, s: b - 0.01 * torch.sign(load - 1 / 16), capsys
    )
    fails(ch14.check_bias_balancing, lambda b, load, s: b, capsys, "at best")
    grow = lambda b, load, s: b - 0.001 * (s + 1) * torch.sign(load - load.mean())
    fails(ch14.check_bias_balancing, grow, capsys, "bounded")
