"""Attention (chapter 5): the KV cache with sliding-window eviction, the recorder hook, the
float64 reference for sinks and windows, and the deprecated return_weights flag."""

import math

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.model.attention import (
    AttentionBlock,
    KVCache,
    attention_mask,
    attention_weights,
    sdpa_with_sinks,
)
from gptoss_edu.model.recorder import Recorder


def small_config(window=4, layers=4):
    return ge.ModelConfig.tiny().replace(
        sliding_window=window, num_hidden_layers=layers, vocab_size=97
    )


def random_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = ge.GptOss(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)  # sinks and biases non-zero too
    return model.eval()


def tagged(B, T, start, Hkv=2, D=3):
    """k whose every entry is its position: a key's identity is readable from its value."""
    pos = torch.arange(start, start + T, dtype=torch.float32)
    return pos[None, :, None, None].expand(B, T, Hkv, D).clone()


@pytest.mark.parametrize("chunks", [[1] * 11, [7, 1, 1, 5, 1], [3, 9], [11]])
def test_cache_returns_exactly_the_keys_a_query_may_need(chunks):
    cfg = small_config(window=4)
    cache = KVCache(cfg)
    start = 0
    for T in chunks:
        k = tagged(2, T, start)
        for layer in (0, 1):  # layer 0 sliding (ring of 4), layer 1 full
            keys, values, positions = cache.update(layer, k, k + 0.5)
            # every returned key is the key of its stated position (values too)
            assert torch.equal(keys[0, :, 0, 0], positions.float())
            assert torch.equal(values[0, :, 0, 0], positions.float() + 0.5)
            got = sorted(positions.tolist())
            if layer == 1:
                assert got == list(range(start + T))  # full layer: the whole past, in order
                assert positions.tolist() == got
            else:
                # sliding: the (up to) 4 keys before the chunk, for its first query, + the chunk
                assert got == list(range(max(0, start - 4), start + T))
                assert cache.keys[layer].shape[1] == 4  # memory capped at the window
        start += T
    assert cache.length == [start, start, 0, 0]


def test_full_layer_buffer_grows_by_doubling():
    cache = KVCache(small_config())
    caps = []
    for t in range(20):
        cache.update(1, tagged(1, 1, t), tagged(1, 1, t))
        caps.append(cache.keys[1].shape[1])
    assert caps[:6] == [1, 2, 4, 4, 8, 8] and caps[-1] == 32  # 6 reallocations for 20 tokens


@pytest.mark.parametrize("chunks", [[1] * 14, [6, 1, 1, 1, 5, 1], [9, 5]])
def test_cached_decoding_equals_recomputation(chunks):
    cfg = small_config(window=4)
    model = random_model(cfg)
    tokens = torch.randint(
        0, cfg.vocab_size, (2, sum(chunks)), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        full = model(tokens)  # (B, T, V)
        cache = model.new_cache()
        pieces, i = [], 0
        for T in chunks:
            pieces.append(model(tokens[:, i : i + T], cache=cache))
            i += T
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.offset == tokens.shape[1]
    assert cache.keys[0].shape[1] == 4 and cache.keys[1].shape[1] >= tokens.shape[1]


def test_cache_refuses_a_new_batch_size():
    cache = KVCache(small_config())
    cache.update(0, tagged(2, 3, 0), tagged(2, 3, 0))
    with pytest.raises(ValueError, match="batch size changed from 2 to 1.*new_cache"):
        cache.update(0, tagged(1, 1, 3), tagged(1, 1, 3))


def reference_attention(q, k, v, sinks, window, scale):
    """float64 loops, straight from the formula: q (T, H, D), k, v (S=T, Hkv, D)."""
    T, H, D = q.shape
    G = H // k.shape[1]
    out = torch.zeros(T, H, D, dtype=torch.float64)
    probs = torch.zeros(H, T, T + 1, dtype=torch.float64)
    for h in range(H):
        for t in range(T):
            keys = [s for s in range(T) if s <= t and (window is None or s > t - window)]
            e = {s: math.exp(float(q[t, h].double() @ k[s, h // G].double()) * scale) for s in keys}
            z = sum(e.values()) + math.exp(float(sinks[h]))
            for s in keys:
                probs[h, t, s] = e[s] / z
                out[t, h] += e[s] / z * v[s, h // G].double()
            probs[h, t, T] = math.exp(float(sinks[h])) / z
    return out, probs


@pytest.mark.parametrize("window", [None, 3])
def test_sdpa_and_weights_match_a_float64_loop(window):
    torch.manual_seed(0)
    T, Hkv, G, D = 6, 2, 3, 4
    q, k, v = torch.randn(T, Hkv * G, D), torch.randn(T, Hkv, D), torch.randn(T, Hkv, D)
    sinks = torch.randn(Hkv * G)
    ref_out, ref_probs = reference_attention(q, k, v, sinks, window, 0.5)
    pos = torch.arange(T)
    mask = attention_mask(pos, pos, window)
    qg = q.reshape(1, T, Hkv, G, D)
    out = sdpa_with_sinks(qg, k[None], v[None], sinks, mask, 0.5)
    torch.testing.assert_close(out[0].double(), ref_out.reshape(T, -1), rtol=1e-5, atol=1e-6)
    w = attention_weights(qg, k[None], sinks, mask, 0.5).reshape(Hkv * G, T, T + 1)
    torch.testing.assert_close(w.double(), ref_probs, rtol=1e-5, atol=1e-7)


def test_recorder_gets_weights_with_the_sink_column():
    cfg = small_config(window=4, layers=2)
    model = random_model(cfg, seed=3)
    tokens = torch.randint(0, cfg.vocab_size, (1, 7))
    rec = Recorder("attention")
    with torch.no_grad():
        logits = model(tokens, recorder=rec)
        torch.testing.assert_close(logits, model(tokens))  # recording changes nothing
    w0, w1 = rec["attention"]
    H = cfg.num_attention_heads
    assert w0.shape == (1, H, 7, 8) and w0.dtype == torch.float32
    torch.testing.assert_close(w0.sum(-1), torch.ones(1, H, 7))
    assert (w0[0, :, 6, :3] == 0).all() and (w0[0, :, 6, 3:7] > 0).all()  # window 4 at t=6
    assert (w1[0, :, 6, :7] > 0).all()  # full layer sees all 7 keys
    # the sink column is exp(sink) / (sum exp(scores) + exp(sink)): check layer 1, head 0, t=0,
    # where the only key is the token itself
    attn = model.block[1].attn
    with torch.no_grad():
        x = model.embedding(tokens)
        x = x + model.block[0].attn(x, torch.arange(7))
        x = x + model.block[0].mlp(x)
        qkv = attn.qkv(attn.norm(x))[0, 0].double()  # (qkv_dim,)
    D = cfg.head_dim
    q, k = qkv[:D], qkv[cfg.q_dim : cfg.q_dim + D]
    c = attn.rope.concentration  # at position 0 RoPE only scales by the concentration
    score = float(q @ k) * c * c / math.sqrt(D)
    sink = float(attn.sinks[0].detach())
    expected = math.exp(sink) / (math.exp(score) + math.exp(sink))
    assert abs(float(w1[0, 0, 0, -1]) - expected) < 1e-5


def test_no_recorder_no_weights_kept_and_unwanted_names_skip():
    cfg = small_config(layers=2)
    model = random_model(cfg)
    rec = Recorder("router_logits")
    with torch.no_grad():
        model(torch.tensor([1, 2, 3]), recorder=rec)
    with pytest.raises(KeyError, match="not asked for"):
        rec["attention"]


def test_return_weights_is_deprecated_but_works():
    cfg = small_config(layers=2)
    block = AttentionBlock(cfg, 0)
    x = torch.randn(1, 5, cfg.hidden_size)
    with pytest.warns(DeprecationWarning, match="Recorder"):
        update, w = block(x, torch.arange(5), return_weights=True)
    torch.testing.assert_close(update, block(x, torch.arange(5)))
    assert w.shape == (1, cfg.num_attention_heads, 5, 5)
    with pytest.warns(DeprecationWarning, match="attention_weights"):
        sdpa_with_sinks(
            torch.randn(1, 2, 1, 1, 4),
            torch.randn(1, 2, 1, 4),
            torch.randn(1, 2, 1, 4),
            torch.zeros(1),
            torch.ones(2, 2, dtype=torch.bool),
            0.5,
            return_weights=True,
        )


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("rows", [1, 4, 7])
def test_queries_in_blocks_match_a_float64_loop(monkeypatch, window, rows):
    # SCORES_BYTES sized so that `rows` queries fit per block: the blocked path (taken when no
    # weights are kept) gives the float64 reference's output, and runs ceil(T / rows) blocks
    from gptoss_edu.model import attention

    torch.manual_seed(1)
    T, Hkv, G, D = 11, 2, 2, 8
    cfg = small_config(window=window or 4, layers=2).replace(
        num_attention_heads=Hkv * G, num_key_value_heads=Hkv, head_dim=D, hidden_size=32
    )
    layer = 0 if window else 1  # layer 0 slides (window 3 here), layer 1 is full
    block = AttentionBlock(cfg, layer).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(1, T, cfg.hidden_size)
    pos = torch.arange(T)
    calls = []  # (queries, keys) of each block
    real = attention.attention_weights
    monkeypatch.setattr(
        attention,
        "attention_weights",
        lambda q, k, *a: calls.append((q.shape[1], k.shape[1])) or real(q, k, *a),
    )
    monkeypatch.setattr(attention, "SCORES_BYTES", 4 * Hkv * G * (T + 1) * rows)
    with torch.no_grad():
        got = block(x, pos)
        q, k, v = block.project(x, pos)
        ref, _ = reference_attention(
            q[0].reshape(T, Hkv * G, D),
            k[0],
            v[0],
            block.sinks,
            block.sliding_window,
            block.sm_scale,
        )
        want = block.out(ref.reshape(1, T, -1).float())
    assert [c[0] for c in calls] == [min(rows, T - t) for t in range(0, T, rows)]
    for t, (n, keys) in zip(range(0, T, rows), calls):
        # a sliding block reads only the keys its queries may see: positions t - W + 1 .. t + n - 1
        assert keys == (T if window is None else min(t + n, T) - max(0, t - window + 1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_long_prompt_blocks_equal_one_pass_through_the_whole_model(monkeypatch):
    from gptoss_edu.model import attention

    cfg = small_config(window=4, layers=3)
    model = random_model(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (2, 30))
    queries = []  # queries per attention_weights call
    real = attention.attention_weights
    monkeypatch.setattr(
        attention, "attention_weights", lambda q, *a: queries.append(q.shape[1]) or real(q, *a)
    )
    with torch.no_grad():
        one_pass = model(tokens)
        assert queries == [30] * 3  # one block per layer
        monkeypatch.setattr(attention, "SCORES_BYTES", 4 * 2 * cfg.num_attention_heads * 31 * 4)
        queries.clear()
        blocks = model(tokens)  # 4 queries per block
        assert queries == ([4] * 7 + [2]) * 3  # 8 blocks in each of the 3 layers
        cache = model.new_cache()
        cached = torch.cat(
            [model(tokens[:, :17], cache=cache), model(tokens[:, 17:], cache=cache)], 1
        )
    torch.testing.assert_close(blocks, one_pass, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached, one_pass, rtol=1e-5, atol=1e-5)
