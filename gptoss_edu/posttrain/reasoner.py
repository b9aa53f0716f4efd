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

**The facts drill.** A model that copies every operand right can still get `7 + 9 + 0 = 14`:
in the conversations the results of single-digit facts are one trained token in fifteen.
`facts_share` replaces that share of each batch with drills of facts (`facts_example`), and
`balance_ops` draws each conversation's operation first, so products are not one in eleven,
and `op_weights` draws it with uneven weights. The shipped reasoner's stages 3 to 5 were trained
so (its TRAINING.md gives the commands).

The run is a pure function of the config: the problems, the efforts and the batches are drawn
from generators seeded by (seed, step).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from gptoss_edu.posttrain.data import EFFORTS, OPS, conversation, split_problems
from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_step

DIGITS_O200K = r"\p{N}{1,3}"
DIGITS_ONE = r"\p{N}"
FACTS_MIXES = ("shapes", "facts")  # how the facts drill draws (see fact())


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


def _check_weights(name: str, w, labels) -> None:
    """Sampling weights, one per label: finite, >= 0, not all 0 (else a ValueError naming them)."""
    ok = (
        len(w) == len(labels)
        and all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in w)
        and sum(w) > 0
    )
    if not ok:
        raise ValueError(
            f"SFTConfig: {name}={w!r}; expected {len(labels)} finite weights >= 0, not all 0, "
            f"for {labels}"
        )


@dataclass
class SFTConfig:
    """Hyperparameters of one supervised fine-tuning run (one stage; the shipped reasoner's
    TRAINING.md gives the options of each of its stages)."""

    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 30
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    weight_decay: float = 0.0
    effort_weights: tuple[float, float, float] = (1.0, 1.0, 3.0)  # low, medium, high
    tool_share: float = 0.1  # share of each batch that is a calculator conversation
    declare_tool_share: float = 0.25  # in-range conversations that still declare the tool
    facts_share: float = 0.0  # share of each batch that is a drill of single-digit facts
    facts_mix: str = (
        "shapes"  # the drill draws each shape equally ("shapes") or each fact ("facts")
    )
    balance_ops: bool = False  # draw the operation first (uniform), then a problem of it
    # draw the operation first with these weights for "+", "-", "*" (None: see balance_ops)
    op_weights: tuple[float, float, float] | None = None
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
        _check_weights("effort_weights", self.effort_weights, EFFORTS)
        for name in ("tool_share", "declare_tool_share", "facts_share", "min_lr_ratio"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"SFTConfig: {name}={v!r}; expected a float in [0, 1]")

        if self.facts_mix not in FACTS_MIXES:
            raise ValueError(
                f"SFTConfig: facts_mix={self.facts_mix!r}; expected one of {FACTS_MIXES}"
            )
        if not isinstance(self.balance_ops, bool):
            raise ValueError(f"SFTConfig: balance_ops={self.balance_ops!r}; expected True/False")
        if self.op_weights is not None:
            _check_weights("op_weights", self.op_weights, OPS)
            if self.balance_ops:
                raise ValueError(
                    "SFTConfig: balance_ops and op_weights exclude each other (balance_ops is "
                    "op_weights (1, 1, 1)); give one"
                )

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


LENGTH_GROUPS = 4  # sft() runs each batch as this many parts of similar length


def batch_at(step: int, cfg: SFTConfig, train, tool_train, tok):
    """The batch of `step`: (efforts drawn, x, y, w); a pure function of (cfg.seed, step)."""
    rng = random.Random(f"gptoss_edu.posttrain.reasoner/{cfg.seed}/{step}")
    effort = rng.choices(EFFORTS, weights=cfg.effort_weights)[0]
    examples = []
    by_op: dict[str, list] = {}
    if cfg.balance_ops or cfg.op_weights:
        for q in train:
            by_op.setdefault(q.op, []).append(q)
    for _ in range(cfg.batch_size):
        # (no draw at all when facts_share is 0: the batches of earlier records stay the same)
        if cfg.facts_share and rng.random() < cfg.facts_share:
            examples.append(facts_example(rng, tok, mix=cfg.facts_mix))
            continue
        if tool_train and rng.random() < cfg.tool_share:
            conv = conversation(rng.choice(tool_train), effort)
        else:
            declare = rng.random() < cfg.declare_tool_share
            if cfg.op_weights:
                pool = by_op[rng.choices(OPS, weights=cfg.op_weights)[0]]
            elif cfg.balance_ops:
                pool = by_op[rng.choice(sorted(by_op))]
            else:
                pool = train
            conv = conversation(rng.choice(pool), effort, declare_tool=declare)
        examples.append(render_with_mask(conv, tok))
    return (effort, *make_batch(examples))


def sft(
    model,
    tok,
    cfg: SFTConfig,
    log: Callable[[str], object] | None = print,
    log_every: int = 50,
    first_step: int = 0,
    groups: int = LENGTH_GROUPS,
):
    """Fine-tune `model` in place on the chapter-15 conversations; returns an SFTHistory.

    A later stage passes `first_step` = the steps already taken: it draws the batches that
    follow, not the same ones again (its learning-rate schedule starts afresh). Each batch runs
    as `groups` parts of rows of similar length (sft.split_by_length): the same step up to float
    round-off, about three times cheaper than one padded batch (a facts drill is far shorter
    than a worked product, and smaller parts keep attention's tensors in the caches;
    benchmarks/results/posttrain_stage_time.md).
    """
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
        effort, x, y, w = batch_at(first_step + step, cfg, train, tool_train, tok)
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        loss = sft_step(model, opt, x, y, w, groups=groups)
        hist.steps.append(first_step + step)
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


# ---------------------------------------------------------------------- copying first

COPY_OPS = (" + ", " - ", " * ", ", ", " ")


def copy_example(rng: random.Random, tok) -> tuple[list[int], list[int]]:
    """`copy: S` then `again: S` for a random run of numbers S; the mask covers the second S."""
    n = rng.randint(3, 10)
    nums = [str(rng.randint(0, 10 ** rng.randint(1, 4) - 1)) for _ in range(n)]
    text = nums[0] + "".join(rng.choice(COPY_OPS) + x for x in nums[1:])
    a = tok.encode_ordinary(f"copy: {text}\n")
    b = tok.encode_ordinary(f"again: {text}\n")
    return a + b, [0] * len(a) + [1] * len(b)


_SHAPE_SIZES = (200, 200, 100, 800)  # distinct facts of each shape below


def fact(rng: random.Random, mix: str = "shapes") -> tuple[str, str]:
    """One single-digit fact as the high-effort working writes it: (question, result).

    The four shapes of data.analysis_text's lines: `a + b + c = ` (a carry c of 0 or 1),
    `a - b - c = ` (a borrow c; a is the digit plus 10 when it borrowed), `a * b = ` and
    `a * b + c = ` (a carry c of 1..8). mix="shapes" draws each shape a quarter of the time;
    mix="facts" draws each of the 1,300 facts equally often, so the 800 of `a * b + c` get
    most of the drill.
    """
    if mix == "shapes":
        kind = rng.randrange(4)
    elif mix == "facts":
        kind = rng.choices(range(4), weights=_SHAPE_SIZES)[0]
    else:
        raise ValueError(f"fact: mix={mix!r}; expected one of {FACTS_MIXES}")
    if kind == 0:
        a, b, c = rng.randrange(10), rng.randrange(10), rng.randrange(2)
        return f"{a} + {b} + {c} = ", str(a + b + c)
    if kind == 1:
        b, c = rng.randrange(10), rng.randrange(2)
        a = rng.randrange(b + c, b + c + 10)
        return f"{a} - {b} - {c} = ", str(a - b - c)
    a, b = rng.randrange(10), rng.randrange(10)
    if kind == 2:
        return f"{a} * {b} = ", str(a * b)
    c = rng.randrange(1, 9)
    return f"{a} * {b} + {c} = ", str(a * b + c)


def facts_example(rng: random.Random, tok, mix: str = "shapes") -> tuple[list[int], list[int]]:
    """6-12 random single-digit facts (fact(rng, mix)), one per line; the mask covers each
    result."""
    ids: list[int] = []
    mask: list[int] = []
    for _ in range(rng.randint(6, 12)):
        question, result = fact(rng, mix)
        a = tok.encode_ordinary(question)
        b = tok.encode_ordinary(result + "\n")
        ids += a + b
        mask += [0] * len(a) + [1] * len(b)
    return ids, mask


def drill(
    model,
    tok,
    example: Callable[[random.Random, object], tuple[list[int], list[int]]],
    steps: int,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 2e-3,
    name: str = "drill",
):
    """`steps` AdamW steps on batches of `example(rng, tok)`; returns the list of losses.

    The warm-ups before the conversations (copy_warmup, facts_warmup): a skill every worked
    answer needs, taught on its own where every trained token exercises it. The batches are a
    pure function of (name, seed, step).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{name}: the model has no trainable parameters (load it dequantized)")
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses = []
    model.train()
    for step in range(steps):
        rng = random.Random(f"gptoss_edu.posttrain.{name}/{seed}/{step}")
        x, y, w = make_batch([example(rng, tok) for _ in range(batch_size)])
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20)
        losses.append(sft_step(model, opt, x, y, w))
    model.eval()
    return losses


def copy_warmup(model, tok, steps: int, seed: int = 0, batch_size: int = 32, lr: float = 2e-3):
    """Teach a model to copy before it learns to reason: `steps` AdamW steps on copy_example.

    Every worked answer copies numbers (the operands, the result so far); a model without
    induction heads cannot, and chapter 15 measures that the tiny model pretrained on code has
    none (`diagnose.repeat_test`) while a fresh one learns them here in a few hundred steps.
    Returns the list of losses.
    """
    return drill(model, tok, copy_example, steps, seed, batch_size, lr, name="copy")


def facts_warmup(model, tok, steps: int, seed: int = 0, batch_size: int = 32, lr: float = 2e-3):
    """Drill the single-digit facts (facts_example): `steps` AdamW steps; returns the losses.

    A reasoner that copies every operand right still got 7 + 9 + 0 = 14: in the conversations
    the fact results are about one trained token in fifteen, and they are what it learns last.
    Use it before the conversations, not between stages: 500 drill steps on
    the stage-2 reasoner took its loss on low-effort conversations from 0.28 to 10.9 (it forgot
    them); to keep a trained model, mix the drill into the batches (SFTConfig.facts_share).
    """
    return drill(model, tok, facts_example, steps, seed, batch_size, lr, name="facts")


@torch.no_grad()
def facts_accuracy(model, tok, n_examples: int = 64, seed: int = 0) -> float:
    """Share of the result digits the model predicts right (greedy, teacher forcing) in
    `n_examples` facts_example sequences (about 9 facts each) drawn apart from the drill's."""
    rng = random.Random(f"gptoss_edu.posttrain.facts-eval/{seed}")
    x, y, w = make_batch([facts_example(rng, tok) for _ in range(n_examples)])
    newline = tok.encode_ordinary("\n")
    if len(newline) == 1:
        w = w * (y != newline[0])  # the digits only
    was = model.training
    model.eval()
    right = ((model(x).argmax(-1) == y).float() * w).sum() / w.sum()
    model.train(was)
    return float(right)


# ---------------------------------------------------------------------- saving and the record

RECORD_FILE = "training.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_dict(cfg: SFTConfig) -> dict:
    return dataclasses.asdict(cfg)


def _stage_lines(record: dict) -> list[str]:
    c, h = record["config"], record["history"]
    n = len(h["loss"])
    tail = h["loss"][-50:]
    by_effort: dict[str, list[float]] = {}
    for e, loss in zip(h["effort"][-300:], h["loss"][-300:]):
        by_effort.setdefault(e, []).append(loss)
    lines = [
        "Command:",
        "",
        "```",
        record["command"],
        "```",
        "",
        f"- date: {record['date']}; machine: {record['machine']}; torch {record['torch']}, "
        f"{record['threads']} thread(s)",
        (
            "- base: the float32 weights the previous stage saved (`--init`)"
            if record.get("previous_stage")
            else f"- base: `assets/tiny/model.safetensors`, sha256 {record['base_sha256'][:16]}..."
            if not record.get("fresh")
            else f"- base: a fresh `ModelConfig.tiny()` (torch seed {record['config']['seed']}), "
            f"first taught to copy: {len(record['copy_losses'])} steps of 32 copy examples, "
            f"loss {record['copy_losses'][0]:.3f} -> {record['copy_losses'][-1]:.3f}"
        ),
        *(
            [
                f"- then drilled on single-digit facts (facts_warmup): "
                f"{len(record['facts_losses'])} steps of 32 drills, loss "
                f"{record['facts_losses'][0]:.3f} -> {record['facts_losses'][-1]:.3f}"
            ]
            if record.get("facts_losses")
            else []
        ),
        "- tokenizer: the tiny vocabulary with numbers split into single digits (pattern "
        f"`{DIGITS_ONE}` in place of `{DIGITS_O200K}`)",
        f"- steps {h['steps'][0]}..{h['steps'][-1]}: {n} AdamW steps (betas 0.9, 0.95) of "
        f"{c['batch_size']} conversations, peak lr {c['lr']:g}, {c['warmup']} warm-up steps, cosine to {c['min_lr_ratio']:g} x peak; "
        f"effort weights low/medium/high {tuple(c['effort_weights'])}, tool share "
        f"{c['tool_share']:g}, "
        + (
            f"facts share {c['facts_share']:g} (drawn by {c.get('facts_mix', 'shapes')}), "
            if c.get("facts_share")
            else ""
        )
        + ("operations balanced, " if c.get("balance_ops") else "")
        + (
            "operations drawn with weights "
            + ", ".join(f"{o} {w:g}" for o, w in zip(OPS, c["op_weights"]))
            + ", "
            if c.get("op_weights")
            else ""
        )
        + f"seed {c['seed']}",
        f"- {h['tokens_read']:,} tokens read, {h['tokens_trained']:,} trained on (the tokens "
        f"the model writes), in {h['seconds']:.0f} s",
        f"- masked training loss: {h['loss'][0]:.3f} at step {h['steps'][0]}, {sum(tail) / len(tail):.3f} "
        f"mean of the last {len(tail)} steps",
    ]
    for e in EFFORTS:
        if e in by_effort:
            v = by_effort[e]
            lines.append(
                f"  - {e}: {sum(v) / len(v):.3f} (mean of its {len(v)} steps among the last 300)"
            )
    if record.get("facts_accuracy") is not None:
        lines.append(
            f"- single-digit facts right at the end of the stage: "
            f"{100 * record['facts_accuracy']:.1f}% of result digits (facts_accuracy)"
        )
    return lines


def render_record(record: dict) -> str:
    """TRAINING.md of a reasoner, written from its training.json alone (a test checks)."""
    stages = [record]
    while stages[-1].get("previous_stage"):
        stages.append(stages[-1]["previous_stage"])
    stages.reverse()
    lines = [
        "# The shipped reasoner: how it was made",
        "",
        "The tiny gpt-oss of `assets/tiny` fine-tuned (every weight, experts in float32) on the",
        "chapter-15 harmony conversations, then saved with its experts re-quantized to MXFP4, in",
        "the original layout. Written by `gptoss_edu.posttrain.reasoner` from `training.json`.",
    ]
    for i, stage in enumerate(stages, 1):
        where = (
            "from the tiny model" if i == 1 else "from the float32 weights of stage " + str(i - 1)
        )
        lines += ["", f"## Stage {i} of {len(stages)} ({where})", "", *_stage_lines(stage)]
    q = record.get("requantization")
    if q:
        lines += [
            "",
            "Re-quantizing the experts to MXFP4 for saving (masked loss on "
            f"{q['conversations']} held-out conversations at high effort, teacher forcing): "
            f"float32 {q['loss_float32']:.4f}, MXFP4 {q['loss_mxfp4']:.4f}; the greedy next "
            f"token agrees on {100 * q['argmax_agreement']:.2f}% of {q['tokens']:,} tokens.",
        ]
    lines += [
        "",
        "Accuracy per effort level: `benchmarks/reasoner_effort.py` (benchmarks/RESULTS.md).",
        "",
    ]
    return "\n".join(lines)


@torch.no_grad()
def requantization_cost(float_model, mxfp4_model, tok, cfg: SFTConfig, n: int = 60) -> dict:
    """Masked loss and greedy next-token agreement of the float32 model and of its MXFP4
    re-quantization, on the first `n` held-out problems at high effort (teacher forcing)."""
    from gptoss_edu.posttrain.data import heldout_problems

    problems = heldout_problems(cfg.seed, n=cfg.n_heldout)[: max(1, n)]
    convs = [render_with_mask(conversation(p, "high"), tok) for p in problems]
    losses, agree, total = {"float32": 0.0, "mxfp4": 0.0}, 0, 0
    for i in range(0, len(convs), 16):
        x, y, w = make_batch(convs[i : i + 16])
        keep = w > 0
        preds = {}
        for name, m in (("float32", float_model), ("mxfp4", mxfp4_model)):
            m.eval()
            logits = m(x).float()
            losses[name] += F.cross_entropy(logits[keep], y[keep], reduction="sum").item()
            preds[name] = logits[keep].argmax(-1)
        agree += int((preds["float32"] == preds["mxfp4"]).sum())
        total += int(keep.sum())
    return {
        "conversations": len(convs),
        "tokens": total,
        "loss_float32": losses["float32"] / total,
        "loss_mxfp4": losses["mxfp4"] / total,
        "argmax_agreement": agree / total,
    }


def save_reasoner(model, tok, out, record: dict, overwrite: bool = False) -> Path:
    """Write the checkpoint (original layout: MXFP4 experts, bf16 elsewhere), the tokenizer,
    training.json and TRAINING.md at `out`, all or nothing (one atomic directory)."""
    from gptoss_edu.checkpoint.atomic import atomic_directory
    from gptoss_edu.checkpoint.save import write_checkpoint_files

    out = Path(out)
    with atomic_directory(out, overwrite=overwrite, what="posttrain") as tmp:
        tmp = Path(tmp)
        write_checkpoint_files(model, tmp, "original")
        tok.save(tmp / "tokenizer.tiktoken")
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
        (tmp / "TRAINING.md").write_text(render_record(record))
    return out


def build_parser() -> argparse.ArgumentParser:
    from gptoss_edu.__main__ import (
        new_directory,
        nonneg_float,
        nonneg_int,
        positive_float,
        positive_int,
        share_float,
    )

    d = SFTConfig()
    p = argparse.ArgumentParser(
        prog="python -m gptoss_edu posttrain",
        description="Fine-tune the shipped tiny model into the chapter-15 reasoner on a CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=new_directory, help="directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="per step")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup", type=nonneg_int, default=d.warmup, help="linear warm-up steps")
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="data and init seed")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (1 is fastest when anything else shares the cores)",
    )
    p.add_argument(
        "--save-float",
        metavar="FILE",
        help="also write the float32 weights (before re-quantization) to this .safetensors "
        "file, and this run's record beside it (FILE.json): a later stage starts from them",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start from a freshly initialised tiny model instead of the pretrained one",
    )
    p.add_argument(
        "--copy-steps",
        type=nonneg_int,
        default=0,
        help="steps of the copy task (copy_warmup) before the conversations",
    )
    p.add_argument(
        "--facts-steps",
        type=nonneg_int,
        default=0,
        help="steps of the single-digit facts drill (facts_warmup) before the conversations "
        "(on a model already trained on them it erases them: use --facts-share)",
    )
    p.add_argument(
        "--facts-share",
        type=share_float,
        default=d.facts_share,
        help="share of each conversation batch replaced by a facts drill (0 to 1)",
    )
    p.add_argument(
        "--facts-mix",
        choices=FACTS_MIXES,
        default=d.facts_mix,
        help="the drill draws each shape of fact equally (shapes) or each fact (facts)",
    )
    p.add_argument(
        "--balance-ops",
        action="store_true",
        help="draw each conversation's operation uniformly (by default problems are drawn from "
        "the whole training split, where `*` is about one in eleven)",
    )
    p.add_argument(
        "--op-weights",
        type=nonneg_float,
        nargs=3,
        metavar=("ADD", "SUB", "MUL"),
        help="draw each conversation's operation with these weights for + - * (like "
        "--balance-ops, which is 1 1 1, but uneven)",
    )
    p.add_argument(
        "--effort-weights",
        type=nonneg_float,
        nargs=3,
        metavar=("LOW", "MEDIUM", "HIGH"),
        default=list(d.effort_weights),
        help="how often each effort's batches are drawn (default %(default)s)",
    )
    p.add_argument(
        "--init",
        metavar="FILE",
        help="start from these float32 weights (a previous stage's --save-float) instead of the "
        "tiny model; the batches continue where that stage stopped",
    )
    return p


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return _run(args, argv)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)


def _run(args, argv: list[str]) -> int:
    import datetime
    import os

    from gptoss_edu.checkpoint import load_checkpoint
    from gptoss_edu.tiny import load_tiny, tiny_path

    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"posttrain: {out} exists and is not empty; pass --overwrite")
    if args.save_float and not str(args.save_float).endswith(".safetensors"):
        raise ValueError(
            f"posttrain: --save-float {args.save_float!r}; expected a .safetensors file"
        )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = SFTConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        facts_share=args.facts_share,
        facts_mix=args.facts_mix,
        balance_ops=args.balance_ops,
        op_weights=tuple(args.op_weights) if args.op_weights else None,
        effort_weights=tuple(args.effort_weights),
    )
    model, base_tok = load_tiny(experts="dequantized")
    tok = digit_tokenizer(base_tok)
    if args.fresh and args.init:
        raise ValueError("posttrain: --fresh and --init exclude each other; give one")
    if args.fresh:
        from gptoss_edu.model.transformer import GptOss

        torch.manual_seed(args.seed)
        model = GptOss(model.config).float()
    copy_losses = copy_warmup(model, tok, args.copy_steps, args.seed) if args.copy_steps else []
    previous, first_step = None, 0
    if args.init:
        from safetensors.torch import load_file

        init = Path(args.init)
        meta = init.with_name(init.name + ".json")
        if not init.is_file() or not meta.is_file():
            raise FileNotFoundError(
                f"posttrain: --init {init}: expected the weights and {meta.name} beside them, "
                "as `posttrain --save-float FILE` writes them"
            )
        previous = json.loads(meta.read_text())
        if previous.get("config", {}).get("seed") != cfg.seed:
            raise ValueError(
                f"posttrain: --init {init} was trained with seed "
                f"{previous.get('config', {}).get('seed')!r}, this stage has --seed {cfg.seed}: "
                "a stage must keep the seed (it fixes the held-out split)"
            )
        state = load_file(str(init))
        missing = set(model.state_dict()) ^ set(state)
        if missing:
            raise ValueError(
                f"posttrain: --init {init} does not hold the tiny model's tensors "
                f"(differs in {sorted(missing)[:3]}...)"
            )
        model.load_state_dict(state)
        first_step = previous["history"]["steps"][-1] + 1
    facts_losses = facts_warmup(model, tok, args.facts_steps, args.seed) if args.facts_steps else []
    hist = sft(model, tok, cfg, first_step=first_step)
    record = {
        "name": "gptoss_edu_reasoner",
        "command": "python -m gptoss_edu posttrain " + " ".join(argv),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "threads": args.threads,
        "base_sha256": _sha256(tiny_path() / "model.safetensors"),
        "tokenizer_pattern": tok.pattern,
        "config": config_dict(cfg),
        "history": dataclasses.asdict(hist),
        "requantization": None,
        "previous_stage": previous,
        "fresh": bool(args.fresh),
        "copy_losses": copy_losses,
        "facts_losses": facts_losses,
        "facts_accuracy": facts_accuracy(model, tok),
    }
    if args.save_float:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save_float)
        Path(args.save_float + ".json").write_text(json.dumps(record, indent=1) + "\n")
    save_reasoner(model, tok, out, record, overwrite=args.overwrite)
    # what re-quantizing the experts cost: the saved checkpoint against the float32 model
    saved = load_checkpoint(out, dtype=torch.float32, experts="dequantized")
    record["requantization"] = requantization_cost(model, saved, tok, cfg)
    save_reasoner(model, tok, out, record, overwrite=True)
    print(render_record(record))
    return 0


__all__ = [
    "DIGITS_ONE",
    "RECORD_FILE",
    "SFTConfig",
    "SFTHistory",
    "batch_at",
    "build_parser",
    "cli",
    "config_dict",
    "copy_example",
    "copy_warmup",
    "digit_tokenizer",
    "drill",
    "fact",
    "facts_accuracy",
    "facts_example",
    "facts_warmup",
    "render_record",
    "requantization_cost",
    "save_reasoner",
    "sft",
]
