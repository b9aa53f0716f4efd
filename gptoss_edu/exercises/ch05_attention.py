"""Checkers for chapter 5's exercises (exercises/05_attention.ipynb): causal attention, the
sliding-window mask, sinks, grouped-query heads and the KV cache's size.

    ge.exercises.check_causal_attention(my_attention)
"""

from __future__ import annotations

import math

import torch

from ..config import ModelConfig
from ..model.attention import attention_mask, sdpa_with_sinks
from ..params import kv_cache_bytes
from ._common import Checker, ExerciseFailure, expect_close

__all__ = [
    "check_causal_attention",
    "check_sliding_window_mask",
    "check_attention_with_sink",
    "check_gqa_attention",
    "check_kv_cache_bytes",
]


def _attend(q, k, v, mask, scale, sink=None):
    """Single-head reference in float64: q (T, D), k/v (S, D), mask (T, S)."""
    s = (q.double() @ k.double().T) * scale
    s = s.masked_fill(~mask, float("-inf"))
    if sink is not None:
        col = torch.full((s.shape[0], 1), float(sink), dtype=torch.float64)
        p = torch.softmax(torch.cat([s, col], dim=-1), dim=-1)[:, :-1]
    else:
        p = torch.softmax(s, dim=-1)
    return p @ v.double()


def _qkv(T=6, D=8, seed=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, D, generator=g) * 1.5 for _ in range(3))


@Checker("check_causal_attention")
def check_causal_attention(fn):
    """fn(q (T, D), k (T, D), v (T, D)) -> (T, D): softmax(q k^T / sqrt(D)) v, causal."""
    q, k, v = _qkv()
    T, D = q.shape
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    got = fn(q, k, v)
    expected = _attend(q, k, v, causal, 1 / math.sqrt(D)).float()
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        g = got.double()
        everything = torch.ones(T, T, dtype=torch.bool)
        if torch.allclose(g, _attend(q, k, v, everything, 1 / math.sqrt(D)), atol=1e-5):
            raise ExerciseFailure(
                "no causal mask: token t must not read tokens after it; set scores with "
                "key > query to -inf before the softmax"
            )
        if torch.allclose(g, _attend(q, k, v, causal, 1.0), atol=1e-5):
            raise ExerciseFailure("the scores are not scaled: divide q k^T by sqrt(head_dim)")
        if torch.allclose(g, _attend(q, k, v, causal, 1 / D), atol=1e-5):
            raise ExerciseFailure("scaled by 1/D; the scale is 1/sqrt(D)")
        s = (q.double() @ k.double().T) / math.sqrt(D)
        wrong_dim = (
            torch.softmax(s.masked_fill(~causal, float("-inf")), dim=0).nan_to_num() @ v.double()
        )
        if torch.allclose(g, wrong_dim, atol=1e-5):
            raise ExerciseFailure(
                "softmax over the wrong axis: each query's row (dim=-1) must sum to 1"
            )
    expect_close(got, expected, "attention output")
    return "row t mixes values 0..t"


@Checker("check_sliding_window_mask")
def check_sliding_window_mask(fn):
    """fn(T, window) -> (T, T) bool, True where query t may read key s: t - window < s <= t."""
    for T, window in ((8, 3), (6, 1), (5, 10)):
        got = fn(T, window)
        pos = torch.arange(T)
        expected = attention_mask(pos, pos, window)
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailure(f"return a torch.Tensor; got {type(got).__name__}")
        if got.dtype != torch.bool:
            raise ExerciseFailure(
                f"return a bool tensor (True = may attend); got dtype {got.dtype}"
            )
        if tuple(got.shape) != (T, T):
            raise ExerciseFailure(f"wrong shape {tuple(got.shape)}; expected ({T}, {T})")
        if torch.equal(got, expected):
            continue
        if torch.equal(got, attention_mask(pos, pos, window + 1)):
            raise ExerciseFailure(
                f"off by one: each query sees {window + 1} keys; a window of {window} means "
                f"{window} keys, the query's own included (t - window < s <= t)"
            )
        if window > 1 and torch.equal(got, attention_mask(pos, pos, window - 1)):
            raise ExerciseFailure(
                f"off by one: each query sees only {window - 1} keys; the window of {window} "
                "includes the query's own position (t - window < s <= t)"
            )
        if got.triu(1).any():
            raise ExerciseFailure("the mask is not causal: a query reads keys after it")
        if torch.equal(got, attention_mask(pos, pos, None)) and window < T:
            raise ExerciseFailure(
                "this is the full causal mask: also hide keys more than window-1 back"
            )
        if not torch.equal(got, expected):
            bad = (got != expected).nonzero()[0].tolist()
            raise ExerciseFailure(
                f"T={T}, window={window}: entry (query {bad[0]}, key {bad[1]}) is "
                f"{bool(got[bad[0], bad[1]])}; expected {bool(expected[bad[0], bad[1]])}"
            )
    return "t - window < s <= t"


@Checker("check_attention_with_sink")
def check_attention_with_sink(fn):
    """fn(q, k, v (T, D), sink float) -> (T, D): causal attention where the sink is a virtual key
    with logit `sink` and value zero."""
    q, k, v = _qkv(seed=6)
    T, D = q.shape
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scale = 1 / math.sqrt(D)
    sink = 1.5
    got = fn(q, k, v, sink)
    expected = _attend(q, k, v, causal, scale, sink).float()
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        g = got.double()
        if torch.allclose(g, _attend(q, k, v, causal, scale), atol=1e-5):
            raise ExerciseFailure(
                "the sink has no effect: it must join the softmax as an extra column (so the other "
                "weights sum to less than 1), then be dropped. Did you renormalise after dropping it?"
            )
        if torch.allclose(g, _attend(q, k, v, causal, scale, sink * scale), atol=1e-5):
            raise ExerciseFailure("the sink logit was scaled by 1/sqrt(D); it is used as is")
        if torch.allclose(g, _attend(q, k, v, causal, scale, math.exp(sink)), atol=1e-5):
            raise ExerciseFailure(
                "the sink is a logit: use it directly, not exp(sink), in the softmax input"
            )
    expect_close(got, expected, "attention output with sink")
    return "the sink soaks up weight and contributes a zero value"


@Checker("check_gqa_attention")
def check_gqa_attention(fn):
    """fn(q (T, H, D), k (T, Hkv, D), v (T, Hkv, D)) -> (T, H, D): causal attention where query
    head h reads key/value head h // (H // Hkv)."""
    g = torch.Generator().manual_seed(7)
    T, H, Hkv, D = 5, 6, 2, 4
    q = torch.randn(T, H, D, generator=g)
    k = torch.randn(T, Hkv, D, generator=g)
    v = torch.randn(T, Hkv, D, generator=g)
    G = H // Hkv
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    sinks = torch.full((H,), float("-inf"))  # no sink: plain softmax
    expected = sdpa_with_sinks(q.reshape(1, T, Hkv, G, D), k[None], v[None], sinks, causal, D**-0.5)
    expected = expected.reshape(T, H, D)
    got = fn(q, k, v)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        mod = torch.stack(
            [_attend(q[:, h], k[:, h % Hkv], v[:, h % Hkv], causal, D**-0.5) for h in range(H)], 1
        )
        if torch.allclose(got.double(), mod, atol=1e-5):
            raise ExerciseFailure(
                "query head h reads KV head h % Hkv (that is what k.repeat(...) gives); in gpt-oss "
                "consecutive query heads share a KV head: h // (H // Hkv). Use "
                "repeat_interleave(H // Hkv, dim=1)"
            )
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (T, Hkv, D):
        raise ExerciseFailure(f"output has {Hkv} heads; there is one output per query head ({H})")
    expect_close(got, expected, "GQA output")
    return f"{H} query heads share {Hkv} key/value heads, {G} each"


@Checker("check_kv_cache_bytes")
def check_kv_cache_bytes(fn):
    """fn(config, tokens) -> bytes of the bf16 KV cache, sliding layers keeping only their window."""
    for cfg, tokens in (
        (ModelConfig.gpt_oss_20b(), 131072),
        (ModelConfig.gpt_oss_120b(), 5000),
        (ModelConfig.tiny(), 20),
    ):
        got = fn(cfg, tokens)
        expected = kv_cache_bytes(cfg, tokens)
        if not isinstance(got, int) or isinstance(got, bool):
            raise ExerciseFailure(f"return an int (bytes); got {type(got).__name__}")
        L, kv = cfg.num_hidden_layers, cfg.kv_dim
        full = L * tokens * 2 * kv * 2
        if got == expected:
            continue
        if got == full:
            raise ExerciseFailure(
                "every layer keeps every token; sliding-window layers (even layers) keep only "
                f"their last {cfg.sliding_window} keys and values"
            )
        if got * 2 == expected:
            raise ExerciseFailure(
                "half the answer: store both K and V (x2), each in bf16 (2 bytes)"
            )
        if got == expected * 2:
            raise ExerciseFailure("twice the answer: bf16 is 2 bytes per value, not 4 (float32)")
        if got * cfg.num_key_value_heads == expected * cfg.num_attention_heads:
            raise ExerciseFailure(
                f"you cached {cfg.num_attention_heads} heads; with GQA only the "
                f"{cfg.num_key_value_heads} key/value heads are stored"
            )
        raise ExerciseFailure(
            f"{cfg.num_hidden_layers} layers, {tokens} tokens: got {got:,} bytes, expected {expected:,}"
        )
    return f"gpt-oss-20b at 131,072 tokens: {kv_cache_bytes(ModelConfig.gpt_oss_20b(), 131072):,} bytes"


def _random_tiny(window: int = 4, seed: int = 0):
    """A random tiny gpt-oss (sinks and biases non-zero) with a small sliding window."""
    from ..model.transformer import GptOss

    cfg = ModelConfig.tiny().replace(sliding_window=window, vocab_size=97)
    torch.manual_seed(seed)
    model = GptOss(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


@Checker("check_my_attention_block")
def check_my_attention_block(cls, seed=None):
    """cls: your `AttentionBlock(config, layer_idx)` (my_gptoss/attention.py) with the
    checkpoint's attribute names (norm, qkv, sinks, out); forward(x (B, T, hidden), positions)
    returns the residual update. Loaded with the weights of a random tiny gpt-oss's layers 0
    (sliding, window 4) and 1 (full) and compared with the package's."""
    window, T = (4, 11) if seed is None else (3 + seed % 3, 8 + seed % 7)
    model = _random_tiny(window=window, seed=0 if seed is None else 3000 + seed)
    cfg = model.config
    x = torch.randn(2, T, cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    positions = torch.arange(T) + (0 if seed is None else seed % 50)  # not always from 0
    for layer in (0, 1):
        ref = model.block[layer].attn
        mine = cls(cfg, layer)
        missing, unexpected = mine.load_state_dict(ref.state_dict(), strict=False)
        if missing or unexpected:
            raise ExerciseFailure(
                f"your AttentionBlock's parameters do not match the checkpoint's names: missing "
                f"{sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        with torch.no_grad():
            got, expected = mine(x, positions), ref(x, positions)
            kind = f"sliding, window {window}" if layer == 0 else "full"
            if layer == 0 and isinstance(got, torch.Tensor) and got.shape == expected.shape:
                ref.sliding_window = None
                no_window = ref(x, positions)
                ref.sliding_window = cfg.sliding_window
                if torch.allclose(got, no_window, atol=1e-5):
                    raise ExerciseFailure(
                        "layer 0 ignores its sliding window: even layers see only the last "
                        "`sliding_window` keys (config.is_sliding(layer))"
                    )
                for w in (cfg.sliding_window - 1, cfg.sliding_window + 1):
                    ref.sliding_window = w
                    off = ref(x, positions)
                    ref.sliding_window = cfg.sliding_window
                    if torch.allclose(got, off, atol=1e-5):
                        raise ExerciseFailure(
                            f"layer 0 sees {w} keys, not {cfg.sliding_window}: a query at t reads "
                            "keys s with t - window < s <= t (its own included)"
                        )
            if isinstance(got, torch.Tensor) and got.shape == expected.shape:
                sinks = ref.sinks.detach().clone()
                ref.sinks.fill_(float("-inf"))  # exp(-inf) = 0: no sink
                no_sink = ref(x, positions)
                ref.sinks.copy_(sinks)
                if torch.allclose(got, no_sink, atol=1e-5):
                    raise ExerciseFailure(
                        "the sinks do nothing in your attention: each head's sink logit joins the "
                        "softmax as an extra column, then that column is dropped"
                    )
            expect_close(got, expected, f"layer {layer} ({kind}) update", rtol=1e-4, atol=1e-5)
    return "your AttentionBlock equals the package's on a sliding and a full layer"


@Checker("check_my_kv_cache")
def check_my_kv_cache(cls, seed=None):
    """cls: your `KVCache(config)` (my_gptoss/attention.py): `offset` (tokens seen),
    update(layer, k, v) -> (keys, values, positions) and `keys[layer]`, the layer's key buffer
    (B, slots, Hkv, D). Fed to the package's model in chunks (a prompt longer than the window,
    single tokens, another chunk): the logits must equal one pass over the whole sequence, and a
    sliding layer must hold at most `sliding_window` keys."""
    chunks = (7, 1, 1, 1, 6, 1, 1, 1, 1, 1)
    window = 4
    if seed is not None:  # another window and another way of cutting the sequence into chunks
        rng = torch.Generator().manual_seed(4000 + seed)
        window = 3 + seed % 3
        chunks = (window + 2,) + tuple(int(c) for c in torch.randint(1, 4, (8,), generator=rng))
        chunks += (window + 1, 1, 1)
    model = _random_tiny(window=window, seed=1 if seed is None else 5000 + seed)
    cfg = model.config
    n = sum(chunks)
    tokens = torch.randint(0, cfg.vocab_size, (1, n), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(tokens)  # (1, n, V)
        cache = cls(cfg)
        if getattr(cache, "offset", None) != 0:
            raise ExerciseFailure(
                "a new cache needs `offset = 0` (the model reads and advances it)"
            )
        start = 0
        for T in chunks:
            got = model(tokens[:, start : start + T], cache=cache)
            if not torch.allclose(got, full[:, start : start + T], rtol=1e-4, atol=1e-4):
                hint = ""
                if T > cfg.sliding_window:
                    hint = (
                        f" (a chunk of {T} tokens, longer than the window {cfg.sliding_window}: its "
                        "first queries need keys that the ring overwrites; return the old keys and "
                        "the chunk, then store)"
                    )
                elif start >= cfg.sliding_window:
                    hint = " (past the window: check which keys you evict and their positions)"
                raise ExerciseFailure(
                    f"logits of tokens {start}-{start + T - 1} differ from the full pass{hint}"
                )
            start += T
    for layer in range(cfg.num_hidden_layers):
        if cfg.is_sliding(layer):
            keys = cache.keys[layer]
            if keys.shape[1] > cfg.sliding_window:
                raise ExerciseFailure(
                    f"sliding layer {layer} holds {keys.shape[1]} keys after {n} tokens; it should "
                    f"keep at most sliding_window = {cfg.sliding_window} (evict what no query reads)"
                )
    return "chunked decoding equals the full pass; sliding layers keep only their window"


__all__ += ["check_my_attention_block", "check_my_kv_cache"]
