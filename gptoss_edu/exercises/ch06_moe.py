"""Checkers for chapter 6's exercises (exercises/06_mixture_of_experts.ipynb): the router, the
clamped SwiGLU, one expert, the sparse MoE layer and the active-parameter count.

    ge.exercises.check_router(my_router)
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..model.moe import swiglu
from ..params import count_parameters
from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_router",
    "check_swiglu",
    "check_expert",
    "check_moe_layer",
    "check_active_parameters",
    "check_my_mlp_block",
]


def _logits(N=6, E=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, E, generator=g) * 2


def _as_pairs(weights, ids):
    """(N, k) weights and ids -> per token, a dict expert -> weight (order-free comparison)."""
    return [
        {int(e): float(w) for e, w in zip(ids_row, w_row)}
        for ids_row, w_row in zip(ids.tolist(), weights.tolist())
    ]


def _same_routing(w, ids, w_ref, ids_ref, atol=1e-5) -> bool:
    got, ref = _as_pairs(w, ids), _as_pairs(w_ref, ids_ref)
    return all(
        g.keys() == r.keys() and all(abs(g[e] - r[e]) <= atol for e in r) for g, r in zip(got, ref)
    )


@Checker("check_router")
def check_router(fn):
    """fn(logits (N, E), k) -> (weights (N, k), ids (N, k)): top-k, then softmax over the k."""
    logits, k = _logits(), 4
    result = fn(logits.clone(), k)
    if not isinstance(result, tuple) or len(result) != 2:
        raise ExerciseFailure(
            f"return a tuple (weights, ids); got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple) else "")
        )
    w, ids = result
    top = torch.topk(logits, k, dim=-1)
    w_ref = torch.softmax(top.values, dim=-1)
    if not isinstance(ids, torch.Tensor) or not isinstance(w, torch.Tensor):
        raise ExerciseFailure("weights and ids must both be torch tensors")
    if tuple(ids.shape) != tuple(top.indices.shape):
        raise ExerciseFailure(f"ids: wrong shape {tuple(ids.shape)}; expected (N, k) = (6, {k})")
    if ids.is_floating_point():
        raise ExerciseFailure(f"ids must be integer expert indices; got dtype {ids.dtype}")
    if tuple(w.shape) != tuple(w_ref.shape):
        raise ExerciseFailure(f"weights: wrong shape {tuple(w.shape)}; expected (6, {k})")
    if sorted(map(sorted, ids.tolist())) != sorted(map(sorted, top.indices.tolist())):
        lowest = torch.topk(logits, k, dim=-1, largest=False).indices
        if sorted(map(sorted, ids.tolist())) == sorted(map(sorted, lowest.tolist())):
            raise ExerciseFailure("you picked the k LOWEST scores; take the k largest (topk)")
        raise ExerciseFailure(
            f"token 0 should go to experts {sorted(top.indices[0].tolist())}; "
            f"got {sorted(ids[0].tolist())} (the k largest logits of each row)"
        )
    if _same_routing(w, ids, w_ref, top.indices):
        return "top-k first, softmax over the k chosen"
    all_soft = torch.softmax(logits, dim=-1).gather(1, top.indices)
    if _same_routing(w, ids, all_soft, top.indices):
        raise ExerciseFailure(
            "softmax over all experts, then top-k: these weights sum to less than 1; gpt-oss "
            "takes the top-k logits first and softmaxes over those k only"
        )
    if _same_routing(w, ids, top.values, top.indices):
        raise ExerciseFailure("the weights are the raw logits; apply a softmax over the k chosen")
    if _same_routing(w, ids, torch.softmax(top.values, dim=0), top.indices):
        raise ExerciseFailure("softmax over the wrong axis: each token's k weights must sum to 1")
    if _same_routing(w, ids, top.values / top.values.sum(-1, keepdim=True), top.indices):
        raise ExerciseFailure("you divided the logits by their sum; use a softmax (exp first)")
    raise ExerciseFailure(
        f"token 0: expected weights {dict(sorted(_as_pairs(w_ref, top.indices)[0].items()))}; "
        f"got {dict(sorted(_as_pairs(w, ids)[0].items()))}"
    )


def _h(seed=1, n=5, I=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2 * I, generator=g) * 5  # large enough to reach the clamps


def _swiglu_variants(h):
    """Classic mistakes, each as (message, output)."""
    gate, lin = h[..., 0::2], h[..., 1::2]
    gc, lc = gate.clamp(max=7.0), lin.clamp(-7.0, 7.0)
    I = h.shape[-1] // 2
    sg, sl = h[..., :I], h[..., I:]
    return [
        (
            "the linear half is missing its +1: multiply by (clamp(lin, -7, 7) + 1)",
            gc * torch.sigmoid(1.702 * gc) * lc,
        ),
        (
            "gate and linear are interleaved in gpt-oss: gate = h[..., 0::2], lin = h[..., 1::2] "
            "(you split the vector into two halves)",
            sg.clamp(max=7) * torch.sigmoid(1.702 * sg.clamp(max=7)) * (sl.clamp(-7, 7) + 1),
        ),
        (
            "gate and linear are swapped: the gate is h[..., 0::2] (even positions)",
            lin.clamp(max=7) * torch.sigmoid(1.702 * lin.clamp(max=7)) * (gate.clamp(-7, 7) + 1),
        ),
        (
            "plain SiLU gate g*sigmoid(g): gpt-oss uses g*sigmoid(1.702*g)",
            gc * torch.sigmoid(gc) * (lc + 1),
        ),
        (
            "no clamping: clamp the gate above at 7 and the linear value to [-7, 7]",
            gate * torch.sigmoid(1.702 * gate) * (lin + 1),
        ),  # fmt: skip
        (
            "the gate is clamped only from above (max=7), not to [-7, 7]",
            gate.clamp(-7, 7) * torch.sigmoid(1.702 * gate.clamp(-7, 7)) * (lc + 1),
        ),
        (
            "the linear value is clamped on both sides, to [-7, 7] (you clamped only one side)",
            gc * torch.sigmoid(1.702 * gc) * (lin.clamp(max=7) + 1),
        ),
    ]


@Checker("check_swiglu")
def check_swiglu(fn):
    """fn(h (..., 2I)) -> (..., I): gpt-oss's clamped SwiGLU on interleaved (gate, linear)."""
    h = _h()
    got = fn(h.clone())
    expected = swiglu(h)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        if not torch.allclose(got, expected, atol=1e-5):
            for message, wrong in _swiglu_variants(h):
                if torch.allclose(got, wrong, atol=1e-5):
                    raise ExerciseFailure(message)
    elif isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(h.shape):
        raise ExerciseFailure(
            f"wrong shape {tuple(got.shape)}: the output has half the width of h, "
            f"{tuple(expected.shape)} (one value per (gate, linear) pair)"
        )
    expect_close(got, expected, "swiglu output")
    got3 = fn(h.reshape(1, *h.shape))  # works on any leading shape
    expect_close(got3, expected[None], "swiglu on a (1, n, 2I) input")
    return "interleaved pairs, clamps at 7, sigmoid(1.702 g), +1"


def _expert_case(seed=2, n=5, H=8, I=6):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, H, generator=g)
    w1 = torch.randn(2 * I, H, generator=g)
    b1 = torch.randn(2 * I, generator=g)
    w2 = torch.randn(H, I, generator=g) * 0.3
    b2 = torch.randn(H, generator=g)
    return t, w1, b1, w2, b2


@Checker("check_expert")
def check_expert(fn):
    """fn(t (n, H), w1 (2I, H), b1 (2I,), w2 (H, I), b2 (H,)) -> (n, H): one expert MLP."""
    t, w1, b1, w2, b2 = _expert_case()
    got = fn(t.clone(), w1, b1, w2, b2)
    expected = swiglu(t @ w1.T + b1) @ w2.T + b2
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        if torch.allclose(got, swiglu(t @ w1.T) @ w2.T + b2, atol=1e-4):
            raise ExerciseFailure("mlp1's bias b1 is missing: h = t @ w1.T + b1")
        if torch.allclose(got, swiglu(t @ w1.T + b1) @ w2.T, atol=1e-4):
            raise ExerciseFailure("mlp2's bias b2 is missing: y = a @ w2.T + b2")
        if torch.allclose(got, (t @ w1.T + b1)[:, 0::2] @ w2.T + b2, atol=1e-4):
            raise ExerciseFailure("no activation: apply the clamped SwiGLU between the matrices")
    expect_close(got, expected, "expert output", rtol=1e-4, atol=1e-4)
    return "t -> w1, b1 -> swiglu -> w2, b2"


def _moe_case(seed=4, N=7, H=32, I=16, E=6):
    """A random MoE layer large enough that routing and clamps both matter."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(N, H, generator=g)
    gate_w = torch.randn(E, H, generator=g)
    gate_b = torch.randn(E, generator=g)
    w1 = torch.randn(E, 2 * I, H, generator=g) * 0.5
    b1 = torch.randn(E, 2 * I, generator=g)
    w2 = torch.randn(E, H, I, generator=g) * 0.2
    b2 = torch.randn(E, H, generator=g)
    return t, gate_w, gate_b, w1, b1, w2, b2


def _moe_reference(t, gate_w, gate_b, w1, b1, w2, b2, k, mode="right"):
    logits = t @ gate_w.T + gate_b  # (N, E)
    top = torch.topk(logits, k, dim=-1)
    if mode == "softmax_all":
        weights = torch.softmax(logits, dim=-1).gather(1, top.indices)
    elif mode == "unweighted":
        weights = torch.ones_like(top.values)
    elif mode == "mean":
        weights = torch.full_like(top.values, 1 / k)
    else:
        weights = torch.softmax(top.values, dim=-1)
    out = torch.zeros_like(t)
    for n in range(t.shape[0]):
        for j in range(k):
            e = int(top.indices[n, j])
            y = swiglu(t[n] @ w1[e].T + b1[e]) @ w2[e].T + b2[e]
            out[n] += weights[n, j] * y
    return out


@Checker("check_moe_layer")
def check_moe_layer(fn):
    """fn(t (N, H), gate_w (E, H), gate_b (E,), w1 (E, 2I, H), b1 (E, 2I), w2 (E, H, I),
    b2 (E, H), k) -> (N, H): route each token to its top-k experts and add their weighted outputs."""
    case = _moe_case()
    k = 2
    got = fn(*[x.clone() for x in case], k)
    expected = _moe_reference(*case, k)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        close = lambda mode: torch.allclose(got, _moe_reference(*case, k, mode), atol=1e-3)
        if not torch.allclose(got, expected, atol=1e-3):
            if close("softmax_all"):
                raise ExerciseFailure(
                    "softmax over all experts before top-k: take the top-k logits, then softmax "
                    "over those k only"
                )
            if close("unweighted"):
                raise ExerciseFailure("the expert outputs are added without their router weights")
            if close("mean"):
                raise ExerciseFailure(
                    "the experts are averaged (1/k each); weight them by the softmax of their logits"
                )
            for kk in (1, 3, case[1].shape[0]):
                if torch.allclose(got, _moe_reference(*case, kk), atol=1e-3):
                    raise ExerciseFailure(
                        f"you used {kk} experts per token; use the argument k={k}"
                    )
    expect_close(got, expected, "MoE output", rtol=1e-4, atol=1e-3)
    got1 = fn(*[x.clone() for x in case], 1)
    expect_close(got1, _moe_reference(*case, 1), "MoE output with k=1", rtol=1e-4, atol=1e-3)
    return "each token's top-k experts, weighted by the softmax of their logits"


@Checker("check_active_parameters")
def check_active_parameters(fn):
    """fn(config) -> int: parameters one token reads (attention, router, k experts, unembedding)."""
    for name in ("gpt_oss_20b", "gpt_oss_120b", "tiny"):
        c = getattr(ModelConfig, name)()
        p = count_parameters(c)
        got = fn(c)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ExerciseFailure(f"return an int; got {type(got).__name__} for {name}")
        if got == p.active:
            continue
        L, E, k = c.num_hidden_layers, c.num_experts, c.experts_per_token
        H, I = c.hidden_size, c.intermediate_size
        one = (2 * I * H + 2 * I) + (H * I + H)
        diff = got - p.active
        hints = {
            p.embedding: "you counted the embedding: a token reads one row of it, which does not count",
            p.embedding
            + p.final_norm: "you counted the embedding (and the final norm); leave both out",
            p.final_norm: "you counted the final norm's scale; OpenAI's figure leaves it out",
            -p.unembedding: "the unembedding is missing: every token's logits read all of it",
            -p.router: "the router (mlp norm + gate weight and bias) is missing",
            -p.attention: "attention is missing: every layer's attention is active",
            L * (E - k) * one: "you counted all experts; only experts_per_token of them are active",
            -L * k * (2 * I + H): "the expert biases are missing (mlp1_bias (2I,), mlp2_bias (H,))",
            -L * k * one: "the experts are missing: each layer runs experts_per_token of them",
            -L
            * (k - 1)
            * one: "only one expert per layer: each token uses experts_per_token of them",
        }
        if diff in hints:
            raise ExerciseFailure(f"{name}: {hints[diff]}")
        raise ExerciseFailure(f"{name}: got {got:,}; expected {p.active:,} (off by {diff:+,})")
    return "gpt-oss-20b: 3,608,304,384 active"


# ------------------------------------------------------------------ your own gpt-oss: moe.py


def _mlp_variants(block, x):
    """The package block's output and what classic mistakes would compute instead."""
    from ..model.moe import swiglu

    with torch.no_grad():
        t = block.norm(x).reshape(-1, x.shape[-1])
        logits = block.gate(t)
        k = block.experts_per_token

        def mix(t, weights, ids, act=swiglu):
            out = torch.zeros_like(t)
            for j in range(k):
                for e in ids[:, j].unique().tolist():
                    rows = (ids[:, j] == e).nonzero().squeeze(1)
                    h = t[rows] @ block.mlp1_weight[e].T + block.mlp1_bias[e]
                    y = act(h) @ block.mlp2_weight[e].T + block.mlp2_bias[e]
                    out[rows] += weights[rows, j, None] * y
            return out.reshape(x.shape)

        top = torch.topk(logits, k, dim=-1)
        right = torch.softmax(top.values, -1)
        probs = torch.softmax(logits, -1).gather(1, top.indices)
        no_plus_one = (
            lambda h: (
                h[..., 0::2].clamp(max=7)
                * torch.sigmoid(  # noqa: E731
                    1.702 * h[..., 0::2].clamp(max=7)
                )
                * h[..., 1::2].clamp(-7, 7)
            )
        )
        raw = x.reshape(-1, x.shape[-1])
        top_raw = torch.topk(block.gate(raw), k, dim=-1)
        return {
            "softmax over all experts, then top-k (weights must be a softmax over the k chosen "
            "logits only)": mix(t, probs, top.indices),
            "the +1 on the linear half of SwiGLU is missing": mix(
                t, right, top.indices, no_plus_one
            ),
            "the gate weights are not applied: each expert's output must be multiplied by its "
            "softmax weight": mix(t, torch.ones_like(right), top.indices),
            "the block's RMSNorm is missing: route and run the experts on norm(x)": mix(
                raw, torch.softmax(top_raw.values, -1), top_raw.indices
            ),
        }


@Checker("check_my_mlp_block")
def check_my_mlp_block(cls):
    """cls: your `MLPBlock(config)` (my_gptoss/moe.py) with the checkpoint's attribute names
    (norm, gate, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias); forward(x (B, T, H)) returns
    the update. Loaded with a random tiny block's weights (large enough that the router has clear
    preferences and the clamps are reached) and compared with the package's."""
    from ..config import ModelConfig
    from ..model.moe import MLPBlock

    cfg = ModelConfig.tiny().replace(hidden_size=32, intermediate_size=32, num_experts=6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        ref = MLPBlock(cfg)
        with torch.no_grad():
            for p in (ref.gate.weight, ref.mlp1_weight, ref.mlp2_weight):
                p.mul_(15)
            ref.gate.bias.normal_()
            ref.mlp1_bias.normal_()
            ref.norm.scale.uniform_(0.5, 1.5)
        x = torch.randn(2, 9, cfg.hidden_size)
    mine = cls(cfg)
    missing, unexpected = mine.load_state_dict(ref.state_dict(), strict=False)
    if missing or unexpected:
        raise ExerciseFailure(
            f"your MLPBlock's parameters do not match the checkpoint's names: missing "
            f"{sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    with torch.no_grad():
        got, expected = mine(x), ref(x)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
            for mistake, wrong in _mlp_variants(ref, x).items():
                if torch.allclose(got, wrong, rtol=1e-4, atol=1e-4):
                    raise ExerciseFailure(mistake)
    expect_close(got, expected, "MLPBlock output", rtol=1e-4, atol=1e-4)
    return "your MLPBlock equals the package's"
