"""A cheaper SFT step that computes the same thing (gptoss_edu.posttrain.sft, chapter 15).

Two changes to a step must not change its loss or gradient beyond float round-off: the model
computes logits only at the trained positions (GptOss's `logits_at`), and a batch runs as parts
of rows of similar length (split_by_length). The references here are written out by hand: the
logits of every position, and the masked mean cross-entropy of one padded batch.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import gptoss_edu as ge
from gptoss_edu.posttrain.sft import sft_loss, sft_step, sft_step_parts, split_by_length


def _model(layers=2):
    torch.manual_seed(0)  # a sliding layer and a full one, 4 experts: fast on a CPU
    cfg = dataclasses.replace(ge.ModelConfig.tiny(), num_hidden_layers=layers, num_experts=4)
    return ge.GptOss(cfg)


def _batch(seed=0, B=5, T=48):
    """Random ids; each row trains on a random span and then has a random tail of untrained
    positions (prompt or padding), some rows nothing at all."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4096, (B, T), generator=g)
    y = torch.randint(0, 4096, (B, T), generator=g)
    w = torch.zeros(B, T)
    ends = [40, 0, 9, 48, 23][:B]
    for b, end in enumerate(ends):
        if end:
            start = int(torch.randint(0, end, (1,), generator=g))
            w[b, start:end] = (torch.rand(end - start, generator=g) < 0.7).float()
            w[b, end - 1] = 1.0  # the row's last trained target sits at end - 1
    return x, y, w


def _loss_by_hand(model, x, y, w):
    """Masked mean cross-entropy from the logits of every position (the reference)."""
    logits = model(x)  # (B, T, V)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return (ce * w.reshape(-1)).sum() / w.sum()


def test_logits_at_are_the_full_logits_at_those_positions():
    model = _model().eval()
    x, _, w = _batch(T=70)  # longer than the sliding window (32)
    keep = w > 0
    with torch.no_grad():
        full = model(x)  # (B, T, V)
        torch.testing.assert_close(model(x, logits_at=keep), full[keep], rtol=1e-5, atol=1e-5)
        one = model(x[2], logits_at=keep[2])  # unbatched (T,)
        torch.testing.assert_close(one, full[2][keep[2]], rtol=1e-5, atol=1e-5)
        # a prefill into a cache, then the last logit only
        cache = model.new_cache()
        last = torch.zeros_like(x[:1], dtype=torch.bool)
        last[0, -1] = True
        got = model(x[:1], cache=cache, logits_at=last)
        torch.testing.assert_close(got, full[:1, -1], rtol=1e-5, atol=1e-5)
        assert cache.offset == x.shape[1]
        assert model(x, logits_at=torch.zeros_like(keep)).shape == (0, 4096)


def test_logits_at_refuses_a_wrong_mask():
    model = _model(layers=1)
    x = torch.randint(0, 4096, (2, 6))
    with pytest.raises(TypeError, match="logits_at must be a bool tensor"):
        model(x, logits_at=torch.ones(2, 6))
    with pytest.raises(TypeError, match="logits_at must be a bool tensor"):
        model(x, logits_at=[[True] * 6] * 2)
    with pytest.raises(ValueError, match=r"logits_at has shape \(2, 5\) but tokens \(2, 6\)"):
        model(x, logits_at=torch.ones(2, 5, dtype=torch.bool))


def test_split_by_length_sorts_cuts_and_drops():
    x, y, w = _batch()  # row ends 40, 0, 9, 48, 23
    parts = split_by_length(x, y, w, groups=2)
    # rows with something trained, by length: 2 (9), 4 (23), 0 (40), 3 (48); two runs of two
    assert [p[0].shape for p in parts] == [(2, 23), (2, 48)]
    assert torch.equal(parts[0][0], x[[2, 4], :23]) and torch.equal(parts[1][2], w[[0, 3]])
    assert torch.equal(parts[1][1], y[[0, 3]])
    alone = split_by_length(x, y, w, groups=10)  # more groups than rows: one row each
    assert [p[0].shape for p in alone] == [(1, 9), (1, 23), (1, 40), (1, 48)]
    assert sum(float(p[2].sum()) for p in alone) == float(w.sum())  # no trained token lost
    with pytest.raises(ValueError, match="groups=0"):
        split_by_length(x, y, w, groups=0)
    with pytest.raises(ValueError, match="same shape"):
        split_by_length(x, y[:, 1:], w, groups=2)
    nothing = split_by_length(x, y, torch.zeros_like(w), groups=3)
    with pytest.raises(ValueError, match="weights are all 0"):
        sft_loss(_model(layers=1), *nothing[0])


@pytest.mark.parametrize("groups", [1, 2, 3, 5])
def test_a_step_in_parts_has_the_gradient_of_one_batch(groups):
    model = _model()
    x, y, w = _batch()
    ref = _loss_by_hand(model, x, y, w)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    # lr 0: the step leaves the weights alone and its gradient in .grad
    opt = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.0)
    loss = sft_step(model, opt, x, y, w, grad_clip=0.0, groups=groups)
    assert loss == pytest.approx(float(ref.detach()), rel=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-7, msg=n)


def test_parts_cut_too_short_would_show():
    """The check above can fail: cutting a row before its last trained target changes the loss."""
    model = _model()
    x, y, w = _batch()
    parts = split_by_length(x, y, w, groups=2)
    short = [(a[:, :-1], b[:, :-1], c[:, :-1]) for a, b, c in parts]
    opt = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.0)
    with torch.no_grad():
        ref = float(_loss_by_hand(model, x, y, w))
    assert sft_step_parts(model, opt, parts, grad_clip=0.0) == pytest.approx(ref, rel=1e-5)
    assert sft_step_parts(model, opt, short, grad_clip=0.0) != pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="no batches"):
        sft_step_parts(model, opt, [])


def test_a_model_without_logits_at_gets_all_the_logits():
    class Plain(torch.nn.Module):  # a reader's own model: forward(x) -> (B, T, V)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    model = _model().eval()
    x, y, w = _batch()
    with torch.no_grad():
        torch.testing.assert_close(sft_loss(Plain(model), x, y, w), _loss_by_hand(model, x, y, w))
        torch.testing.assert_close(sft_loss(model, x, y, w), _loss_by_hand(model, x, y, w))
