"""Checkers for chapter 14's exercises (exercises/14_training.ipynb): the learning-rate schedule,
next-token batches, the two router losses, the unigram baseline, and an open-ended extension
(balancing experts without an auxiliary loss, by a bias on the router's choice).

    ge.exercises.check_lr_schedule(my_lr_at)   # ✅ check_lr_schedule: passed

Each body takes `seed`: None runs the cases the notebook shows, an int draws new ones (the
autograder's hidden cases). References: `gptoss_edu.train` (chapter 14's final code).
"""

from __future__ import annotations

import math

import torch

from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_lr_schedule",
    "check_next_token_batch",
    "check_load_balancing_loss",
    "check_router_z_loss",
    "check_unigram_loss",
    "check_bias_balancing",
]


def _gen(seed: int | None, visible: int) -> torch.Generator:
    return torch.Generator().manual_seed(visible if seed is None else 20_000 + int(seed))


@Checker("check_lr_schedule")
def check_lr_schedule(fn, seed=None):
    """fn(step, steps, lr, min_lr, warmup) -> learning rate: linear warm-up, cosine to min_lr."""
    from ..train import TrainConfig

    settings = [(100, 3e-3, 3e-4, 10), (1700, 6e-3, 6e-4, 30)]
    if seed is not None:
        g = _gen(seed, 0)
        steps = int(torch.randint(50, 500, (1,), generator=g))
        settings = [(steps, 1e-2, 1e-3, int(torch.randint(1, 20, (1,), generator=g)))]
    for steps, lr, min_lr, warmup in settings:
        ref = TrainConfig(steps=steps, lr=lr, min_lr=min_lr, warmup_steps=warmup)
        end = fn(steps, steps, lr, min_lr, warmup)
        if isinstance(end, (int, float)) and math.isclose(end, 0, abs_tol=1e-12):
            raise ExerciseFailure(f"the cosine ends at 0; it should end at min_lr = {min_lr}")
        for step in sorted({0, 1, warmup - 1, warmup, (warmup + steps) // 2, steps - 1, steps}):
            got, want = fn(step, steps, lr, min_lr, warmup), ref.lr_at(step)
            try:
                got = float(got)
            except (TypeError, ValueError) as e:
                raise ExerciseFailure(f"expected a number, got {type(got).__name__}") from e
            if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
                continue
            if step == 0 and got == 0:
                raise ExerciseFailure(
                    "step 0 has lr 0: a step that learns nothing. Warm up as lr * (step + 1) / "
                    "warmup, so the last warm-up step reaches lr"
                )
            if step == steps and math.isclose(got, 0, abs_tol=1e-12):
                raise ExerciseFailure(f"the cosine ends at 0; it should end at min_lr = {min_lr}")
            progress_total = min(1.0, step / steps)
            wrong = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress_total))
            if step >= warmup and math.isclose(got, wrong, rel_tol=1e-9):
                raise ExerciseFailure(
                    "the cosine runs over all steps; it starts after the warm-up: progress = "
                    "(step - warmup) / (steps - warmup)"
                )
            raise ExerciseFailure(
                f"steps={steps}, lr={lr}, min_lr={min_lr}, warmup={warmup}: step {step} gives "
                f"{got:.6g}, expected {want:.6g}"
            )
    return "warm-up, cosine and floor"


@Checker("check_next_token_batch")
def check_next_token_batch(fn, seed=None):
    """fn(data (N,), starts (B,), seq_len) -> (x, y), both (B, seq_len): y is x shifted by one."""
    g = _gen(seed, 14)
    data = torch.arange(100, 160) if seed is None else torch.randint(0, 256, (80,), generator=g)
    starts = (
        torch.tensor([0, 7, 60 - 9]) if seed is None else torch.randint(0, 70, (4,), generator=g)
    )
    seq = 8
    want_x = torch.stack([data[s : s + seq] for s in starts.tolist()])
    want_y = torch.stack([data[s + 1 : s + seq + 1] for s in starts.tolist()])
    got = fn(data, starts, seq)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise ExerciseFailure(f"expected a tuple (x, y), got {type(got).__name__}")
    x, y = got
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape:
        if torch.equal(x, want_y) and torch.equal(y, want_x):
            raise ExerciseFailure("x and y are swapped: x is the input, y the next tokens")
    if isinstance(y, torch.Tensor) and y.shape == want_x.shape and torch.equal(y, want_x):
        raise ExerciseFailure(
            "y equals x: the model would learn to copy its input. The target of position t is the "
            "token at t + 1"
        )
    expect_close(x, want_x, "x", rtol=0, atol=0)
    expect_close(y, want_y, "y", rtol=0, atol=0)
    return f"{len(starts)} windows of {seq}"


def _ref_aux(logits, k):
    from ..train import load_balancing_loss

    return load_balancing_loss(logits, k)


@Checker("check_load_balancing_loss")
def check_load_balancing_loss(fn, seed=None):
    """fn(router_logits (N, E), k) -> E * sum_e f_e P_e, differentiable in the logits."""
    from ..model import route

    g = _gen(seed, 141)
    cases = []
    for N, E, k in ((64, 8, 2), (200, 32, 4)) if seed is None else ((50, 12, 3),):
        cases.append((torch.randn(N, E, generator=g) * 2, k))
    cases.append((torch.zeros(64, 8), 2))  # uniform router: exactly 1
    for logits, k in cases:
        logits = logits.clone().requires_grad_(True)
        want = _ref_aux(logits.detach(), k)
        got = fn(logits, k)
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailure(f"expected a tensor, got {type(got).__name__}")
        if got.shape != torch.Size([]):
            raise ExerciseFailure(f"expected a scalar (shape ()), got shape {tuple(got.shape)}")
        N, E = logits.shape
        probs = torch.softmax(logits.detach().double(), -1)
        ids = route(logits.detach(), k)[0]
        f = torch.bincount(ids.reshape(-1), minlength=E).double()
        v = float(got.detach())
        if math.isclose(v, float(E * ((f / N) * probs.mean(0)).sum()), rel_tol=1e-4) and k > 1:
            raise ExerciseFailure(
                f"f sums to k = {k}: divide the counts by N * k (every token makes k assignments)"
            )
        top1 = torch.bincount(ids[:, 0], minlength=E).double() / N
        if not math.isclose(float(want), float(E * (top1 * probs.mean(0)).sum()), rel_tol=1e-6):
            if math.isclose(v, float(E * (top1 * probs.mean(0)).sum()), rel_tol=1e-4):
                raise ExerciseFailure("f counts only each token's first choice: count all k")
        if math.isclose(v, float(want) / E, rel_tol=1e-4):
            raise ExerciseFailure("missing the factor E: a balanced router must give exactly 1")
        expect_close(
            got.detach().float(), want.float(), f"load_balancing_loss (N={N}, E={E}, k={k})"
        )
        if not got.requires_grad:
            raise ExerciseFailure(
                "no gradient reaches the logits: P_e must come from softmax(logits) (only f, the "
                "counts, is without gradient)"
            )
        (grad,) = torch.autograd.grad(got, logits)
        (want_grad,) = torch.autograd.grad(_ref_aux(logits, k), logits)
        expect_close(grad, want_grad, "gradient of the loss", rtol=1e-3, atol=1e-6)
    return "1 when balanced, gradient through P only"


@Checker("check_router_z_loss")
def check_router_z_loss(fn, seed=None):
    """fn(router_logits (N, E)) -> mean over tokens of logsumexp(logits)^2."""
    g = _gen(seed, 142)
    cases = [torch.zeros(4, 8), torch.randn(32, 8, generator=g) * 3]
    cases.append(torch.full((3, 4), 100.0))  # exp overflows float32 without logsumexp
    for logits in cases:
        want = torch.logsumexp(logits.double(), -1).pow(2).mean().float()
        got = fn(logits)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            v = float(got)
            lse = torch.logsumexp(logits.double(), -1)
            if math.isnan(v) or math.isinf(v):
                raise ExerciseFailure(
                    "inf or NaN for logits of 100: exp overflows; torch.logsumexp does not"
                )
            if math.isclose(v, float(lse.pow(2).sum()), rel_tol=1e-5) and len(logits) > 1:
                raise ExerciseFailure("summed over tokens: take the mean")
            if math.isclose(v, float(lse.mean()), rel_tol=1e-5) and float(want) != float(
                lse.mean()
            ):
                raise ExerciseFailure("not squared: the z-loss is the mean of logsumexp squared")
            if math.isclose(v, float(lse.mean().pow(2)), rel_tol=1e-5) and not math.isclose(
                float(want), float(lse.mean().pow(2)), rel_tol=1e-5
            ):
                raise ExerciseFailure("squared after the mean: square each token's logsumexp first")
            got = got.reshape(())
        expect_close(got, want, "router_z_loss", rtol=1e-5, atol=1e-6)
    return f"{math.log(8) ** 2:.3f} for zero logits over 8 experts"


@Checker("check_unigram_loss")
def check_unigram_loss(fn, seed=None):
    """fn(train_ids, held_ids, vocab_size) -> held-out nats/token of an add-one unigram model,
    scored on held_ids[1:] (the tokens the models of chapter 14 are scored on)."""
    from ..train import ngram_baselines

    g = _gen(seed, 143)
    V = 16 if seed is None else int(torch.randint(8, 40, (1,), generator=g))
    train = torch.randint(0, V // 2, (500,), generator=g)  # half the vocabulary never seen
    held = torch.randint(0, V, (120,), generator=g)
    want = ngram_baselines(train, held, V)["unigram"]
    got = fn(train, held, V)
    try:
        got = float(got)
    except (TypeError, ValueError) as e:
        raise ExerciseFailure(f"expected a number, got {type(got).__name__}") from e
    if math.isinf(got) or math.isnan(got):
        raise ExerciseFailure(
            "infinite loss: a held-out token never seen in training has probability 0; add one "
            "to every count (add-one smoothing) before normalising"
        )
    counts = torch.bincount(train, minlength=V).double() + 1
    p = counts / counts.sum()
    if math.isclose(got, float(-p[held].log().mean()), rel_tol=1e-9) and held[0] != held[-1]:
        raise ExerciseFailure(
            "scored on all of held_ids; the models are scored on held_ids[1:] (the first token "
            "has no context), so score the baseline on the same tokens"
        )
    if math.isclose(got, want / math.log(2), rel_tol=1e-6):
        raise ExerciseFailure("this is in bits (log2); chapter 14 measures nats (ln)")
    if not math.isclose(got, want, rel_tol=1e-6):
        raise ExerciseFailure(f"V={V}: got {got:.6f} nats/token, expected {want:.6f}")
    return f"V = {V}, with unseen tokens"


@Checker("check_bias_balancing")
def check_bias_balancing(fn, seed=None):
    """Open-ended: fn(bias (E,), load (E,), step) -> new bias. The simulated router picks its top-k
    experts by logits + bias, the gate weights come from the logits alone; your rule must bring a
    badly skewed router to a load entropy within 0.1 bits of perfect (log2 E) within 300 steps,
    and keep it there, without touching the logits."""
    from ..model import route

    g = _gen(seed, 144)
    E, k, N = 16, 2, 256
    skew = torch.linspace(3.0, -3.0, E)  # expert 0 is strongly preferred by every token
    bias = torch.zeros(E)
    history = []
    for step in range(400):
        logits = torch.randn(N, E, generator=g) + skew  # (N, E), fresh tokens every step
        ids, _ = route(logits + bias, k)  # choose with the bias ...
        load = torch.bincount(ids.reshape(-1), minlength=E).float() / ids.numel()
        history.append(float(-(load * load.clamp(min=1e-12).log2()).sum()))
        new = fn(bias.clone(), load.clone(), step)
        if not isinstance(new, torch.Tensor) or new.shape != bias.shape:
            raise ExerciseFailure(
                f"return the new bias, a tensor of shape ({E},); got "
                f"{type(new).__name__} {tuple(getattr(new, 'shape', ()))}"
            )
        if not torch.isfinite(new).all():
            raise ExerciseFailure(f"step {step}: the bias is not finite: {new.tolist()}")
        bias = new.float()
    target = math.log2(E) - 0.1
    first = next((i for i, h in enumerate(history) if h >= target), None)
    tail = min(history[300:])
    if first is None or first > 300:
        raise ExerciseFailure(
            f"load entropy reached {max(history):.2f} bits at best (perfect: {math.log2(E):.2f}, "
            f"needed {target:.2f} by step 300; it started at {history[0]:.2f}). Push the bias of "
            "busy experts down and of idle ones up, a little every step"
        )
    if tail < target:
        raise ExerciseFailure(
            f"balanced at step {first}, but the load entropy fell back to {tail:.2f} bits later: "
            "does your update keep growing? Make its step size bounded"
        )
    return f"balanced by step {first}, {tail:.2f} bits or more after step 300"
