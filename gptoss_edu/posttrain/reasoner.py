"""Supervised fine-tuning of the tiny model into a reasoner (chapter 15).

The recipe behind `ge.load_tiny("reasoner")`:

    base, base_tok = load_tiny(experts="dequantized")        # float32 experts: trainable
    tok = digit_tokenizer(base_tok)                          # one token per digit (see below)
    history = sft(base, tok, SFTConfig(steps=1500))          # chapter-15 conversations
    save_reasoner(base, tok, out_dir, history)               # original layout, MXFP4 experts

**The tokenizer.** The tiny model's tokenizer cuts numbers as o200k does, into runs of up to
three digits that BPE then merges irregularly: `4827` -> `48|2|7`, `12345` -> `123|45`. Digit-by-
digit working needs the digits of an operand to be tokens of their own, in order. We keep the
tiny model's vocabulary and change only the pre-tokenizer: `\\p{N}{1,3}` becomes `\\p{N}`, so
every digit is a piece of its own and stays one byte token (as LLaMA does: "we split all
numbers into individual digits"). Every other piece is cut as before, the special tokens keep
their ids, and the embeddings the base model learned for the single digits are reused.

**The data.** gptoss_edu.posttrain.data: each step draws one reasoning effort (by
`effort_weights`) and a batch of training problems rendered at that effort, so a batch holds
conversations of similar length (little padding); a share `tool_share` of the conversations are
calculator calls for `A * B` with three-digit operands. The loss is on the tokens the model
writes (render_with_mask), none on the prompt.

The run is a pure function of the config: the problems, the efforts and the batches are drawn
from generators seeded by (seed, step).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gptoss_edu.posttrain.data import EFFORTS, conversation, split_problems
from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_step

DIGITS_O200K = r"\p{N}{1,3}"
DIGITS_ONE = r"\p{N}"


def digit_tokenizer(base, name: str = "gptoss_edu_reasoner"):
    """`base` (a BPETokenizer) with numbers split into single digits; same vocabulary and ids."""
    from gptoss_edu.tokenizer.bpe import BPETokenizer

    if not isinstance(base, BPETokenizer):
        raise TypeError(
            f"digit_tokenizer: base is a {type(base).__name__}; expected the BPETokenizer of "
            "load_tiny() (its pattern is rewritten)"
        )
    if base.pattern.count(DIGITS_O200K) != 1:
        raise ValueError(
            f"digit_tokenizer: the pattern of {base.name!r} does not contain {DIGITS_O200K!r} "
            "exactly once; expected an o200k-style pattern"
        )
    return BPETokenizer(
        base.mergeable_ranks,
        base.special_tokens,
        pattern=base.pattern.replace(DIGITS_O200K, DIGITS_ONE),
        name=name,
        n_vocab=base.n_vocab,
    )


@dataclass
class SFTConfig:
    """Hyperparameters of one supervised fine-tuning run (the defaults made the shipped one)."""

    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 30
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    weight_decay: float = 0.0
    effort_weights: tuple[float, float, float] = (1.0, 1.0, 3.0)  # low, medium, high
    tool_share: float = 0.1  # share of each batch that is a calculator conversation
    declare_tool_share: float = 0.25  # in-range conversations that still declare the tool
    n_train: int = 20000  # per operation (`*` has at most 3,950) and n_train // 10 tool problems
    n_heldout: int = 100  # per operation; never trained on (evaluate on these)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "warmup", "n_train", "n_heldout", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"SFTConfig: {name}={v!r}; expected an int >= 0")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("SFTConfig: steps and batch_size must be >= 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SFTConfig: lr={self.lr!r}; expected a finite float > 0")
        if len(self.effort_weights) != len(EFFORTS) or min(self.effort_weights) < 0:
            raise ValueError(
                f"SFTConfig: effort_weights={self.effort_weights!r}; expected {len(EFFORTS)} "
                f"weights >= 0 for {EFFORTS}"
            )
        for name in ("tool_share", "declare_tool_share", "min_lr_ratio"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"SFTConfig: {name}={v!r}; expected a float in [0, 1]")

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (
            self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        )


@dataclass
class SFTHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    effort: list[str] = field(default_factory=list)
    tokens_read: int = 0
    tokens_trained: int = 0
    seconds: float = 0.0


def batch_at(step: int, cfg: SFTConfig, train, tool_train, tok):
    """The batch of `step`: (efforts drawn, x, y, w); a pure function of (cfg.seed, step)."""
    rng = random.Random(f"gptoss_edu.posttrain.reasoner/{cfg.seed}/{step}")
    effort = rng.choices(EFFORTS, weights=cfg.effort_weights)[0]
    examples = []
    for _ in range(cfg.batch_size):
        if tool_train and rng.random() < cfg.tool_share:
            conv = conversation(rng.choice(tool_train), effort)
        else:
            declare = rng.random() < cfg.declare_tool_share
            conv = conversation(rng.choice(train), effort, declare_tool=declare)
        examples.append(render_with_mask(conv, tok))
    return (effort, *make_batch(examples))


def sft(model, tok, cfg: SFTConfig, log: Callable[[str], object] | None = print, log_every=50):
    """Fine-tune `model` in place on the chapter-15 conversations; returns an SFTHistory."""
    train, _ = split_problems(
        cfg.seed, n_train=cfg.n_train, n_heldout=cfg.n_heldout, clip_train=True
    )
    n_tool = max(1, cfg.n_train // 10) if cfg.tool_share > 0 else 0
    tool_all, _ = split_problems(cfg.seed, n_train=0, n_heldout=cfg.n_heldout, n_tool=n_tool)
    tool_train = [p for p in tool_all if p.needs_tool]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("sft: the model has no trainable parameters (load it dequantized)")
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    hist = SFTHistory()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        effort, x, y, w = batch_at(step, cfg, train, tool_train, tok)
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        loss = sft_step(model, opt, x, y, w)
        hist.steps.append(step)
        hist.loss.append(loss)
        hist.effort.append(effort)
        hist.tokens_read += int(x.numel())
        hist.tokens_trained += int(w.sum())
        if log and (step % log_every == 0 or step == cfg.steps - 1):
            el = time.perf_counter() - t0
            log(
                f"step {step:5d}  {effort:6s}  loss {loss:.3f}  lr {cfg.lr_at(step):.2e}  {el:6.0f} s"
            )
    hist.seconds = time.perf_counter() - t0
    model.eval()
    return hist


def config_dict(cfg: SFTConfig) -> dict:
    return dataclasses.asdict(cfg)


__all__ = [
    "DIGITS_ONE",
    "SFTConfig",
    "SFTHistory",
    "batch_at",
    "config_dict",
    "digit_tokenizer",
    "sft",
]
