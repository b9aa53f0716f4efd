"""Generating text: KV-cache decoding, sampling and streaming (chapter 11).

    new_ids = generate(model, prompt_ids, max_new_tokens=32, temperature=0.0)   # greedy

The prompt is run once ("prefill") and its keys and values kept in a `KVCache`; each new token
then costs one forward pass over a single position ("decode").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Pick the next token from logits (V,): greedy at temperature 0, else sample.

    top_k keeps the k most likely tokens; top_p keeps the smallest set of most likely tokens
    whose probabilities add up to at least top_p (the most likely token always stays).
    """
    logits = logits.float()
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the strictly better tokens
        drop = before >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _check_args(model, prompt, max_new_tokens, temperature, top_p, top_k) -> list[int]:
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 1:
            raise ValueError(
                f"generate: prompt_tokens must be 1-D (one sequence); found shape {tuple(prompt.shape)}"
            )
        prompt = prompt.tolist()
    prompt = [int(t) for t in prompt]
    if not prompt:
        raise ValueError("generate: prompt_tokens is empty; give at least one token")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0; found {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0; found {temperature}")
    if not (0 < top_p <= 1):
        raise ValueError(f"generate: top_p must be in (0, 1]; found {top_p}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"generate: top_k must be a positive int or None; found {top_k!r}")
    model.check_tokens(torch.tensor(prompt))
    return prompt


@torch.inference_mode()
def generate(
    model,
    prompt_tokens: Sequence[int] | torch.Tensor,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    stop_tokens: Iterable[int] = (),
    seed: int | None = None,
    on_token: Callable[[int], object] | None = None,
    use_cache: bool = True,
    return_logits: bool = False,
):
    """Generate up to `max_new_tokens` tokens after `prompt_tokens`; return the new ids.

    Stops early after emitting a token in `stop_tokens` (that token is included in the result)
    or when the model's context is full. `on_token(id)` is called for each new token as soon
    as it exists (streaming). `seed` makes sampling reproducible. With `use_cache=False` every
    step recomputes the whole sequence (slow; for checking the cache). With `return_logits`,
    returns (ids, logits) where logits is (n_new, V) float32: the logits each token was drawn from.
    """
    prompt = _check_args(model, prompt_tokens, max_new_tokens, temperature, top_p, top_k)
    stop = {int(t) for t in stop_tokens}
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu")
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    was_training = model.training
    model.eval()
    out: list[int] = []
    all_logits: list[torch.Tensor] = []
    cache = model.new_cache() if use_cache else None
    context = model.config.max_context_length
    try:
        seq = list(prompt)
        step_input = torch.tensor(seq, device=device)
        for _ in range(max_new_tokens):
            if len(seq) >= context:  # no position left for another token
                break
            logits = model(step_input, cache=cache)[-1].float().cpu()  # (V,)
            token = sample_next(logits, temperature, top_p, top_k, generator)
            out.append(token)
            if return_logits:
                all_logits.append(logits)
            if on_token is not None:
                on_token(token)
            if token in stop:
                break
            seq.append(token)
            step_input = torch.tensor([token] if use_cache else seq, device=device)
    finally:
        model.train(was_training)
    if return_logits:
        v = model.config.vocab_size
        return out, torch.stack(all_logits) if all_logits else torch.empty(0, v)
    return out


def stream_text(model, tokenizer, prompt: str, **kwargs) -> str:
    """Generate from a text prompt, printing text as it arrives; return the new text."""
    pieces: list[bytes] = []
    printed = 0

    def show(token: int) -> None:
        nonlocal printed
        pieces.append(tokenizer.decode_bytes([token]))
        text = b"".join(pieces).decode("utf-8", errors="ignore")  # wait for whole characters
        print(text[printed:], end="", flush=True)
        printed = len(text)

    ids = generate(model, tokenizer.encode(prompt), on_token=show, **kwargs)
    print()
    return tokenizer.decode(ids)
