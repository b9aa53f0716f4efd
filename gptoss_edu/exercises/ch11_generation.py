"""Checkers for chapter 11's exercises (exercises/11_generation.ipynb): temperature, top-k,
top-p, a greedy generation loop with stop tokens, and UTF-8-safe streaming.

    ge.exercises.check_top_p(my_top_p)
"""

from __future__ import annotations

import functools

import torch

from ..config import ModelConfig
from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_temperature",
    "check_top_k",
    "check_top_p",
    "check_greedy_generate",
    "check_stream_pieces",
    "check_my_generate",
]

NEG = float("-inf")


def _logits(V=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, generator=g) * 2


@Checker("check_temperature")
def check_temperature(fn):
    """fn(logits (V,), temperature > 0) -> probabilities (V,) = softmax(logits / temperature)."""
    z = _logits()
    for tau in (0.5, 1.0, 2.5):
        got = fn(z.clone(), tau)
        expected = torch.softmax(z / tau, dim=-1)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            if not torch.allclose(got, expected, atol=1e-6):
                if torch.allclose(got, torch.softmax(z * tau, dim=-1), atol=1e-6):
                    raise ExerciseFailure(
                        "you multiplied by the temperature; divide the logits by it (a high "
                        "temperature must flatten the distribution)"
                    )
                if torch.allclose(got, torch.softmax(z, dim=-1), atol=1e-6):
                    raise ExerciseFailure(f"temperature {tau} had no effect: use softmax(z / t)")
                if torch.allclose(got, torch.log_softmax(z / tau, dim=-1), atol=1e-5):
                    raise ExerciseFailure(
                        "these are log-probabilities; return softmax, not log_softmax"
                    )
                if torch.allclose(got, z / tau, atol=1e-6):
                    raise ExerciseFailure("return probabilities: apply a softmax to z / t")
        expect_close(got, expected, f"probabilities at temperature {tau}", atol=1e-6)
    return "softmax(z / t)"


def _top_k_ref(z, k):
    kth = torch.topk(z, k).values[-1]
    return z.masked_fill(z < kth, NEG)


def _filter_shape_checks(got, z, what):
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailure(f"{what}: return a tensor of logits; got {type(got).__name__}")
    if tuple(got.shape) != tuple(z.shape):
        raise ExerciseFailure(
            f"{what}: shape {tuple(got.shape)}; return all {z.shape[0]} logits, in token order, "
            "with the excluded ones set to -inf"
        )
    if not torch.isinf(got).any() and (got == 0).any() and not (z == 0).any():
        raise ExerciseFailure(
            f"{what}: excluded tokens are set to 0; set them to -inf (a logit of 0 still gets "
            "probability after the softmax)"
        )
    finite = torch.isfinite(got)
    if finite.any() and torch.allclose(got[finite].sum(), torch.tensor(1.0)) and (got >= 0).all():
        raise ExerciseFailure(f"{what}: these look like probabilities; return filtered logits")


@Checker("check_top_k")
def check_top_k(fn):
    """fn(logits (V,), k) -> logits (V,) with all but the k largest set to -inf."""
    z = _logits()
    for k in (1, 3, 7, 12):
        got = fn(z.clone(), k)
        _filter_shape_checks(got, z, f"k={k}")
        expected = _top_k_ref(z, k)
        kept = int(torch.isfinite(got).sum())
        if torch.equal(torch.isfinite(got), torch.isfinite(expected)):
            expect_close(got, expected, f"kept logits (k={k})")
            continue
        smallest = torch.topk(z, k, largest=False).indices
        if kept == k and set(torch.isfinite(got).nonzero().flatten().tolist()) == set(
            smallest.tolist()
        ):
            raise ExerciseFailure(f"k={k}: you kept the k SMALLEST logits; keep the largest")
        if kept != k:
            raise ExerciseFailure(f"k={k}: {kept} tokens kept; keep exactly k (off by {kept - k})")
        raise ExerciseFailure(f"k={k}: kept the wrong tokens; keep the k largest logits")
    return "the k largest logits survive"


def _top_p_ref(z, p, inclusive=False, sort=True):
    if sort:
        sorted_z, order = torch.sort(z, descending=True)
    else:
        sorted_z, order = z, torch.arange(z.shape[0])
    probs = torch.softmax(sorted_z, dim=-1)
    cum = torch.cumsum(probs, dim=-1)
    drop = cum > p if inclusive else (cum - probs) >= p
    sorted_z = sorted_z.masked_fill(drop, NEG)
    return torch.full_like(z, NEG).scatter(0, order, sorted_z)


@Checker("check_top_p")
def check_top_p(fn):
    """fn(logits (V,), p) -> logits (V,): keep the fewest most-likely tokens whose probabilities
    add up to at least p; the others -inf."""
    z = _logits(seed=2)
    for p in (0.5, 0.8, 0.95, 1.0, 0.05):  # 0.05 < the top probability: one token stays
        got = fn(z.clone(), p)
        _filter_shape_checks(got, z, f"p={p}")
        expected = _top_p_ref(z, p)
        mask = torch.isfinite(got)
        if torch.equal(mask, torch.isfinite(expected)):
            expect_close(got, expected, f"kept logits (p={p})")
            continue
        n_kept, n_exp = int(mask.sum()), int(torch.isfinite(expected).sum())
        if torch.equal(mask, torch.isfinite(_top_p_ref(z, p, inclusive=True))):
            raise ExerciseFailure(
                f"p={p}: {n_kept} tokens kept, {n_exp} expected: you dropped the token that makes "
                "the sum reach p. Keep a token if the tokens MORE likely than it add up to less "
                "than p (cumsum - probs < p)"
            )
        if torch.equal(mask, torch.isfinite(_top_p_ref(z, p, sort=False))):
            raise ExerciseFailure(
                f"p={p}: the cumulative sum runs in token order; sort by probability first "
                "(most likely first), then map back"
            )
        if n_kept == 0:
            raise ExerciseFailure(
                f"p={p}: every token was removed; the most likely token must always stay"
            )
        raise ExerciseFailure(f"p={p}: {n_kept} tokens kept; expected {n_exp}")
    return "the smallest nucleus with mass >= p"


@functools.lru_cache(maxsize=1)
def _greedy_case():
    """The model, prompt, free-running greedy continuation, a stop token and the continuation
    that stops at it; built once per process."""
    model = _greedy_model()
    prompt = [1, 5, 9, 2]
    free = _greedy_ref(model, prompt, 10)
    # A stop token: the first new token that has not appeared before it, 3 or more steps in.
    at = next((i for i in range(2, len(free)) if free[i] not in free[:i]), None)
    stopped = _greedy_ref(model, prompt, 10, {free[at]}) if at is not None else None
    return model, prompt, free, at, stopped


def _greedy_model():
    """A 2-layer random gpt-oss whose greedy continuation varies (large weights)."""
    from ..model.transformer import GptOss

    cfg = ModelConfig.tiny().replace(num_hidden_layers=2, vocab_size=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = GptOss(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.endswith("norm.scale"):
                    p.normal_(std=0.3)
    return model


def _greedy_ref(model, prompt, n, stop=()):
    from ..generation import generate

    return generate(model, prompt, max_new_tokens=n, temperature=0, stop_tokens=stop)


@Checker("check_greedy_generate")
def check_greedy_generate(fn):
    """fn(model, prompt (list of ints), max_new_tokens, stop_tokens (set)) -> list of new ids."""
    model, prompt, free, at, expected = _greedy_case()
    got = fn(model, list(prompt), 10, set())
    if not isinstance(got, list | tuple):
        raise ExerciseFailure(f"return a list of token ids; got {type(got).__name__}")
    got = [int(t) for t in got]
    if got[: len(prompt)] == prompt and got[len(prompt) :] == free:
        raise ExerciseFailure("you returned the prompt too; return only the new tokens")
    if len(got) != len(free):
        raise ExerciseFailure(
            f"max_new_tokens=10 but {len(got)} tokens were returned (no stop token given)"
        )
    if got != free:
        bad = next(i for i, (a, b) in enumerate(zip(got, free)) if a != b)
        raise ExerciseFailure(
            f"new token {bad} is {got[bad]}; greedy gives {free[bad]} (the arg-max of the logits "
            "at the LAST position, after appending every token so far)"
        )
    if at is not None:
        stop = {free[at]}
        got = [int(t) for t in fn(model, list(prompt), 10, set(stop))]
        if got == expected[:-1]:
            raise ExerciseFailure("the stop token itself is missing: append it, then stop")
        if got == free:
            raise ExerciseFailure(f"did not stop at the stop token {free[at]} (new token {at})")
        if got != expected:
            raise ExerciseFailure(f"with stop token {free[at]}: got {got}; expected {expected}")
    return "greedy, stops after a stop token"


def _pieces():
    text = "naïve → café 🙂!"
    raw = text.encode()
    cuts = [0, 3, 4, 7, 9, 11, 14, 16, len(raw) - 3, len(raw) - 1, len(raw)]
    return [raw[a:b] for a, b in zip(cuts, cuts[1:])], text


def _stream_ref(pieces):
    out, shown, buf = [], 0, b""
    for p in pieces:
        buf += p
        text = buf.decode("utf-8", errors="ignore")
        out.append(text[shown:])
        shown = len(text)
    return out


@Checker("check_stream_pieces")
def check_stream_pieces(fn):
    """fn(pieces: list of bytes, one per token) -> list of str: what to print after each token,
    holding back characters whose UTF-8 bytes are not complete yet."""
    pieces, text = _pieces()
    got = fn(list(pieces))
    expected = _stream_ref(pieces)
    if not isinstance(got, list | tuple):
        raise ExerciseFailure(f"return a list of strings; got {type(got).__name__}")
    if len(got) != len(pieces):
        raise ExerciseFailure(f"{len(got)} strings for {len(pieces)} tokens; one per token")
    got = list(got)
    if got == expected:
        return "whole characters only, each printed once"
    if any("\ufffd" in s for s in got):
        raise ExerciseFailure(
            "'\ufffd' appears: a character was split between tokens and decoded half by half; "
            "keep all the bytes and decode them together, printing only the new characters"
        )
    joined = "".join(got)
    if joined != text and got[-1] == text:
        raise ExerciseFailure("you print the whole text each time; print only what is new")
    if joined != text:
        raise ExerciseFailure(f"the pieces join to {joined!r}; expected {text!r}")
    raise ExerciseFailure(f"got {got}; expected {expected}")


# ------------------------------------------------------------- the capstone: your own gpt-oss


@Checker("check_my_generate")
def check_my_generate(fn):
    """The capstone of chapter 11. fn: your `generate(model, prompt_ids, max_new_tokens,
    temperature=0.0, stop_tokens=())` -> list of new ids (my_gptoss/generation.py), run on YOUR
    gpt-oss (my_gptoss/model.py, or the book's where you have not written it) loaded with the
    shipped trained tiny model. Greedy: it must produce the package's tokens, token for token,
    over 40 tokens (past the sliding window of 32), and stop after a stop token."""
    from ..generation import generate
    from ..tiny import load_tiny
    from .my_gptoss import student_module

    ref, tok = load_tiny(experts="dequantized")
    mine = student_module("model").GptOss(ref.config)
    mine.load_state_dict(ref.state_dict())
    mine.eval()
    prompt = tok.encode("import os\n\n\ndef read_file(path):\n")
    want = generate(ref, prompt, max_new_tokens=40, temperature=0)
    got = fn(mine, list(prompt), 40, temperature=0.0)
    if not isinstance(got, list | tuple):
        raise ExerciseFailure(f"return a list of token ids; got {type(got).__name__}")
    got = [int(t) for t in got]
    if got[: len(prompt)] == prompt and got[len(prompt) :] == want:
        raise ExerciseFailure("you returned the prompt too; return only the new tokens")
    if got != want:
        bad = next(
            (i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want))
        )
        raise ExerciseFailure(
            f"{len(got)} tokens; the package's greedy generation differs from new token {bad} "
            f"on (got {got[bad : bad + 3]}, expected {want[bad : bad + 3]}): with a cache, feed "
            "only the new token and let the positions continue from cache.offset"
        )
    stop = want[len(want) // 2]
    at = want.index(stop)
    got = [int(t) for t in fn(mine, list(prompt), 40, temperature=0.0, stop_tokens={stop})]
    if got == want[:at]:
        raise ExerciseFailure("the stop token itself is missing: append it, then stop")
    if got != want[: at + 1]:
        raise ExerciseFailure(f"with stop token {stop}: {len(got)} tokens; expected {at + 1}")
    return f"your gpt-oss generates the package's {len(want)} greedy tokens, token for token"
