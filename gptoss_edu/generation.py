"""Generating text: KV-cache decoding, sampling, stop tokens and streaming (chapter 11).

    new_ids = generate(model, prompt_ids, max_new_tokens=32, temperature=0.0)   # greedy

The prompt is run once ("prefill") and its keys and values kept in a `KVCache` (chapter 5);
each new token then costs one forward pass over a single position ("decode").

Arguments a user can get wrong are refused with a message: token ids must be integers (1.9 is
not truncated to 1), the temperature a finite number >= 0. Any positive temperature is
defined, however small: the logits are shifted by their maximum before the division, so
temperature=1e-40 draws among the top tokens (greedy in the limit) instead of overflowing.
"""

from __future__ import annotations

import inspect
import math
import numbers

import torch


def check_sampling(temperature, top_p, top_k) -> None:
    """Refuse sampling settings that have no meaning (errors name the argument and its value)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a number >= 0; found {temperature!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy); found {temperature}"
        )
    if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be a number in (0, 1]; found {top_p!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None; found {top_k!r}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (V,) with all but the k largest set to -inf."""
    kth = torch.topk(logits, k).values[-1]  # the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits (V,) with -inf outside the smallest most-likely set whose probability reaches p."""
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens strictly more likely
    sorted_logits = sorted_logits.masked_fill(before >= p, float("-inf"))  # enough without it
    return torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)


def sample_next(logits, temperature=1.0, top_p=1.0, top_k=None, generator=None) -> int:
    """Pick the next token from logits (V,): greedy at temperature 0, else sample.

    temperature: a finite number >= 0; top_p in (0, 1]; top_k an int >= 1 or None; generator:
    a torch.Generator for reproducible draws.

    top_k keeps the k most likely tokens; top_p keeps the smallest set of most likely tokens
    whose probabilities add up to at least top_p (the most likely token always stays).
    """
    check_sampling(temperature, top_p, top_k)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"sample_next: logits must be a tensor (V,), one position's; found {shape}"
        )
    logits = logits.float()  # (V,)
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = (logits - logits.max()) / temperature  # shifted first: no overflow for tiny T
    if top_k is not None and top_k < logits.shape[-1]:
        logits = top_k_filter(logits, top_k)
    if top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def check_prompt(model, prompt) -> list[int]:
    """The prompt as a list of int ids, or a clear error (float ids are refused, not cut)."""
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 1:
            raise ValueError(
                f"generate: prompt_tokens must be 1-D (one sequence); found shape {tuple(prompt.shape)}"
            )
        if prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
            raise TypeError(
                f"generate: prompt_tokens must hold integer token ids; found dtype {prompt.dtype}"
            )
        prompt = prompt.tolist()
    prompt = [_token_id("prompt_tokens", i, t) for i, t in enumerate(_ids("prompt_tokens", prompt))]
    if not prompt:
        raise ValueError("generate: prompt_tokens is empty; give at least one token")
    model.check_tokens(torch.tensor(prompt))
    return prompt


def _ids(what: str, ids):
    """`ids` if it can be a sequence of token ids (None or a lone int cannot)."""
    if not hasattr(ids, "__iter__"):
        raise TypeError(f"generate: {what} is a {type(ids).__name__}; expected a list of int ids")
    return ids


def _token_id(what: str, i: int, t) -> int:
    if isinstance(t, torch.Tensor) and t.dim() == 0 and not t.is_floating_point():
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(
            f"generate: {what}[{i}] = {t!r} is not an integer token id "
            "(ids are never rounded; convert them with int() if that is what you mean)"
        )
    if not -(2**63) <= t < 2**63:  # past int64: no tensor can hold it, no vocabulary has it
        raise ValueError(f"generate: {what}[{i}] = {t} is far outside any vocabulary")
    return int(t)


def takes_logits_at(model) -> bool:
    """Whether model(x, logits_at=mask) works: GptOss's forward, also under a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_at" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError, AttributeError):  # no forward, or not introspectable
        return False


def decode_loop(model, prompt, max_new_tokens, choose, stop=(), on_token=None, use_cache=True):
    """Prefill `prompt`, then one token per step chosen by `choose(logits (V,)) -> id`."""
    device = next(model.parameters()).device
    cache = model.new_cache() if use_cache else None
    last_only = takes_logits_at(model)  # then the vocabulary projection runs at 1 position
    seq, out = list(prompt), []
    step_input = torch.tensor(seq, device=device)  # prefill: the whole prompt at once
    for _ in range(max_new_tokens):
        if len(seq) >= model.config.max_context_length:  # no position left
            break
        at = {}
        if last_only:  # (T,) bool, True at the last position: the only logits a step needs
            at["logits_at"] = torch.arange(len(step_input), device=device) == len(step_input) - 1
        logits = model(step_input, cache=cache, **at)[-1].float().cpu()  # (V,) the last position
        token = choose(logits)
        out.append(token)
        if on_token is not None:
            on_token(token)  # streaming: the caller sees it now
        if token in stop:
            break  # the stop token is part of the reply
        seq.append(token)
        step_input = torch.tensor([token] if use_cache else seq, device=device)  # decode
    return out


@torch.inference_mode()
def generate(model, prompt_tokens, max_new_tokens=32, temperature=1.0, top_p=1.0, top_k=None,
             stop_tokens=(), seed=None, on_token=None, use_cache=True, return_logits=False):  # fmt: skip
    """Generate up to `max_new_tokens` tokens after `prompt_tokens`; return the new ids.

    prompt_tokens: a sequence or 1-D tensor of int ids; temperature (0 = greedy), top_p in (0, 1]
    and top_k (int or None) as in `sample_next`; stop_tokens: ids that end the reply.

    Stops early after emitting a token in `stop_tokens` (that token is included in the result)
    or when the model's context is full. `on_token(id)` is called for each new token as soon
    as it exists (streaming). `seed` makes sampling reproducible. With `use_cache=False` every
    step recomputes the whole sequence (slow; for checking the cache). With `return_logits`,
    returns (ids, logits) where logits is (n_new, V) float32: the logits each token was drawn from.
    """
    prompt, stop = check_generate(model, prompt_tokens, max_new_tokens, stop_tokens)
    check_sampling(temperature, top_p, top_k)
    check_seed_and_callback(seed, on_token)
    generator = torch.Generator(device="cpu")  # sampling draws on the CPU, reproducibly
    generator.manual_seed(seed) if seed is not None else generator.seed()
    kept = []  # the logits of each step, if asked for

    def choose(logits: torch.Tensor) -> int:
        if return_logits:
            kept.append(logits)
        return sample_next(logits, temperature, top_p, top_k, generator)

    out = decode_loop(model, prompt, max_new_tokens, choose, stop, on_token, use_cache)
    if return_logits:
        return out, torch.stack(kept) if kept else torch.empty(0, model.config.vocab_size)
    return out


def check_seed_and_callback(seed, on_token) -> None:
    """seed: None or an int torch can seed with; on_token: None or a function of one id."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"generate: seed must be None or an int; found {seed!r}")
    if seed is not None and not -(2**63) <= seed < 2**64:
        raise ValueError(f"generate: seed must be an int in [-2**63, 2**64); found {seed}")
    if on_token is not None and not callable(on_token):
        raise TypeError(
            f"generate: on_token must be a function of one token id, or None; "
            f"found a {type(on_token).__name__}"
        )


def check_generate(model, prompt_tokens, max_new_tokens, stop_tokens):
    """The prompt and the stop tokens as ints, after checking every argument about tokens."""
    prompt = check_prompt(model, prompt_tokens)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"generate: max_new_tokens must be an int >= 0; found {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0; found {max_new_tokens}")
    stop = {_token_id("stop_tokens", i, t) for i, t in enumerate(_ids("stop_tokens", stop_tokens))}
    vocab = model.config.vocab_size
    bad = sorted(t for t in stop if not 0 <= t < vocab)
    if bad:  # ids the model can never emit would never stop it (another tokenizer's ids?)
        raise ValueError(f"generate: stop_tokens {bad[:5]} not in this model's ids 0..{vocab - 1}")
    return prompt, stop


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
