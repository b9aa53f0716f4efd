"""Supervised fine-tuning in harmony: the loss mask and the loss (chapter 15).

The model is trained only on what it writes. In a rendered conversation that is every
assistant message from its channel tag on (`<|channel|>analysis<|message|>...<|end|>`), the
`<|start|>assistant` that opens an assistant message right after another one (the model writes
it: it decides to go on), the tool-call header (` to=functions.calculator<|channel|>commentary
<|constrain|>json`) and `<|call|>`, and the final `<|return|>`. The prompt is not trained on: the
system, developer, user and tool messages, and the `<|start|>assistant` the caller appends after
them (ge.chat writes it into the prompt).

    ids, mask = render_with_mask(conv, tok)       # list[int], list[int] of 0/1, same length
    x, y, w = make_batch([(ids, mask), ...])       # (B, T) inputs, next-token targets, weights
    loss = sft_loss(model, x, y, w)                # mean cross-entropy where w == 1
    sft_step(model, optimizer, x, y, w)            # one AdamW step; returns the loss
    sft_step(model, optimizer, x, y, w, groups=4)  # the same step, cheaper (split_by_length)

Two things make a step cheaper without changing what it computes (beyond float round-off):
`sft_loss` asks the model for the logits of the trained positions only (`GptOss`'s
`logits_at`): the vocabulary projection is the largest matrix of the tiny model, and most
positions of a batch are prompt or padding. And `split_by_length` cuts a batch whose rows differ
in length into a few batches of rows of similar length, each cut after its last trained
position, so that short rows are not padded to the longest and attention's T x T shrinks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptoss_edu import harmony
from gptoss_edu.generation import takes_logits_at
from gptoss_edu.harmony import START, Message


def render_with_mask(messages, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of a training rendering of `messages` and a 0/1 mask of the same length:
    1 on the tokens the model generates, 0 on the prompt (see the module docstring).

    The rendering keeps every analysis message (auto_drop_analysis=False) and ends a final
    answer with `<|return|>` (for_training=True): exactly what the model must produce.
    """
    messages = list(messages)
    for i, m in enumerate(messages):
        if not isinstance(m, Message):
            raise TypeError(
                f"render_with_mask: messages[{i}] is a {type(m).__name__}; expected harmony.Message"
            )
    segments = harmony.render_segments(
        messages, for_completion=False, for_training=True, auto_drop_analysis=False
    )
    # every message starts with ("special", START) and no text segment is START: split there
    starts = [i for i, s in enumerate(segments) if s == ("special", START)]
    if len(starts) != len(messages):  # cannot happen with the renderer above; say so if it does
        raise RuntimeError(
            f"render_with_mask: {len(messages)} messages rendered as {len(starts)} <|start|> tokens"
        )
    ids: list[int] = []
    mask: list[int] = []
    bounds = starts + [len(segments)]
    for k, m in enumerate(messages):
        chunk = segments[bounds[k] : bounds[k + 1]]
        generated = m.role == "assistant"
        # `<|start|>assistant` after a non-assistant message is the prompt's suffix
        given = 2 if generated and (k == 0 or messages[k - 1].role != "assistant") else 0
        for j, (kind, s) in enumerate(chunk):
            piece = [tokenizer.token_id(s)] if kind == "special" else tokenizer.encode_ordinary(s)
            ids += piece
            mask += [int(generated and j >= given)] * len(piece)
    return ids, mask


def make_batch(examples, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs x, targets y and weights w, each (B, T) with T = longest length - 1.

    `examples` is a list of (ids, mask) from render_with_mask. x = ids[:-1], y = ids[1:],
    w = mask[1:] (a target is trained on iff the model generates it); shorter examples are
    padded on the right with `pad_id` and weight 0.
    """
    examples = list(examples)
    if not examples:
        raise ValueError("make_batch: no examples; give a list of (ids, mask) pairs")
    for i, (ids, mask) in enumerate(examples):
        if len(ids) != len(mask) or len(ids) < 2:
            raise ValueError(
                f"make_batch: example {i} has {len(ids)} ids and {len(mask)} mask values; "
                "expected equal lengths >= 2 (from render_with_mask)"
            )
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), pad_id, dtype=torch.long)
    w = torch.zeros((len(examples), T), dtype=torch.float32)
    for b, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        x[b, :n] = torch.tensor(ids[:-1])
        y[b, :n] = torch.tensor(ids[1:])
        w[b, :n] = torch.tensor(mask[1:], dtype=torch.float32)
    return x, y, w


def sft_loss(model, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where w (B, T) is 1.

    x, y: (B, T) inputs and targets. Targets with w == 0 do not enter the loss at all (their
    value is never read into it), so the prompt costs nothing and teaches nothing.
    """
    if x.shape != y.shape or x.shape != w.shape or x.dim() != 2:
        raise ValueError(
            f"sft_loss: x {tuple(x.shape)}, y {tuple(y.shape)}, w {tuple(w.shape)}; expected "
            "three tensors of the same shape (B, T), as make_batch returns"
        )
    total = w.sum()
    if total <= 0:
        raise ValueError("sft_loss: the weights are all 0; no token to train on")
    keep = w > 0  # (B, T)
    if takes_logits_at(model):
        logits = model(x, logits_at=keep)  # (N, V): only the trained positions
    else:  # any other model: all the logits, then the trained positions
        logits = model(x)[keep]  # (B, T, V) -> (N, V)
    ce = F.cross_entropy(logits.float(), y[keep], reduction="none")  # (N,)
    return (ce * w[keep]).sum() / total


def split_by_length(x, y, w, groups: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The rows of a batch (x, y, w, each (B, T)) in at most `groups` batches of similar length.

    Each row's length is where its last trained target sits (+1): what comes after it, prompt
    or padding, cannot change the loss, since attention is causal and every other layer works
    position by position. The rows are sorted by that length, cut into `groups` runs of
    near-equal size, and each run is cut after its own longest row. Rows with nothing to train
    on are dropped. The loss over the parts, each weighted by its trained tokens, is the loss of
    the whole batch (sft_step does that).
    """
    if groups < 1:
        raise ValueError(f"split_by_length: groups={groups}; expected an integer >= 1")
    if x.shape != y.shape or x.shape != w.shape or x.dim() != 2:
        raise ValueError(
            f"split_by_length: x {tuple(x.shape)}, y {tuple(y.shape)}, w {tuple(w.shape)}; "
            "expected three tensors of the same shape (B, T), as make_batch returns"
        )
    T = x.shape[1]
    trained = w > 0  # (B, T)
    # position of the last trained target + 1, or 0 for a row with none
    ends = torch.where(trained, torch.arange(1, T + 1), 0).amax(dim=1)  # (B,)
    order = torch.argsort(ends, stable=True)
    order = order[ends[order] > 0]
    parts = []
    for rows in torch.tensor_split(order, min(groups, max(1, len(order)))):
        if len(rows):
            end = int(ends[rows].max())
            parts.append((x[rows, :end], y[rows, :end], w[rows, :end]))
    return parts or [(x, y, w)]  # nothing trained at all: sft_loss says so


def sft_step(model, optimizer, x, y, w, grad_clip: float = 1.0, groups: int = 1) -> float:
    """One optimizer step on sft_loss; returns the loss before the step.

    groups > 1 runs the batch as split_by_length's parts (the same step up to round-off, with
    less padding: the rows of a batch differ in length)."""
    parts = split_by_length(x, y, w, groups) if groups > 1 else [(x, y, w)]
    return sft_step_parts(model, optimizer, parts, grad_clip)


def sft_step_parts(model, optimizer, parts, grad_clip: float = 1.0) -> float:
    """One optimizer step on the mean loss over every trained token of all `parts`, a list of
    (x, y, w) batches (each padded on its own); returns that loss, before the step.

    Each part's loss is weighted by its share of the trained tokens, and the gradients of the
    parts add up: the step is the one a single batch of all the rows would take."""
    parts = list(parts)
    if not parts:
        raise ValueError("sft_step_parts: no batches; give a list of (x, y, w)")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = sum(float(w.sum()) for _, _, w in parts)
    loss_value = 0.0
    for x, y, w in parts:
        part = sft_loss(model, x, y, w)
        if len(parts) > 1:
            part = part * (float(w.sum()) / total)  # a token-weighted mean over the parts
        part.backward()
        loss_value += part.item()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss_value


__all__ = [
    "make_batch",
    "render_with_mask",
    "sft_loss",
    "sft_step",
    "sft_step_parts",
    "split_by_length",
]
