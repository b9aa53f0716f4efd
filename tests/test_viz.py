"""The expert explorer and sink viewer (gptoss_edu/viz, chapter 13), without a browser: routing
against hooks on the model's own router, sink shares against hand-computed values, and the
widgets driven by setting values and clicking buttons in Python."""

import math

import matplotlib
import pytest
import torch
from configs import micro_config

import gptoss_edu as ge
from gptoss_edu import viz
from gptoss_edu.tiny import load_tiny_tokenizer
from gptoss_edu.viz import explorer, sinks

pytest.importorskip("ipywidgets")
matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: a second thread only adds synchronisation (and on a busy machine, waiting)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


MICRO = micro_config()  # vocab 4096, the shipped tokenizer's size


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = ge.GptOss(MICRO).eval()
    with torch.no_grad():  # spread the router logits so that top-k has no near-ties
        for block in m.block:
            block.mlp.gate.weight.mul_(20)
    return m


def reference_routing(model, tokens):
    """Router logits captured by hooks on each block's gate during the model's plain forward."""
    logits = []
    hooks = [
        b.mlp.gate.register_forward_hook(lambda m, i, o: logits.append(o)) for b in model.block
    ]
    with torch.no_grad():
        out = model(torch.tensor(tokens)[None])
    for h in hooks:
        h.remove()
    return out[0], torch.stack([r.reshape(len(tokens), -1) for r in logits])  # (T, V), (L, T, E)


TEXT = "for i in range(10):\n    print(i)\n"


def test_trace_logits_equal_the_models(model, tok):
    tokens = tok.encode_ordinary(TEXT)
    want, _ = reference_routing(model, tokens)
    tr = viz.trace(model, tokens)
    torch.testing.assert_close(tr.logits, want)
    assert len(tr.attn_weights) == 2 and tr.attn_weights[0].shape == (2, len(tokens), len(tokens))


def test_compute_routing_matches_the_router(model, tok):
    data = viz.compute_routing(model, tok, TEXT)
    tokens = tok.encode_ordinary(TEXT)
    T, L, E, k = len(tokens), 2, 4, 2
    assert data.tokens == tokens and len(data.pieces) == T
    _, logits = reference_routing(model, tokens)
    top = torch.topk(logits, k, dim=-1)
    assert torch.equal(data.ids, top.indices)
    torch.testing.assert_close(data.weights, torch.softmax(top.values, dim=-1))
    p = torch.softmax(logits.double(), -1)
    torch.testing.assert_close(data.probs.double(), p, rtol=1e-5, atol=1e-6)
    entropy = -(p * p.log()).sum(-1)
    torch.testing.assert_close(data.entropy.double(), entropy, rtol=1e-4, atol=1e-5)
    assert (data.entropy <= math.log(E) + 1e-5).all()
    for layer in range(L):
        counts = [int((top.indices[layer] == e).sum()) for e in range(E)]
        assert data.load[layer].tolist() == pytest.approx([c / (T * k) for c in counts])
    rows = viz.detail_rows(data, 3)
    assert [r["layer"] for r in rows] == [0, 1]
    assert rows[1]["experts"] == top.indices[1, 3].tolist()
    with pytest.raises(IndexError):
        viz.detail_rows(data, T)
    with pytest.raises(ValueError, match="no tokens"):
        viz.compute_routing(model, tok, "")


def test_token_pieces_make_whitespace_visible(tok):
    pieces = explorer.token_pieces(tok, tok.encode_ordinary("a b\n\tc"))
    assert "".join(pieces) == "a·b↵→c"


def test_sink_share_hand_values(model, tok):
    # all attention scores 0 (q = k = 0): with sink logit s, a query that sees n keys puts
    # e^s / (e^s + n) on the sink; n = t + 1 on full layers, min(t + 1, window) on sliding
    # ones (layer 0 slides, window 4)
    with torch.no_grad():
        for block in model.block:
            block.attn.qkv.weight.zero_()
            block.attn.qkv.bias.zero_()
        model.block[0].attn.sinks.fill_(0.0)
        model.block[1].attn.sinks.fill_(math.log(3.0))
    tokens = tok.encode_ordinary(TEXT)[:8]
    s = sinks.sink_weights_from_tokens(model, tokens)
    assert s.shape == (2, 2, 8)
    for t in range(8):
        assert s[0, :, t].tolist() == pytest.approx([1 / (1 + min(t + 1, 4))] * 2, rel=1e-5)
        assert s[1, :, t].tolist() == pytest.approx([3 / (3 + t + 1)] * 2, rel=1e-5)


def test_expert_explorer_updates_on_prompt_and_click(model, tok):
    ex = viz.ExpertExplorer(model, tok, prompt="x = 1\n")
    assert ex.data.tokens == tok.encode_ordinary("x = 1\n")
    ex.prompt.value = TEXT  # fires the observer, as typing + Enter does in a browser
    tokens = tok.encode_ordinary(TEXT)
    T, L = len(tokens), 2
    assert ex.data.tokens == tokens
    assert len(ex.grid.children) == (T + 1) * (L + 1)
    assert len(ex.token_buttons) == T and len(ex.cells) == L
    _, logits = reference_routing(model, tokens)
    top1 = logits.argmax(-1)  # (L, T)
    for layer in range(L):
        assert [c.description for c in ex.cells[layer]] == [str(int(e)) for e in top1[layer]]
        assert ex.cells[layer][0].style.button_color == ex.colors[int(top1[layer, 0])]
    assert "token 0:" in ex.detail.value
    before = ex.detail.value
    ex.token_buttons[3].click()  # what a click in the browser triggers
    assert ex.selected == 3 and "token 3:" in ex.detail.value and ex.detail.value != before
    assert ex.token_buttons[3].button_style == "info" and ex.token_buttons[0].button_style == ""
    ex.cells[1][5].click()  # a cell selects its token too
    assert ex.selected == 5
    e = viz.detail_rows(ex.data, 5)[1]["experts"][0]
    assert f"{e}</span>" in ex.detail.value
    assert "layer 1" in ex.load_view.value and "uniform = 0.250" in ex.load_view.value
    ex.max_tokens = 4
    ex.prompt.value = TEXT + "x"
    assert len(ex.token_buttons) == 4 and "first 4 of" in ex.message.value
    ex.prompt.value = ""
    assert "type a prompt" in ex.message.value


def test_widget_css_classes_for_the_browser_test(model, tok):
    ex = viz.ExpertExplorer(model, tok)
    assert "gptoss-explorer" in ex.widget._dom_classes
    assert "gptoss-token" in ex.token_buttons[0]._dom_classes
    assert "gptoss-detail" in ex.detail._dom_classes
    assert "gptoss-cell" in ex.cells[0][0]._dom_classes


def test_sink_viewer_updates(model, tok):
    sv = viz.SinkViewer(model, tok, prompt="import os\n")
    sv.prompt.value = TEXT
    assert sv.sink.shape == (2, 2, len(tok.encode_ordinary(TEXT)))
    assert "layer 1" in sv.table.value and "layer 0:" in sv.per_token.value
    sv.layer.value = 1
    assert "layer 1:" in sv.per_token.value


def test_static_figures(model, tok):
    data = viz.compute_routing(model, tok, TEXT)
    fig = viz.plot_expert_grid(data)
    assert len(fig.axes) == 1 and len(fig.axes[0].texts) == 2 * len(data.tokens)
    fig = viz.plot_expert_load(data)
    assert len(fig.axes) == 2
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert heights == pytest.approx(data.load[1].tolist())
    fig = viz.plot_router_entropy(data)
    assert len(fig.axes[0].lines) == 3  # 2 layers + the ln E line
    fig = viz.plot_sink_weights(viz.sink_weights(model, tok, TEXT))
    assert len(fig.axes[0].texts) == 2 * 2  # one number per (layer, head)
    matplotlib.pyplot.close("all")
