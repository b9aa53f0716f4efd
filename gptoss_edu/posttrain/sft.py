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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gptoss_edu import harmony
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
    logits = model(x)  # (B, T, V)
    keep = w.reshape(-1) > 0
    ce = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1])[keep], y.reshape(-1)[keep], reduction="none"
    )  # (number of trained positions,)
    return (ce * w.reshape(-1)[keep]).sum() / total


def sft_step(model, optimizer, x, y, w, grad_clip: float = 1.0) -> float:
    """One optimizer step on sft_loss; returns the loss before the step."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = sft_loss(model, x, y, w)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


__all__ = ["make_batch", "render_with_mask", "sft_loss", "sft_step"]
