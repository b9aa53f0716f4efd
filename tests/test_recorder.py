"""The Recorder (gptoss_edu/model/recorder.py, chapters 6, 7, 13): one way to look inside.

Checked against forward hooks on the model's own modules (an independent view of the same
forward pass) and against hand-built values; the deprecated ways still work and warn.
"""

import pytest
import torch
from configs import micro_config

import gptoss_edu as ge
from gptoss_edu.model import Recorder

MICRO = micro_config(vocab_size=64)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ge.GptOss(MICRO).eval()


def test_recorder_keeps_what_it_is_asked_for():
    rec = Recorder("routing")
    assert rec.wants("routing") and not rec.wants("attention")
    rec.record("attention", 0, torch.ones(1))  # not asked for: ignored
    x = torch.ones(2, requires_grad=True)
    rec.record("routing", 1, (x * 2, x * 3))
    rec.record("routing", 0, (x, x))
    got = rec["routing"]
    assert len(got) == 2 and torch.equal(got[0][0], torch.ones(2))  # layer order, not call order
    assert not got[1][0].requires_grad  # detached by default
    with pytest.raises(KeyError, match="not asked for"):
        rec["attention"]
    with pytest.raises(ValueError, match="cannot record 'hidden'.*attention"):
        Recorder("hidden")
    rec.clear()
    assert rec["routing"] == []


def test_model_records_the_router_it_runs(model):
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2]])  # (1, 7)
    hooked = []
    hooks = [
        b.mlp.gate.register_forward_hook(lambda m, i, o: hooked.append(o)) for b in model.block
    ]
    rec = Recorder("attention", "router_logits", "routing")
    with torch.no_grad():
        logits = model(tokens, recorder=rec)
        plain = model(tokens)
    for h in hooks:
        h.remove()
    assert torch.equal(logits, plain)  # recording changes nothing
    assert len(rec["router_logits"]) == 2
    for layer in range(2):
        torch.testing.assert_close(rec["router_logits"][layer], hooked[layer])
        ids, w = rec["routing"][layer]
        assert ids.shape == (7, 2) and w.shape == (7, 2) and w.dtype == torch.float32
        # the chosen experts hold the two largest logits, best first
        r = hooked[layer]
        chosen = r.gather(1, ids)
        assert (chosen[:, 0] >= chosen[:, 1]).all()
        assert torch.allclose(chosen[:, 1], r.topk(2).values[:, 1])
        torch.testing.assert_close(w, torch.softmax(chosen, -1))
        a = rec["attention"][layer]
        assert a.shape == (1, 2, 7, 8)  # (B, heads, T, S + 1): the sink is the last column
        torch.testing.assert_close(a.sum(-1), torch.ones(1, 2, 7))
        assert (a[0, :, 0, 1:7] == 0).all()  # causal: the first query sees only itself


def test_recorder_can_keep_the_graph_for_a_loss(model):
    rec = Recorder("router_logits", detach=False)
    model(torch.tensor([1, 2, 3]), recorder=rec)
    rec["router_logits"][0].sum().backward()
    assert model.block[0].mlp.gate.weight.grad is not None


def test_deprecated_ways_still_work_and_warn(model):
    x = torch.randn(5, MICRO.hidden_size)
    mlp = model.block[0].mlp
    rec = Recorder("router_logits", "routing")
    with torch.no_grad():
        want = mlp(x, recorder=rec)
        with pytest.warns(DeprecationWarning, match="Recorder"):
            got, (logits, weights, ids) = mlp(x, return_routing=True)
    assert torch.equal(got, want) and torch.equal(ids, rec["routing"][0][0])
    from gptoss_edu import train
    from gptoss_edu.model import moe

    with pytest.warns(DeprecationWarning, match="Recorder"):
        tap = train.RouterTap(model)
    with tap, torch.no_grad():
        model(torch.tensor([1, 2]))
    assert len(tap.logits) == 2
    with pytest.warns(DeprecationWarning, match="moved"):
        assert moe.MXFP4Weight is ge.mxfp4.MXFP4Weight


class CountingTokenizer:
    """One token per character (ids 0-63); remembers how many characters it was asked to encode."""

    def __init__(self):
        self.seen = 0

    def encode_ordinary(self, text):
        self.seen = max(self.seen, len(text))
        return [ord(c) % 64 for c in text]

    def decode_tokens_bytes(self, ids):
        return [bytes([65 + i % 26]) for i in ids]


def test_compute_routing_is_bounded(model):
    from gptoss_edu.viz import explorer

    tok = CountingTokenizer()
    huge = "x" * 40_000  # 40k characters: every layer's routing of 40k tokens is not computed
    with pytest.raises(ValueError, match=r"longer than 1024 tokens .*pass max_tokens=N"):
        explorer.compute_routing(model, tok, huge)
    assert tok.seen <= explorer.MAX_TOKENS * explorer.MAX_CHARS_PER_TOKEN  # cut before encoding
    tok.seen = 0
    data = explorer.compute_routing(model, tok, huge, max_tokens=16)
    assert len(data.tokens) == 16 and data.ids.shape == (2, 16, 2)
    assert tok.seen <= 16 * explorer.MAX_CHARS_PER_TOKEN
    with pytest.raises(ValueError, match=r"max_tokens must be an int in \[1, 1024\]"):
        explorer.compute_routing(model, tok, "abc", max_tokens=5000)
    with pytest.raises(ValueError, match="at most 1024"):
        explorer.trace(model, torch.zeros(1025, dtype=torch.long))
    with pytest.raises(TypeError, match="integer ids"):
        explorer.trace(model, torch.tensor([1.5, 2.0]))
