"""Checkers for chapter 13's exercises (exercises/13_looking_inside.ipynb): router entropy, expert
load, the first-choice expert of every layer from a `Recorder`, the sink's share of attention,
mutual information, and an open-ended extension (your own token kinds, measured).

    ge.exercises.check_router_entropy(my_router_entropy)   # ✅ check_router_entropy: passed

Each body takes `seed`: None runs the cases the notebook shows, an int draws new ones (the
autograder's hidden cases). References: chapter 13's cells, `gptoss_edu.viz.explorer`,
`gptoss_edu.model.route`.
"""

from __future__ import annotations

import functools
import math

import torch

from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_router_entropy",
    "check_expert_load",
    "check_first_choice",
    "check_sink_share",
    "check_mutual_information",
    "check_token_kinds",
]


def _gen(seed: int | None, visible: int) -> torch.Generator:
    """A generator for the visible cases (fixed) or for hidden ones (from the grader's seed)."""
    return torch.Generator().manual_seed(visible if seed is None else 10_000 + int(seed))


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    p = probs.double()
    return -(p * p.clamp(min=1e-300).log()).sum(-1)


@Checker("check_router_entropy")
def check_router_entropy(fn, seed=None):
    """fn(router_logits (T, E)) -> (T,) entropy in nats of softmax over all E experts."""
    g = _gen(seed, 13)
    E = 8 if seed is None else int(torch.randint(4, 33, (1,), generator=g))
    logits = torch.randn(6, E, generator=g) * 3
    logits[0] = 0.0  # uniform: ln E
    logits[1, 0] = 200.0  # one expert certain: the others' p = exp(-200) is 0 in float32
    want = _entropy(torch.softmax(logits.double(), -1)).float()
    got = fn(logits)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
        g_ = got.double()
        if torch.isnan(g_).any():
            raise ExerciseFailure(
                "NaN in the entropy: p ln p is 0 when p is 0 (or underflows); clamp p before the "
                "log, e.g. p.clamp(min=1e-30).log()"
            )
        if torch.allclose(g_, want.double() / math.log(2), rtol=1e-4, atol=1e-5):
            raise ExerciseFailure(
                "this is in bits (log2); the chapter measures entropy in nats (ln)"
            )
        k_probs = torch.softmax(torch.topk(logits, 2).values.double(), -1)
        if torch.allclose(g_, _entropy(k_probs), rtol=1e-4, atol=1e-5):
            raise ExerciseFailure(
                "this is the entropy of the top-2 gate weights; the router's entropy is over "
                "softmax of all E logits"
            )
        if abs(float(g_[0]) - math.log(E)) > 1e-4:
            raise ExerciseFailure(
                f"equal logits must give the maximum, ln E = {math.log(E):.4f}; got {float(g_[0]):.4f}"
            )
    expect_close(got, want, "router_entropy(logits)", rtol=1e-4, atol=1e-5)
    return f"E = {E}, uniform = ln E = {math.log(E):.3f}"


@functools.lru_cache(maxsize=1)
def _tiny():
    from ..tiny import load_tiny

    # experts dequantized to float32: plain torch matmuls, no kernel back end (and no back-end
    # note printed in the middle of a checker's output); the same weights as load_tiny()'s
    return load_tiny(experts="dequantized")


def _route(logits, k):
    from ..model import route

    return route(logits, k)


@Checker("check_expert_load")
def check_expert_load(fn, seed=None):
    """fn(ids (T, k) chosen experts, num_experts) -> (E,) share of the T*k assignments."""
    g = _gen(seed, 131)
    for T, k, E in ((3, 2, 4), (50, 2, 8), (17, 4, 32)) if seed is None else ((40, 3, 11),):
        logits = torch.randn(T, E, generator=g)
        logits[:, -1] = -100.0  # the last expert is never chosen: its share is 0, not missing
        ids = _route(logits, k)[0]
        counts = torch.bincount(ids.reshape(-1), minlength=E).float()
        want = counts / ids.numel()
        got = fn(ids, E)
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            got_d = got.double()
            if torch.allclose(got_d, counts.double()):
                raise ExerciseFailure("these are counts: divide by the number of assignments T*k")
            if torch.allclose(got_d, (counts / T).double()):
                raise ExerciseFailure(
                    f"the shares sum to {float(got_d.sum()):.3g}, not 1: there are T*k = {T * k} "
                    f"assignments (k = {k} per token), not T = {T}"
                )
            first = torch.bincount(ids[:, 0], minlength=E).double() / T
            if torch.allclose(got_d, first):
                raise ExerciseFailure(
                    "only the first choice of each token is counted: count all k chosen experts"
                )
        elif isinstance(got, torch.Tensor) and got.numel() < E:
            raise ExerciseFailure(
                f"got {got.numel()} values for {E} experts: an expert nobody chose still needs its "
                "0 (bincount's minlength)"
            )
        expect_close(got.float() if isinstance(got, torch.Tensor) else got, want, "expert_load")
    return "counts every assignment, idle experts included"


@Checker("check_first_choice")
def check_first_choice(fn, seed=None):
    """fn(model, tokens (T,)) -> (L, T) the first-choice expert of every token in every layer."""
    from ..model.recorder import Recorder

    model, tok = _tiny()
    text = "for i in range(10):\n    total += i * 2\n" if seed is None else None
    if text is None:
        g = _gen(seed, 0)
        tokens = torch.randint(0, model.config.vocab_size - 32, (24,), generator=g)
    else:
        tokens = torch.tensor(tok.encode_ordinary(text))
    rec = Recorder("routing")
    with torch.no_grad():
        model(tokens, recorder=rec)
    ids = torch.stack([i for i, _ in rec["routing"]])  # (L, T, k)
    want = ids[..., 0]
    got = fn(model, tokens)
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(
            f"expected a tensor of shape {tuple(want.shape)}, got {type(got).__name__}"
        )
    if got.shape == want.shape[::-1] and torch.equal(got.T.long(), want):
        raise ExerciseFailure(f"shape {tuple(got.shape)} is (T, L): return layers first, (L, T)")
    if got.shape == want.shape and torch.equal(got.long(), ids[..., -1]):
        raise ExerciseFailure(
            "this is each token's last-choice expert: the routing record lists experts best first"
        )
    if got.shape == want.shape and torch.equal(got.long(), ids[:, :, 0].flip(0)):
        raise ExerciseFailure("the layers are in reverse order: layer 0 is the first row")
    if got.shape != want.shape or not torch.equal(got.long(), want):
        raise ExerciseFailure(
            f"expected the experts ids[..., 0] of shape {tuple(want.shape)}; got shape "
            f"{tuple(got.shape)} with {int((got.long() != want).sum()) if got.shape == want.shape else 'other'} "
            "differing entries"
        )
    return f"{want.shape[0]} layers x {want.shape[1]} tokens"


@Checker("check_sink_share")
def check_sink_share(fn, seed=None):
    """fn(scores (S,), sink_logit float) -> weight on the sink, exp(z) / (exp(z) + sum exp(s))."""
    g = _gen(seed, 5)
    cases = [(torch.tensor([0.0, math.log(2), 0.0]), math.log(4), 0.5)]  # chapter 13's example
    for _ in range(3):
        s = torch.randn(int(torch.randint(1, 9, (1,), generator=g)), generator=g) * 4
        z = float(torch.randn((), generator=g) * 3)
        cases.append((s, z, None))
    cases.append((torch.tensor([500.0, 499.0]), 498.0, None))  # overflows exp() in float32
    for s, z, exact in cases:
        ref = torch.cat([s.double(), torch.tensor([z], dtype=torch.float64)])
        want = float(torch.softmax(ref, 0)[-1])
        got = fn(s, z)
        try:
            got = float(got)
        except (TypeError, ValueError) as e:
            raise ExerciseFailure(f"expected a number, got {type(got).__name__}") from e
        if math.isnan(got):
            raise ExerciseFailure(
                "NaN for scores around 500: exp overflows; subtract the largest logit (sink "
                "included) before exp, or use torch.logsumexp"
            )
        if abs(got - want) > 1e-5 * max(1.0, abs(want)):
            no_sink = math.exp(z) / float(torch.exp(s.double()).sum()) if max(s) < 80 else None
            if no_sink is not None and abs(got - no_sink) < 1e-6 * max(1, no_sink):
                raise ExerciseFailure(
                    "the sink's own exp(z) is missing from the denominator: the sink is one more "
                    "column of the softmax"
                )
            if abs(got - (1 - want)) < 1e-6:
                raise ExerciseFailure("this is the weight on the real keys, 1 - the sink's share")
            raise ExerciseFailure(
                f"scores {[round(v, 3) for v in s.tolist()]}, sink {z:.3f}: got {got:.6f}, "
                f"expected {want:.6f}"
            )
        if exact is not None and abs(got - exact) > 1e-6:
            raise ExerciseFailure(f"the chapter's example gives {exact}; got {got}")
    return "with large logits too"


def _mi(a, b, na, nb) -> float:
    joint = torch.zeros(na, nb, dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / (pa @ pb)[nz]).log()).sum())


@Checker("check_mutual_information")
def check_mutual_information(fn, seed=None):
    """fn(a (N,), b (N,), na, nb) -> I(A; B) in nats from the joint counts of two label arrays."""
    g = _gen(seed, 7)
    cases = [
        (torch.tensor([0, 1, 0, 1]), torch.tensor([2, 2, 4, 4]), 2, 8, 0.0),
        (torch.tensor([0, 0, 1, 1]), torch.tensor([3, 3, 5, 5]), 2, 8, math.log(2)),
    ]
    a = torch.randint(0, 5, (400,), generator=g)
    b = (a * 3 + torch.randint(0, 3, (400,), generator=g)) % 8  # dependent, not a function
    cases.append((a, b, 5, 8, None))
    for a, b, na, nb, exact in cases:
        want = _mi(a, b, na, nb)
        got = fn(a, b, na, nb)
        try:
            got = float(got)
        except (TypeError, ValueError) as e:
            raise ExerciseFailure(f"expected a number, got {type(got).__name__}") from e
        if math.isnan(got):
            raise ExerciseFailure("NaN: leave out the cells of the joint table that are 0")
        if abs(got - want) > 1e-6:
            if want and abs(got - want / math.log(2)) < 1e-6:
                raise ExerciseFailure("this is in bits (log2); measure in nats (ln)")
            if exact == 0.0:
                raise ExerciseFailure(
                    f"independent labels must give 0; got {got:.4f}: divide the joint by the "
                    "product of the marginals P(a) P(b), not by one of them"
                )
            raise ExerciseFailure(f"got {got:.6f} nats, expected {want:.6f}")
    return "ln 2 for a perfect pairing, 0 for independence"


@Checker("check_token_kinds")
def check_token_kinds(fn, seed=None):
    """Open-ended: fn(piece: str) -> a kind (any hashable) of your design. Passes when, on held-out
    code run through the tiny model, some layer's first-choice expert carries information about
    your kinds beyond what any grouping of the same tokens would: I(kind; expert) at least 5
    standard deviations above its mean under 20 random relabellings of the token *types* (each
    distinct token keeps one label, as with any function of the token), with at least 3 kinds
    that each cover 2% of the tokens or more.

    Why types and not occurrences: the router sees the token's own embedding, so any function of
    the token (even a hash) carries information about its expert when the labels are shuffled
    over occurrences; shuffling over types asks whether *your* grouping is special."""
    from ..model.recorder import Recorder

    model, tok = _tiny()
    text = _heldout_text(seed)
    tokens = torch.tensor(tok.encode_ordinary(text)[:1024])
    pieces = [tok.decode([t]) for t in tokens.tolist()]
    labels = [fn(p) for p in pieces]
    names = sorted({repr(x) for x in labels})
    index = {n: i for i, n in enumerate(names)}
    kinds = torch.tensor([index[repr(x)] for x in labels])
    shares = torch.bincount(kinds, minlength=len(names)).double() / len(kinds)
    big = int((shares >= 0.02).sum())
    if big < 3:
        raise ExerciseFailure(
            f"{len(names)} kind(s), of which {big} cover 2% of the tokens or more; design at least "
            "3 kinds that each occur often enough to measure"
        )
    rec = Recorder("routing")
    with torch.no_grad():
        for start in range(0, len(tokens), 256):
            model(tokens[start : start + 256], recorder=rec)
            if start == 0:
                first = [ids[:, 0].clone() for ids, _ in rec["routing"]]
            else:
                first = [torch.cat([f, ids[:, 0]]) for f, (ids, _) in zip(first, rec["routing"])]
            rec.clear()
    types, type_of = torch.unique(tokens, return_inverse=True)  # type_of: (N,) index into types
    type_label = torch.zeros(len(types), dtype=torch.long)
    type_label[type_of] = kinds  # one label per distinct token (pieces decode the same way)
    if not torch.equal(type_label[type_of], kinds):
        raise ExerciseFailure(
            "the same token got different kinds: token_kind must depend only on its piece"
        )
    g = _gen(seed, 0)
    E = model.config.num_experts
    best = None
    for layer, top1 in enumerate(first):
        real = _mi(kinds, top1, len(names), E)
        null = torch.tensor(
            [
                _mi(
                    type_label[torch.randperm(len(types), generator=g)][type_of],
                    top1,
                    len(names),
                    E,
                )
                for _ in range(20)
            ]
        )
        z = (real - float(null.mean())) / max(float(null.std()), 1e-12)
        if best is None or z > best[1]:
            best = (layer, z, real, float(null.mean()))
    layer, z, real, base = best
    if z < 5:
        raise ExerciseFailure(
            f"your {len(names)} kinds: best layer {layer} has I = {real:.4f} nats against "
            f"{base:.4f} for random groupings of the same tokens ({z:.1f} standard deviations); "
            "below 5: the experts do not sort tokens by these kinds more than by any grouping"
        )
    return (
        f"{len(names)} kinds; layer {layer}: I = {real:.3f} nats, {z:.1f} sd above random "
        "groupings of the same tokens"
    )


def _heldout_text(seed) -> str:
    """Held-out code the tiny model never trained on (chapter 14's split), from this Python."""
    import json
    import sysconfig
    from pathlib import Path

    from ..tiny import TINY_DIR

    held = json.loads((TINY_DIR / "training.json").read_text())["heldout_files"]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / f for f in held if (stdlib / f).is_file()]
    if not files:
        raise ExerciseFailure(
            "no held-out standard-library file found in this Python's stdlib; this check needs one"
        )
    path = files[0 if seed is None else int(seed) % len(files)]
    return path.read_text(encoding="utf-8", errors="replace")
