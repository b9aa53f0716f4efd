"""Fine-tuning a reasoner on a new skill, and what it forgets (chapter 16).

People who fine-tune gpt-oss on their own data (question -> answer pairs, no reasoning) report
that afterwards the model's `analysis` channel is empty: it answers at once, at every reasoning
effort, and the reasoning it used to do is gone. This module reproduces that on the tiny
reasoner of chapter 15 and measures two fixes:

    train, heldout = echo_problems(seed=0)                # the new skill, disjoint splits
    conv = echo_conversation(train[0], "high")             # system, user, final: NO analysis
    cfg = ForgetConfig(recipe="mix", mix_share=0.25)      # a quarter of each batch: chapter 15
    history = finetune(model, tok, cfg, train)             # in place (experts dequantized)

**The new skill** is repeating words: the user asks `Repeat the words: open file list` and the
final answer is `open file list`. It is chosen because it shares nothing with the chapter-15
arithmetic (no digits, no operator, no carries: whatever the model loses in arithmetic comes
from how it was trained, not from a skill that competes for the same digits), because it is
checked exactly, and because a 2.8M-parameter model learns it in minutes on one core: every
word is one token of the tiny vocabulary (WORDS), so the answer is a copy of tokens of the
question, which attention does well. It still takes the shipped reasoner about a thousand
steps of 8 conversations at lr 2e-3: it was trained from a fresh model on digits alone, so the
words' embeddings are as they were initialised (at lr 5e-4, after 200 steps it answered `key
error text name` to `Repeat the words: class error list dict`; at lr 2e-3 it got the first word
after 400 steps, and 6 to 10 of 10 held-out questions after 1000). (Reversing the words was
tried first, on the base tiny model: after 200 steps of 16 conversations it put the last word
first but then repeated it, 1 of 30 held-out questions right.)

**The three recipes** (ForgetConfig), each from the same reasoner with the same new-skill
batches:

    naive          the new skill only, final channel only (what a user's Q/A data looks like)
    mix            the same, but `mix_share` of every batch is chapter-15 arithmetic with its
                   analysis (exactly round(mix_share * batch_size) conversations; see mix_count)
    keep_analysis  the new skill only, with a short analysis in its targets at every effort
                   (echo_analysis), so the model keeps writing an analysis before it answers

The reasoning effort of each new-skill conversation is drawn from the three levels, as the
chapter-15 data does, so the system message says `Reasoning: high` in a third of them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from gptoss_edu import harmony
from gptoss_edu.posttrain.data import EFFORTS, LOW_ANALYSIS, conversation, split_problems
from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_step_parts

# one token each in the tiny tokenizer, with and without a leading space (tests check it)
WORDS = (
    "list", "dict", "print", "class", "value", "name", "file", "path", "data", "key", "item",
    "open", "read", "write", "line", "text", "word", "test", "node", "type", "self", "error",
    "module", "import",
)  # fmt: skip
LENGTHS = (3, 4)  # words per question
RECIPES = ("naive", "mix", "keep_analysis")
PREFIX = "Repeat the words: "


@dataclass(frozen=True, order=True)
class Echo:
    """One question of the new skill: repeat `words` (distinct, from WORDS) in order."""

    words: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.words, tuple) or not self.words:
            raise ValueError(f"Echo: words={self.words!r}; expected a non-empty tuple of str")
        for w in self.words:
            if not isinstance(w, str) or not w.isalpha():
                raise ValueError(
                    f"Echo: word {w!r} in {self.words!r}; expected letters only (no spaces)"
                )

    @property
    def question(self) -> str:
        return PREFIX + " ".join(self.words)

    @property
    def answer(self) -> str:
        return " ".join(self.words)


def echo_problems(
    seed: int = 0, n_train: int = 4000, n_heldout: int = 60
) -> tuple[list[Echo], list[Echo]]:
    """(train, heldout): distinct questions of LENGTHS words, no question in both.

    Held-out questions are drawn first, so they depend only on (seed, n_heldout); a pure
    function of the inputs, sorted for a reproducible order (shuffle for training).
    """
    for name, v in (("n_train", n_train), ("n_heldout", n_heldout)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"echo_problems: {name}={v!r}; expected an int >= 0")
    space = sum(math.perm(len(WORDS), k) for k in LENGTHS)
    if n_train + n_heldout > space // 2:
        raise ValueError(
            f"echo_problems: {n_train} + {n_heldout} questions; at most {space // 2} (half "
            f"the {space} distinct ones) can be drawn"
        )
    rng = random.Random(f"gptoss_edu.posttrain.forgetting/{seed}")
    seen: set[Echo] = set()
    out: list[list[Echo]] = []
    for want in (n_heldout, n_train):
        chosen: list[Echo] = []
        while len(chosen) < want:
            p = Echo(tuple(rng.sample(WORDS, rng.choice(LENGTHS))))
            if p not in seen:
                seen.add(p)
                chosen.append(p)
        out.append(sorted(chosen))
    heldout, train = out
    return train, heldout


def echo_analysis(p: Echo, effort: str) -> str:
    """The analysis kept in the targets by the `keep_analysis` recipe (as long as the effort)."""
    if effort not in EFFORTS:
        raise ValueError(f"echo_analysis: effort={effort!r}; expected one of {EFFORTS}")
    if effort == "low":
        return LOW_ANALYSIS
    if effort == "medium":
        return f"{len(p.words)} words; repeat them in order."
    steps = ", ".join(f"word {i + 1} is {w}" for i, w in enumerate(p.words))
    return f"There are {len(p.words)} words: {steps}. So {p.answer}."


def echo_conversation(p: Echo, effort: str = "high", with_analysis: bool = False) -> list:
    """System (with `Reasoning: effort`), user, then the assistant: only a `final` message, as
    users' fine-tuning data has it, unless with_analysis=True (then analysis, final)."""
    if effort not in EFFORTS:
        raise ValueError(f"echo_conversation: effort={effort!r}; expected one of {EFFORTS}")
    msgs = [harmony.system(reasoning_effort=effort), harmony.user(p.question)]
    if with_analysis:
        msgs.append(harmony.assistant(echo_analysis(p, effort), channel="analysis"))
    msgs.append(harmony.assistant(p.answer, channel="final"))
    return msgs


def mix_count(batch_size: int, share: float) -> int:
    """How many of a batch's conversations are chapter-15 reasoning: round(share * batch_size),
    at least 1 when share > 0 and at most batch_size - 1 when share < 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"mix_count: batch_size={batch_size!r}; expected an int >= 1")
    if not (isinstance(share, (int, float)) and 0 <= share <= 1):
        raise ValueError(f"mix_count: share={share!r}; expected a float in [0, 1]")
    n = round(share * batch_size)
    if share > 0:
        n = max(n, 1)
    if share < 1:
        n = min(n, batch_size - 1)
    return n


@dataclass
class ForgetConfig:
    """One fine-tuning run on the new skill (the defaults are benchmarks/forgetting.py's)."""

    recipe: str = "naive"
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    warmup: int = 10
    mix_share: float = 0.25  # used by recipe "mix" only
    effort_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # low, medium, high
    n_train: int = 4000
    n_heldout: int = 60
    arith_n_train: int = 20000  # chapter-15 problems mixed in (per op, clipped as in chapter 15)
    arith_n_heldout: int = 100  # never mixed in: the chapter-15 held-out split stays held out
    seed: int = 0

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"ForgetConfig: recipe={self.recipe!r}; expected one of {RECIPES}")
        for name in ("steps", "batch_size", "warmup", "n_train", "n_heldout", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"ForgetConfig: {name}={v!r}; expected an int >= 0")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("ForgetConfig: steps and batch_size must be >= 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"ForgetConfig: lr={self.lr!r}; expected a finite float > 0")
        if not 0 <= self.mix_share < 1:
            raise ValueError(f"ForgetConfig: mix_share={self.mix_share!r}; expected [0, 1)")
        if len(self.effort_weights) != len(EFFORTS) or min(self.effort_weights) < 0:
            raise ValueError(
                f"ForgetConfig: effort_weights={self.effort_weights!r}; expected "
                f"{len(EFFORTS)} weights >= 0 for {EFFORTS}"
            )

    @property
    def n_mix(self) -> int:
        """Chapter-15 conversations per batch (0 unless recipe == "mix")."""
        return mix_count(self.batch_size, self.mix_share) if self.recipe == "mix" else 0

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then constant: a short run on top of a trained model."""
        return self.lr * min(1.0, (step + 1) / max(1, self.warmup))


def examples_at(step: int, cfg: ForgetConfig, train: Sequence[Echo], arith_train) -> list:
    """The conversations of `step`: a list of (kind, messages) with kind "new" or "reasoning",
    cfg.n_mix of them "reasoning"; a pure function of (cfg.seed, step). The new-skill draws do
    not depend on the recipe, so the three recipes see the same new-skill questions."""
    rng = random.Random(f"gptoss_edu.posttrain.forgetting.batch/{cfg.seed}/{step}")
    mix_rng = random.Random(f"gptoss_edu.posttrain.forgetting.mix/{cfg.seed}/{step}")
    n_new = cfg.batch_size - cfg.n_mix
    out = []
    for _ in range(cfg.batch_size):  # always draw a full batch: same questions for every recipe
        effort = rng.choices(EFFORTS, weights=cfg.effort_weights)[0]
        p = rng.choice(train)
        if len(out) < n_new:
            with_analysis = cfg.recipe == "keep_analysis"
            out.append(("new", echo_conversation(p, effort, with_analysis=with_analysis)))
    for _ in range(cfg.n_mix):
        effort = mix_rng.choices(EFFORTS, weights=(1.0, 1.0, 3.0))[0]  # chapter 15's weights
        out.append(("reasoning", conversation(mix_rng.choice(arith_train), effort)))
    return out


def _step(model, opt, groups, grad_clip: float = 1.0) -> float:
    """One AdamW step on the mean loss over every trained token of all `groups` (lists of
    (ids, mask)). Each group is padded on its own: a short new-skill conversation is not padded
    to the length of a high-effort arithmetic one (the same loss as one batch, less compute)."""
    return sft_step_parts(model, opt, [make_batch(g) for g in groups if g], grad_clip=grad_clip)


@dataclass
class ForgetHistory:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    conversations: dict = field(default_factory=lambda: {"new": 0, "reasoning": 0})


def finetune(
    model,
    tok,
    cfg: ForgetConfig,
    train: Sequence[Echo] | None = None,
    log: Callable[[str], object] | None = print,
    log_every: int = 25,
    after_step: Callable[[int], object] | None = None,
) -> ForgetHistory:
    """Fine-tune `model` in place on the new skill by cfg.recipe (AdamW, loss on what the model
    writes); returns a ForgetHistory. Load the model with experts="dequantized" first.
    `after_step(step)` is called after each optimizer step (to measure the model as it trains)."""
    if train is None:
        train, _ = echo_problems(cfg.seed, cfg.n_train, cfg.n_heldout)
    train = list(train)
    if not train:
        raise ValueError("finetune: no training questions; give echo_problems(...)[0]")
    arith_train = []
    if cfg.n_mix:
        arith_train, _ = split_problems(
            cfg.seed, n_train=cfg.arith_n_train, n_heldout=cfg.arith_n_heldout, clip_train=True
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "finetune: the model has no trainable parameters; load it with experts='dequantized'"
        )
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    hist = ForgetHistory()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        batch = examples_at(step, cfg, train, arith_train)
        for kind, _ in batch:
            hist.conversations[kind] += 1
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        loss = _step(model, opt, [[render_with_mask(c, tok) for k, c in batch if k == kind]
                                  for kind in ("new", "reasoning")])  # fmt: skip
        hist.steps.append(step)
        hist.loss.append(loss)
        if after_step is not None:
            after_step(step)
        if log and (step % log_every == 0 or step == cfg.steps - 1):
            log(f"{cfg.recipe} step {step:4d}  loss {loss:.3f}  {time.perf_counter() - t0:5.0f} s")
    hist.seconds = time.perf_counter() - t0
    model.eval()
    return hist


# ---- measuring --------------------------------------------------------------------------


def reasoning_summary(report, effort: str = "high") -> dict:
    """From an evaluate() Report, over all problems at `effort`: accuracy, mean analysis tokens
    and the share of replies whose analysis is empty or absent (0 analysis tokens)."""
    rs = [r for r in report.results if r.effort == effort]
    if not rs:
        raise ValueError(f"reasoning_summary: the report has no results at effort {effort!r}")
    n = len(rs)
    return {
        "n": n,
        "correct": sum(r.correct for r in rs),
        "accuracy": sum(r.correct for r in rs) / n,
        "mean_analysis_tokens": sum(r.analysis_tokens for r in rs) / n,
        "empty_analysis_share": sum(r.analysis_tokens == 0 for r in rs) / n,
    }


def evaluate_echo(
    model, tok, problems: Sequence[Echo], effort: str = "high", max_new_tokens: int = 96
) -> dict:
    """Greedy accuracy on the new skill at `effort`, with the same counts as reasoning_summary."""
    from gptoss_edu.conversation import chat

    problems = list(problems)
    if not problems:
        raise ValueError("evaluate_echo: no problems; give echo_problems(...)[1]")
    correct = analysis = empty = 0
    answers = []
    for p in problems:
        reply = chat(
            model, tok, p.question, reasoning=effort, max_new_tokens=max_new_tokens,
            temperature=0.0, stream=None,
        )  # fmt: skip
        n_an = sum(len(tok.encode_ordinary(m.text)) for m in reply if m.channel == "analysis")
        final = reply.final
        correct += final is not None and final.strip() == p.answer
        analysis += n_an
        empty += n_an == 0
        answers.append(final)
    n = len(problems)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "mean_analysis_tokens": analysis / n,
        "empty_analysis_share": empty / n,
        "answers": answers,
    }


__all__ = [
    "LENGTHS",
    "RECIPES",
    "WORDS",
    "ForgetConfig",
    "ForgetHistory",
    "Echo",
    "evaluate_echo",
    "examples_at",
    "finetune",
    "mix_count",
    "reasoning_summary",
    "echo_analysis",
    "echo_conversation",
    "echo_problems",
]
