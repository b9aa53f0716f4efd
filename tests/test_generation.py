import pytest
import torch
from independent import random_config, random_original_tensors, write_original

import gptoss_edu as ge
from gptoss_edu.generation import sample_next


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = random_config(1)  # sliding_window 4 or 8, 3-4 layers, non-zero sinks
    path = write_original(tmp_path_factory.mktemp("m"), cfg, random_original_tensors(cfg, 1))
    return ge.load_checkpoint(path, dtype=torch.float32)


@pytest.mark.parametrize("prompt_len", [3, 20])  # shorter and longer than the sliding window
def test_cache_equals_recompute(model, prompt_len):
    prompt = torch.randint(0, model.config.vocab_size, (prompt_len,)).tolist()
    fast, fast_logits = ge.generate(model, prompt, 24, temperature=0, return_logits=True)
    slow, slow_logits = ge.generate(
        model, prompt, 24, temperature=0, use_cache=False, return_logits=True
    )
    assert fast == slow and len(fast) == 24
    torch.testing.assert_close(fast_logits, slow_logits, rtol=1e-4, atol=1e-4)
    # and the recompute path's logits are the plain forward pass over the whole sequence
    full = model(torch.tensor(prompt + fast[:-1]))
    torch.testing.assert_close(slow_logits, full[prompt_len - 1 :], rtol=1e-4, atol=1e-4)


def test_sliding_cache_keeps_only_the_window(model):
    cache = model.new_cache()
    model(torch.randint(0, model.config.vocab_size, (30,)), cache=cache)
    w = model.config.sliding_window
    assert cache.keys[0].shape[1] == w  # even layer: sliding
    assert cache.keys[1].shape[1] == 30  # odd layer: full
    assert cache.offset == 30


def test_sampling_cache_equals_recompute_with_seed(model):
    prompt = [1, 2, 3, 4, 5]
    kw = dict(temperature=0.9, top_p=0.9, top_k=20, seed=7)
    assert ge.generate(model, prompt, 16, **kw) == ge.generate(
        model, prompt, 16, use_cache=False, **kw
    )
    assert ge.generate(model, prompt, 16, **kw) == ge.generate(model, prompt, 16, **kw)


def test_stop_tokens_and_streaming(model):
    prompt = [5, 6, 7]
    free = ge.generate(model, prompt, 10, temperature=0)
    stop = free[3]
    first = free.index(stop)
    seen = []
    out = ge.generate(model, prompt, 10, temperature=0, stop_tokens=[stop], on_token=seen.append)
    assert out == free[: first + 1] and seen == out


def test_top_k_and_top_p_by_hand():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(200)}
    assert draws == {0, 1}
    draws = {sample_next(logits, 1.0, top_p=0.79, generator=g) for _ in range(200)}
    assert draws == {0, 1}  # 0.5 < 0.79, 0.5 + 0.3 >= 0.79
    draws = {sample_next(logits, 1.0, top_p=0.81, generator=g) for _ in range(300)}
    assert draws == {0, 1, 2}
    assert sample_next(logits, 0.0) == 0


def test_context_limit_stops_generation():
    cfg = ge.ModelConfig.tiny().replace(initial_context_length=64, rope_scaling_factor=1.0)
    m = ge.GptOss(cfg)
    out = ge.generate(m, list(range(60)), 10, temperature=0)
    assert len(out) == 4  # positions 60..63 fill the context


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="empty"):
        ge.generate(model, [], 3)
    with pytest.raises(ValueError, match="out of range"):
        ge.generate(model, [model.config.vocab_size], 3)
    with pytest.raises(ValueError, match="top_p"):
        ge.generate(model, [1], 3, top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        ge.generate(model, [1], 3, temperature=-1)


def test_temperature_must_be_finite_and_tiny_ones_are_greedy(model):
    prompt = [1, 2, 3]
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0.*nan"):
        ge.generate(model, prompt, 3, temperature=float("nan"))
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0.*inf"):
        ge.generate(model, prompt, 3, temperature=float("inf"))
    with pytest.raises(TypeError, match="temperature"):
        ge.generate(model, prompt, 3, temperature="0.7")
    with pytest.raises(ValueError, match="top_p"):
        ge.generate(model, prompt, 3, top_p=float("nan"))
    # defined, not overflowing: a vanishing temperature samples the argmax (no ties here)
    greedy = ge.generate(model, prompt, 6, temperature=0)
    assert ge.generate(model, prompt, 6, temperature=1e-40, seed=0) == greedy
    logits = torch.tensor([0.0, 3.0, 1.0])
    assert sample_next(logits, 1e-40, generator=torch.Generator().manual_seed(0)) == 1
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, float("nan"))


def test_float_token_ids_are_refused_not_truncated(model):
    with pytest.raises(TypeError, match=r"prompt_tokens\[0\] = 1.9 is not an integer token id"):
        ge.generate(model, [1.9, 2.9], 3)
    with pytest.raises(TypeError, match="dtype torch.float32"):
        ge.generate(model, torch.tensor([1.0, 2.0]), 3)
    with pytest.raises(TypeError, match=r"stop_tokens\[0\]"):
        ge.generate(model, [1, 2], 3, stop_tokens=[2.5])
    with pytest.raises(TypeError, match=r"prompt_tokens\[0\] = 'h' is not an integer token id"):
        ge.generate(model, "hello", 3)
    # integer types of every kind are fine
    import numpy as np

    want = ge.generate(model, [1, 2], 2, temperature=0)
    assert ge.generate(model, np.array([1, 2]), 2, temperature=0) == want
    assert ge.generate(model, torch.tensor([1, 2]), 2, temperature=0) == want


class AllLogits(torch.nn.Module):
    """A model whose forward has no logits_at (a reader's own, say): every position's logits."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def new_cache(self):
        return self.model.new_cache()

    def check_tokens(self, tokens):
        self.model.check_tokens(tokens)

    def forward(self, tokens, cache=None):
        return self.model(tokens, cache=cache)


@pytest.mark.parametrize("use_cache", [True, False])
def test_prefill_projects_only_the_last_position(model, use_cache):
    # the vocabulary projection of a T-token prompt is (T, V): 1.6 GB of bf16 logits for a
    # 4,096-token prompt on gpt-oss's 201,088-token vocabulary, of which one row is used
    rows = []
    hook = model.unembedding.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[:-1]))
    prompt = torch.randint(0, model.config.vocab_size, (13,)).tolist()
    try:
        ids, logits = ge.generate(
            model, prompt, 4, temperature=0, use_cache=use_cache, return_logits=True
        )
    finally:
        hook.remove()
    assert [r.numel() for r in rows] == [1, 1, 1, 1]  # one position per step, prefill included
    # a model without logits_at gets all of them, and both draw from the same last-row logits
    ids2, logits2 = ge.generate(
        AllLogits(model), prompt, 4, temperature=0, use_cache=use_cache, return_logits=True
    )
    assert ids == ids2
    torch.testing.assert_close(logits, logits2, rtol=1e-5, atol=1e-5)
    full = model(torch.tensor(prompt + ids[:-1]))[len(prompt) - 1 :]  # plain forward, (4, V)
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-4)
