"""LoRA on the tiny gpt-oss with its MXFP4 experts frozen and packed, against the common recipes
(chapter 16).

    import gptoss_edu as ge
    from gptoss_edu.posttrain import lora

    model, tok = lora.load_for("lora-packed")            # experts stay MXFP4 bytes (uint8)
    lora.apply_recipe(model, "lora-packed", r=8, alpha=16)  # peft adapters on attention only
    print(lora.memory_summary(model))                    # trainable params, bytes held
    hist = lora.train(model, lora.task_tokenizer(tok), steps=100)  # reasoner.sft, adapters only
    print(lora.arithmetic_table(ge.ModelConfig.gpt_oss_20b()))   # the same sums for 20b

    # or by hand: any targets on any GptOss
    model = lora.apply_lora(model, r=8, alpha=16, targets=("attention", "router"))

The recipes (`RECIPES`):

    lora-packed         experts MXFP4, frozen and packed; LoRA on attention (qkv, out)
    lora-packed-router  the same, and LoRA on the router (mlp.gate) too
    lora-dequantized    the common public recipe: experts decoded to bf16 first (float32 on the
                        CPU here), frozen; LoRA on attention and on the experts (peft's
                        `target_parameters`, one rank-r pair per expert)
    full                experts decoded; every weight trained

**Gradients through packed experts.** A LoRA adapter on the attention of layer L learns from the
loss only if the gradient flows back through the MoE blocks of layers L..N-1 to their inputs.
The packed weights are frozen (they get no gradient) but the activations need
grad_x = grad_y @ W. `PackedLinear` is that autograd Function: its forward is the kernel back
end's MXFP4 matmul (unchanged), its backward decodes W `tile_rows` rows at a time, multiplies
and frees the tile, so training holds the 4.25-bit bytes plus one float tile, never the float
matrix. `MXFP4Weight.linear` goes through it only when the input requires a gradient and grad
mode is on: inference is the same code as before.

**peft** is an optional extra: `pip install "gptoss-edu[posttrain]"`. `apply_lora` uses
`peft.LoraConfig` and `peft.inject_adapter_in_model` on our plain nn.Module (no transformers
model needed): nn.Linear targets by a regular expression over module names
(`block.N.attn.qkv`, `block.N.attn.out`, `block.N.mlp.gate`) and, for the experts, the 3-D
parameters `block.N.mlp.mlp1_weight` (E, 2I, H) and `mlp2_weight` (E, H, I) through
`target_parameters` (peft >= 0.17, the mechanism peft added for gpt-oss's experts).

**The arithmetic** (`recipe_arithmetic`), for any ModelConfig: packed MXFP4 expert matrices cost
4.25 bits per weight (17 bytes per 32), every other weight bf16 (2 bytes; adapters too: peft
keeps them float32 by default on a bf16 base, 2 more bytes per adapter parameter, which does not
change any total at the precision printed); gradients float32 (4 bytes) and AdamW's two moments
float32 (8 bytes) per trainable parameter; no float32 master copy; activations not counted (they
depend on batch and length, not on the recipe).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

PEFT_HINT = 'pip install "gptoss-edu[posttrain]"'
PEFT_MIN = (0, 17)  # target_parameters (LoRA on 3-D expert tensors) arrived in peft 0.17

# ----------------------------------------------------------------------------- packed backward


def packed_grad_input(
    grad_y: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor, tile_rows: int = 256
) -> torch.Tensor:
    """grad_x = grad_y @ W for an MXFP4 weight W (N, K): grad_y (T, N) -> (T, K) float32.

    W is decoded `tile_rows` rows at a time (rows n0:n1 give grad_y[:, n0:n1] @ W[n0:n1]), so the
    extra memory is one (tile_rows, K) float32 tile, not the (N, K) matrix. A NaN scale byte
    (255) decodes to NaN as in the forward, so it poisons the same columns as a float reference.
    """
    from gptoss_edu.mxfp4 import dequantize

    N = blocks.shape[0]
    if grad_y.dim() != 2 or grad_y.shape[1] != N:
        raise ValueError(
            f"packed_grad_input: grad_y has shape {tuple(grad_y.shape)}; expected (T, {N})"
        )
    if tile_rows < 1:
        raise ValueError(f"packed_grad_input: tile_rows={tile_rows}; expected an int >= 1")
    g = grad_y.float()
    grad_x = torch.zeros(g.shape[0], blocks.shape[1] * 32, dtype=torch.float32, device=g.device)
    for n0 in range(0, N, tile_rows):
        n1 = min(n0 + tile_rows, N)
        w_tile = dequantize(blocks[n0:n1], scales[n0:n1], torch.float32)  # (n, K)
        grad_x.addmm_(g[:, n0:n1], w_tile)  # (T, n) @ (n, K)
        del w_tile
    return grad_x


class PackedLinear(torch.autograd.Function):
    """y = x @ W.T for a frozen MXFP4 weight: forward on the kernel back end, backward to x only.

    Saved for backward: the packed blocks and scales themselves (no copy, no float matrix).
    """

    @staticmethod
    def forward(ctx, x, blocks, scales, backend):
        from gptoss_edu import kernels

        ctx.save_for_backward(blocks, scales)
        ctx.x_dtype = x.dtype
        return kernels.mxfp4_linear(x.detach(), blocks, scales, None, backend)  # (T, N)

    @staticmethod
    def backward(ctx, grad_y):
        blocks, scales = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = packed_grad_input(grad_y, blocks, scales).to(ctx.x_dtype)  # (T, K)
        return grad_x, None, None, None


def packed_linear(
    x: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor, backend: str = "auto"
) -> torch.Tensor:
    """x (T, K) @ W.T -> (T, N), differentiable in x; W = MXFP4 (blocks (N, K//32, 16), scales)."""
    return PackedLinear.apply(x, blocks, scales, backend)


# ----------------------------------------------------------------------------- peft


def require_peft():
    """Import peft (>= 0.17) or raise an ImportError that says how to install it."""
    try:
        import peft
    except ImportError as err:
        raise ImportError(
            "gptoss_edu.posttrain.lora needs peft, an optional extra: "
            f"{PEFT_HINT}  (or pip install 'peft>=0.17')"
        ) from err
    version = tuple(int(p) for p in re.findall(r"\d+", peft.__version__)[:2])
    if version < PEFT_MIN:
        raise ImportError(
            f"gptoss_edu.posttrain.lora needs peft >= {PEFT_MIN[0]}.{PEFT_MIN[1]} "
            f"(target_parameters); found peft {peft.__version__}. Upgrade: {PEFT_HINT}"
        )
    return peft


TARGETS = ("attention", "router", "experts")
# module-name regular expressions (peft matches the whole name) and expert parameter names
_MODULE_PATTERNS = {"attention": r"attn\.(qkv|out)", "router": r"mlp\.gate"}
_EXPERT_PARAMETERS = ["mlp.mlp1_weight", "mlp.mlp2_weight"]


def _check_targets(targets) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    bad = [t for t in targets if t not in TARGETS]
    if not targets or bad:
        raise ValueError(
            f"apply_lora: targets={targets!r}; expected a non-empty tuple of {TARGETS}, "
            "e.g. ('attention',) or ('attention', 'router')"
        )
    return targets


def has_packed_experts(model: nn.Module) -> bool:
    from gptoss_edu.mxfp4 import MXFP4Weight

    return any(isinstance(m, MXFP4Weight) for m in model.modules())


def apply_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    targets: Sequence[str] = ("attention",),
    layers: Sequence[int] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Add peft LoRA adapters (rank r, scale alpha / r) in place; only the adapters stay trainable.

    targets: some of "attention" (qkv and out of every attention block), "router" (mlp.gate),
    "experts" (mlp1_weight and mlp2_weight, one rank-r pair per expert: needs dequantized
    experts). layers: the layer indices to adapt (None: all). Adapter A is drawn from
    torch.manual_seed(seed) (Kaiming uniform, peft's default), B starts at zero, so the model's
    outputs are unchanged until the first step. Returns the model.
    """
    peft = require_peft()
    targets = _check_targets(targets)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"apply_lora: r={r!r}; expected an int >= 1 (the adapters' rank)")
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"apply_lora: alpha={alpha!r}; expected a number > 0 (scale alpha / r)")
    n_layers = sum(1 for name, _ in model.named_modules() if re.fullmatch(r"block\.\d+", name))
    if n_layers == 0:
        raise TypeError(
            f"apply_lora: model is a {type(model).__name__} without `block.N` layers; expected "
            "a gptoss_edu GptOss (ge.load_tiny(), ge.load_checkpoint(...))"
        )
    layers = list(range(n_layers)) if layers is None else sorted(set(layers))
    if not layers or any(not 0 <= i < n_layers for i in layers):
        raise ValueError(f"apply_lora: layers={layers!r}; expected indices in 0..{n_layers - 1}")
    if "experts" in targets and has_packed_experts(model):
        raise ValueError(
            "apply_lora: targets include 'experts' but the model's experts are packed MXFP4 "
            "bytes (frozen uint8 buffers, nothing to adapt); load it with "
            "experts='dequantized' for LoRA on the experts (recipe 'lora-dequantized'), or "
            "drop 'experts' from targets"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    layer_re = "|".join(str(i) for i in layers)
    parts = [_MODULE_PATTERNS[t] for t in targets if t in _MODULE_PATTERNS]
    # an empty list, not None: with None peft looks up defaults by model.config["model_type"]
    target_modules = rf"block\.({layer_re})\.({'|'.join(parts)})" if parts else []
    target_parameters = None
    if "experts" in targets:
        target_parameters = [f"block.{i}.{p}" for i in layers for p in _EXPERT_PARAMETERS]
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=target_modules,
        target_parameters=target_parameters,
        bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = peft.inject_adapter_in_model(config, model)
    model.lora_config = {"r": r, "alpha": alpha, "targets": targets, "layers": layers}
    return model


def adapter_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA parameters by name (lora_A / lora_B weights)."""
    return {n: p for n, p in model.named_parameters() if ".lora_" in n}


# ----------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    name: str
    experts: str  # "mxfp4" (packed, frozen) or "dequantized"
    targets: tuple[str, ...] | None  # LoRA targets; None: full fine-tuning
    description: str


RECIPES = {
    r.name: r
    for r in (
        Recipe("lora-packed", "mxfp4", ("attention",), "MXFP4 experts frozen and packed; LoRA on attention"),
        Recipe(
            "lora-packed-router",
            "mxfp4",
            ("attention", "router"),
            "MXFP4 experts frozen and packed; LoRA on attention and router",
        ),
        Recipe(
            "lora-dequantized",
            "dequantized",
            ("attention", "experts"),
            "experts decoded first (bf16; float32 on this CPU), frozen; LoRA on attention and experts",
        ),
        Recipe("full", "dequantized", None, "experts decoded; every weight trained"),
    )
}  # fmt: skip


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"lora: unknown recipe {name!r}; expected one of {list(RECIPES)}")
    return RECIPES[name]


def load_for(recipe: str, start: str = "base", dtype: torch.dtype = torch.float32):
    """(model, tokenizer) to train with `recipe`: the shipped tiny model ("base") or the
    chapter-15 reasoner ("reasoner"), with the experts as the recipe wants them."""
    import gptoss_edu as ge

    rec = get_recipe(recipe)
    if start == "base":
        return ge.load_tiny(experts=rec.experts, dtype=dtype)
    if start == "reasoner":
        return ge.load_tiny("reasoner", experts=rec.experts, dtype=dtype)
    raise ValueError(f"lora.load_for: start={start!r}; expected 'base' or 'reasoner'")


def apply_recipe(model: nn.Module, recipe: str, r: int = 8, alpha: float = 16, seed: int = 0):
    """Make `model` trainable as `recipe` says (in place); returns the model."""
    rec = get_recipe(recipe)
    packed = has_packed_experts(model)
    if packed != (rec.experts == "mxfp4"):
        found = "packed MXFP4" if packed else "dequantized (float)"
        raise ValueError(
            f"apply_recipe: recipe {recipe!r} wants experts={rec.experts!r}; the model's experts "
            f"are {found}. Load it with lora.load_for({recipe!r})"
        )
    if rec.targets is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    return apply_lora(model, r=r, alpha=alpha, targets=rec.targets, seed=seed)


def task_tokenizer(tok):
    """The tokenizer for the chapter-15 data: one token per digit (the base tiny model's
    tokenizer is rewritten by reasoner.digit_tokenizer; the reasoner's already is one)."""
    from gptoss_edu.posttrain.reasoner import DIGITS_O200K, digit_tokenizer

    if DIGITS_O200K in getattr(tok, "pattern", ""):
        return digit_tokenizer(tok)
    return tok


# ----------------------------------------------------------------------------- measuring


def _unique_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def memory_summary(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """What a training run holds besides activations, counted from the tensors themselves.

    trainable / frozen: parameter counts; packed_bytes: MXFP4 blocks + scales (uint8);
    weight_bytes: every parameter + packed bytes (buffers such as RoPE tables excluded);
    grad_bytes: the .grad tensors that exist now; optimizer_bytes: the optimizer's state tensors.
    """
    params = list(model.parameters())
    packed = [b for n, b in model.named_buffers() if n.endswith((".blocks", ".scales"))]
    out = {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "frozen": sum(p.numel() for p in params if not p.requires_grad),
        "adapter": sum(p.numel() for p in adapter_parameters(model).values()),
        "packed_bytes": _unique_bytes(packed),
        "weight_bytes": _unique_bytes(params + packed),
        "grad_bytes": _unique_bytes([p.grad for p in params if p.grad is not None]),
    }
    if optimizer is not None:
        state = [
            t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)
        ]
        out["optimizer_bytes"] = _unique_bytes(state)
    return out


def optimizer_state_bytes(model: nn.Module) -> int:
    """Bytes of the state torch.optim.AdamW allocates for the model's trainable parameters.

    Measured, not computed: a fresh AdamW with lr = 0 (and no weight decay) takes one step on
    the gradients the parameters hold now, which allocates its state and leaves every weight
    bit-identical. Call it after training (the last backward's gradients are still there).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    missing = [p for p in params if p.grad is None]
    if not params or missing:
        raise ValueError(
            f"optimizer_state_bytes: {len(missing)} of {len(params)} trainable parameters have "
            "no gradient; run a backward pass first (e.g. after lora.train)"
        )
    opt = torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)
    opt.step()
    return memory_summary(model, opt)["optimizer_bytes"]


def train(
    model, tok, steps: int = 100, batch_size: int = 8, lr: float = 2e-3, seed: int = 0, **cfg
):
    """Fine-tune `model` on the chapter-15 conversations with reasoner.sft (AdamW on whatever
    requires grad: the adapters for a LoRA recipe); `tok` must split digits (task_tokenizer).
    Other SFTConfig fields can be given as keywords. Returns reasoner.SFTHistory."""
    from gptoss_edu.posttrain.reasoner import SFTConfig, sft

    warmup = cfg.pop("warmup", min(30, max(1, steps // 10)))
    log = cfg.pop("log", None)
    config = SFTConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup=warmup, **cfg)
    return sft(model, tok, config, log=log)


@torch.no_grad()
def heldout_loss(model, tok, problems, effort: str = "high", batch_size: int = 16) -> float:
    """Mean cross-entropy per generated token (the SFT loss) on held-out conversations."""
    from gptoss_edu.posttrain.data import conversation
    from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_loss

    problems = list(problems)
    if not problems:
        raise ValueError("heldout_loss: no problems; give e.g. heldout_problems(seed=0, n=20)")
    model.eval()
    total, weight = 0.0, 0.0
    for i in range(0, len(problems), batch_size):
        examples = [
            render_with_mask(conversation(p, effort), tok) for p in problems[i : i + batch_size]
        ]
        x, y, w = make_batch(examples)
        total += float(sft_loss(model, x, y, w)) * float(w.sum())
        weight += float(w.sum())
    return total / weight


# ----------------------------------------------------------------------------- arithmetic


@dataclass(frozen=True)
class RecipeCost:
    """What one recipe holds for a model config (bytes; see the module docstring)."""

    recipe: str
    trainable: int
    weight_bytes: int
    grad_bytes: int
    optimizer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes


BF16, GRAD, ADAMW = 2, 4, 8  # bytes per weight / per trainable parameter


def lora_parameters(config, targets: Sequence[str], r: int = 8) -> int:
    """LoRA parameters on every layer of `config`: r * (d_in + d_out) per adapted matrix,
    one pair per expert for "experts"."""
    targets = _check_targets(targets)
    c = config
    H, E, I = c.hidden_size, c.num_experts, c.intermediate_size
    per_layer = 0
    if "attention" in targets:  # qkv: H -> qkv_dim; out: q_dim -> H
        per_layer += r * (H + c.qkv_dim) + r * (c.q_dim + H)
    if "router" in targets:  # gate: H -> E
        per_layer += r * (H + E)
    if "experts" in targets:  # per expert, mlp1: H -> 2I; mlp2: I -> H
        per_layer += E * (r * (H + 2 * I) + r * (I + H))
    return c.num_hidden_layers * per_layer


def recipe_arithmetic(config, r: int = 8, float_bytes: int = BF16) -> list[RecipeCost]:
    """Trainable parameters and the bytes of weights, gradients and AdamW state of each recipe.

    float_bytes: bytes of every weight that is not a packed expert matrix (2: bf16, the
    convention of the module docstring; 4: float32, as the tiny model trains on the CPU).
    """
    if float_bytes not in (2, 4):
        raise ValueError(f"recipe_arithmetic: float_bytes={float_bytes!r}; expected 2 or 4")
    from gptoss_edu.params import count_parameters

    n = count_parameters(config)
    c = config
    expert_matrices = c.num_hidden_layers * c.num_experts * 3 * c.intermediate_size * c.hidden_size
    packed_bytes = expert_matrices // 32 * 17  # 4.25 bits per weight
    rest = n.total - expert_matrices  # everything that is not an expert matrix
    rows = []
    for rec in RECIPES.values():
        experts_bytes = packed_bytes if rec.experts == "mxfp4" else expert_matrices * float_bytes
        base_bytes = rest * float_bytes + experts_bytes
        if rec.targets is None:
            trainable, extra = n.total, 0
        else:
            trainable = extra = lora_parameters(config, rec.targets, r)
        rows.append(
            RecipeCost(
                rec.name,
                trainable,
                base_bytes + extra * float_bytes,
                trainable * GRAD,
                trainable * ADAMW,
            )
        )
    return rows


def _gib(b: int) -> str:
    return f"{b / 2**30:,.2f}"


def arithmetic_table(config, r: int = 8, name: str | None = None) -> str:
    """recipe_arithmetic (bf16 convention) as a Markdown table (GiB)."""
    rows = recipe_arithmetic(config, r)
    title = name or f"{config.num_hidden_layers} layers x {config.num_experts} experts"
    lines = [
        f"{title}, LoRA rank {r}:",
        "",
        "| recipe | trainable parameters | weights GiB | gradients GiB | AdamW state GiB | total GiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        lines.append(
            f"| {c.recipe} | {c.trainable:,} | {_gib(c.weight_bytes)} | {_gib(c.grad_bytes)} | "
            f"{_gib(c.optimizer_bytes)} | {_gib(c.total_bytes)} |"
        )
    return "\n".join(lines)


__all__ = [
    "PEFT_HINT",
    "RECIPES",
    "TARGETS",
    "PackedLinear",
    "Recipe",
    "RecipeCost",
    "adapter_parameters",
    "apply_lora",
    "apply_recipe",
    "arithmetic_table",
    "get_recipe",
    "has_packed_experts",
    "heldout_loss",
    "load_for",
    "lora_parameters",
    "memory_summary",
    "optimizer_state_bytes",
    "packed_grad_input",
    "packed_linear",
    "recipe_arithmetic",
    "require_peft",
    "task_tokenizer",
    "train",
]
