"""Chapters 6, 7 and 11's checkers accept a right answer and name each classic mistake.

The right answers here are written independently of the package (plain formulas, float64 where
it matters); the mistakes are the ones students make."""

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.exercises import ch06_moe as c6
from gptoss_edu.exercises import ch07_model as c7
from gptoss_edu.exercises import ch11_generation as c11


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The checkers run tiny models: one thread is faster and steady on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(check, fn, capsys):
    ok = check(fn)
    return ok, capsys.readouterr().out


# ---------------------------------------------------------------------------- chapter 6
def router(logits, k, order="topk_first"):
    top = torch.topk(logits, k, dim=-1)
    if order == "softmax_first":
        return torch.softmax(logits, dim=-1).gather(1, top.indices), top.indices
    if order == "raw":
        return top.values, top.indices
    return torch.softmax(top.values, dim=-1), top.indices


def test_router(capsys):
    assert run(c6.check_router, router, capsys)[0]
    # any order of the k experts is fine, as long as weights go with their experts
    flipped = lambda z, k: tuple(t.flip(-1) for t in router(z, k))
    assert run(c6.check_router, flipped, capsys)[0]
    ok, out = run(c6.check_router, lambda z, k: router(z, k, "softmax_first"), capsys)
    assert not ok and "softmax over all experts" in out
    ok, out = run(c6.check_router, lambda z, k: router(z, k, "raw"), capsys)
    assert not ok and "raw logits" in out
    lowest = lambda z, k: (torch.full((z.shape[0], k), 1 / k), torch.topk(-z, k).indices)
    ok, out = run(c6.check_router, lowest, capsys)
    assert not ok and "LOWEST" in out
    ok, out = run(c6.check_router, lambda z, k: router(z, k)[0], capsys)
    assert not ok and "tuple" in out


def swiglu64(h, plus_one=True, split=False, alpha=1.702, clamp=True):
    h = h.double()
    if split:
        g, lin = h.chunk(2, dim=-1)
    else:
        g, lin = h[..., 0::2], h[..., 1::2]
    if clamp:
        g, lin = g.clamp(max=7.0), lin.clamp(-7.0, 7.0)
    out = g * torch.sigmoid(alpha * g) * (lin + (1 if plus_one else 0))
    return out.float()


def test_swiglu(capsys):
    assert run(c6.check_swiglu, swiglu64, capsys)[0]
    ok, out = run(c6.check_swiglu, lambda h: swiglu64(h, plus_one=False), capsys)
    assert not ok and "+1" in out
    ok, out = run(c6.check_swiglu, lambda h: swiglu64(h, split=True), capsys)
    assert not ok and "interleaved" in out
    ok, out = run(c6.check_swiglu, lambda h: swiglu64(h, alpha=1.0), capsys)
    assert not ok and "1.702" in out
    ok, out = run(c6.check_swiglu, lambda h: swiglu64(h, clamp=False), capsys)
    assert not ok and "clamp" in out
    ok, out = run(c6.check_swiglu, lambda h: h, capsys)
    assert not ok and "half the width" in out


def test_expert(capsys):
    right = lambda t, w1, b1, w2, b2: swiglu64(t @ w1.T + b1) @ w2.T + b2
    assert run(c6.check_expert, right, capsys)[0]
    ok, out = run(c6.check_expert, lambda t, w1, b1, w2, b2: swiglu64(t @ w1.T) @ w2.T + b2, capsys)
    assert not ok and "b1" in out
    ok, out = run(c6.check_expert, lambda t, w1, b1, w2, b2: swiglu64(t @ w1.T + b1) @ w2.T, capsys)
    assert not ok and "b2" in out
    ok, out = run(c6.check_expert, lambda t, w1, b1, w2, b2: t @ w1 + b1, capsys)
    assert not ok and "raised" in out  # a shape error, reported in one line


def moe(t, gw, gb, w1, b1, w2, b2, k, mode="right"):
    w, ids = router(t @ gw.T + gb, k, "softmax_first" if mode == "softmax_first" else "")
    if mode == "unweighted":
        w = torch.ones_like(w)
    out = torch.zeros_like(t)
    for n in range(t.shape[0]):
        for j in range(k):
            e = int(ids[n, j])
            out[n] += w[n, j] * (swiglu64(t[n] @ w1[e].T + b1[e]) @ w2[e].T + b2[e])
    return out


def test_moe_layer(capsys):
    assert run(c6.check_moe_layer, moe, capsys)[0]
    ok, out = run(c6.check_moe_layer, lambda *a: moe(*a, mode="softmax_first"), capsys)
    assert not ok and "softmax over all experts" in out
    ok, out = run(c6.check_moe_layer, lambda *a: moe(*a, mode="unweighted"), capsys)
    assert not ok and "without their router weights" in out
    ok, out = run(c6.check_moe_layer, lambda *a: moe(*a[:-1], 1), capsys)
    assert not ok and "1 experts per token" in out


def active(c, embedding=False, all_experts=False, biases=True):
    H, I, E, k, L, V = (c.hidden_size, c.intermediate_size, c.num_experts,
                        c.experts_per_token, c.num_hidden_layers, c.vocab_size)  # fmt: skip
    qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim
    attn = H + qkv * H + qkv + c.num_attention_heads + c.num_attention_heads * c.head_dim * H + H
    expert = 3 * I * H + ((2 * I + H) if biases else 0)
    n = L * (attn + H + E * H + E + (E if all_experts else k) * expert) + V * H
    return n + (V * H if embedding else 0)


def test_active_parameters(capsys):
    assert active(ge.ModelConfig.gpt_oss_20b()) == 3_608_304_384  # OpenAI's model card
    assert run(c6.check_active_parameters, active, capsys)[0]
    ok, out = run(c6.check_active_parameters, lambda c: active(c, embedding=True), capsys)
    assert not ok and "embedding" in out
    ok, out = run(c6.check_active_parameters, lambda c: active(c, all_experts=True), capsys)
    assert not ok and "all experts" in out
    ok, out = run(c6.check_active_parameters, lambda c: active(c, biases=False), capsys)
    assert not ok and "biases" in out
    ok, out = run(c6.check_active_parameters, lambda c: float(active(c)), capsys)
    assert not ok and "int" in out


# ---------------------------------------------------------------------------- chapter 7
def test_block_forward(capsys):
    def right(block, x, pos):
        x = x + block.attn(x, pos)
        return x + block.mlp(x)

    assert run(c7.check_block_forward, right, capsys)[0]
    parallel = lambda b, x, pos: x + b.attn(x, pos) + b.mlp(x)
    ok, out = run(c7.check_block_forward, parallel, capsys)
    assert not ok and "parallel residual" in out
    ok, out = run(c7.check_block_forward, lambda b, x, pos: b.mlp(b.attn(x, pos)), capsys)
    assert not ok and "no residual" in out
    ok, out = run(c7.check_block_forward, lambda b, x, pos: x + b.attn(x, pos), capsys)
    assert not ok and "MoE is missing" in out


def forward(model, tokens, final_norm=True, offset=0):
    pos = torch.arange(tokens.shape[0]) + offset
    x = model.embedding(tokens)[None]
    for block in model.block:
        x = x + block.attn(x, pos)
        x = x + block.mlp(x)
    return model.unembedding(model.norm(x) if final_norm else x)[0]


def test_model_forward(capsys):
    assert run(c7.check_model_forward, forward, capsys)[0]
    ok, out = run(c7.check_model_forward, lambda m, t: forward(m, t, final_norm=False), capsys)
    assert not ok and "final norm" in out
    # positions shifted by one give the same logits (RoPE is relative): not a mistake to flag
    assert run(c7.check_model_forward, lambda m, t: forward(m, t, offset=1), capsys)[0]
    ok, out = run(c7.check_model_forward, lambda m, t: forward(m, t)[None], capsys)
    assert not ok and "batch axis" in out


def test_layer_types(capsys):
    right = lambda c: ["sliding_attention" if i % 2 == 0 else "full_attention"
                       for i in range(c.num_hidden_layers)]  # fmt: skip
    assert run(c7.check_layer_types, right, capsys)[0]
    swapped = lambda c: ["full_attention" if i % 2 == 0 else "sliding_attention"
                         for i in range(c.num_hidden_layers)]  # fmt: skip
    ok, out = run(c7.check_layer_types, swapped, capsys)
    assert not ok and "swapped" in out
    ok, out = run(c7.check_layer_types, lambda c: right(c)[:-1], capsys)
    assert not ok and "one per layer" in out


def total(c, tied=False, sinks=True, norms=True, expert_bias=True):
    H, I, E, L, V = (c.hidden_size, c.intermediate_size, c.num_experts, c.num_hidden_layers,
                     c.vocab_size)  # fmt: skip
    qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim
    layer = qkv * H + qkv + c.num_attention_heads * c.head_dim * H + H + E * H + E
    layer += (c.num_attention_heads if sinks else 0) + (2 * H if norms else 0)
    layer += E * (3 * I * H + ((2 * I + H) if expert_bias else 0))
    return L * layer + (1 if tied else 2) * V * H + (H if norms else 0)


def test_total_parameters(capsys):
    assert total(ge.ModelConfig.gpt_oss_20b()) == 20_914_757_184
    assert total(ge.ModelConfig.gpt_oss_120b()) == 116_829_156_672
    assert run(c7.check_total_parameters, total, capsys)[0]
    for kw, words in (
        (dict(tied=True), "untied"),
        (dict(sinks=False), "sinks"),
        (dict(norms=False), "RMSNorm"),
        (dict(expert_bias=False), "expert biases"),
    ):
        ok, out = run(c7.check_total_parameters, lambda c, kw=kw: total(c, **kw), capsys)
        assert not ok and words in out, (kw, out)


def ckpt(c, scales=True):
    matrices = c.num_hidden_layers * c.num_experts * 3 * c.intermediate_size * c.hidden_size
    per_block = 17 if scales else 16
    return matrices // 32 * per_block + 2 * (total(c) - matrices)


def test_checkpoint_bytes(capsys):
    assert ckpt(ge.ModelConfig.gpt_oss_20b()) == 13_761_264_768
    assert run(c7.check_checkpoint_bytes, ckpt, capsys)[0]
    ok, out = run(c7.check_checkpoint_bytes, lambda c: ckpt(c, scales=False), capsys)
    assert not ok and "scale" in out
    ok, out = run(c7.check_checkpoint_bytes, lambda c: 2 * total(c), capsys)
    assert not ok and "everything in bf16" in out


# ---------------------------------------------------------------------------- chapter 11
def test_temperature(capsys):
    right = lambda z, t: torch.softmax(z.double() / t, -1).float()
    assert run(c11.check_temperature, right, capsys)[0]
    ok, out = run(c11.check_temperature, lambda z, t: torch.softmax(z * t, -1), capsys)
    assert not ok and "multiplied" in out
    ok, out = run(c11.check_temperature, lambda z, t: torch.softmax(z, -1), capsys)
    assert not ok and "no effect" in out


def top_k(z, k, fill=float("-inf"), extra=0, largest=True):
    keep = torch.topk(z, min(k + extra, len(z)), largest=largest).indices
    out = torch.full_like(z, fill)
    out[keep] = z[keep]
    return out


def test_top_k(capsys):
    assert run(c11.check_top_k, top_k, capsys)[0]
    ok, out = run(c11.check_top_k, lambda z, k: top_k(z, k, fill=0.0), capsys)
    assert not ok and "-inf" in out
    ok, out = run(c11.check_top_k, lambda z, k: top_k(z, k, extra=1), capsys)
    assert not ok and "off by 1" in out
    ok, out = run(c11.check_top_k, lambda z, k: top_k(z, k, largest=False), capsys)
    assert not ok and "SMALLEST" in out
    ok, out = run(c11.check_top_k, lambda z, k: torch.topk(z, k).values, capsys)
    assert not ok and "shape" in out


def top_p(z, p, inclusive=False):
    probs = torch.softmax(z.double(), -1)
    order = torch.argsort(probs, descending=True)
    out, mass = torch.full_like(z, float("-inf")), 0.0
    for i in order.tolist():
        if (mass + float(probs[i]) > p) if inclusive else (mass >= p):
            break
        out[i] = z[i]
        mass += float(probs[i])
    return out


def test_top_p(capsys):
    assert run(c11.check_top_p, top_p, capsys)[0]
    ok, out = run(c11.check_top_p, lambda z, p: top_p(z, p, inclusive=True), capsys)
    assert not ok and "dropped the token" in out
    ok, out = run(c11.check_top_p, lambda z, p: torch.full_like(z, float("-inf")), capsys)
    assert not ok and "most likely token must always stay" in out


def greedy(model, prompt, n, stop, keep_stop=True, honour_stop=True, with_prompt=False):
    seq, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            token = int(torch.argmax(model(torch.tensor(seq))[-1]))  # no cache: independent
            if honour_stop and token in stop:
                if keep_stop:
                    out.append(token)
                break
            out.append(token)
            seq.append(token)
    return list(prompt) + out if with_prompt else out


def test_greedy_generate(capsys):
    assert run(c11.check_greedy_generate, greedy, capsys)[0]
    ok, out = run(c11.check_greedy_generate, lambda *a: greedy(*a, keep_stop=False), capsys)
    assert not ok and "stop token itself" in out
    ok, out = run(c11.check_greedy_generate, lambda *a: greedy(*a, honour_stop=False), capsys)
    assert not ok and "did not stop" in out
    ok, out = run(c11.check_greedy_generate, lambda *a: greedy(*a, with_prompt=True), capsys)
    assert not ok and "prompt" in out


def test_stream_pieces(capsys):
    def right(pieces):
        out, raw, shown = [], b"", 0
        for p in pieces:
            raw += p
            text = raw.decode("utf-8", errors="ignore")
            out.append(text[shown:])
            shown = len(text)
        return out

    assert run(c11.check_stream_pieces, right, capsys)[0]
    naive = lambda pieces: [p.decode("utf-8", errors="replace") for p in pieces]
    ok, out = run(c11.check_stream_pieces, naive, capsys)
    assert not ok and "split between tokens" in out
    whole = lambda pieces: [
        b"".join(pieces[: i + 1]).decode("utf-8", "ignore") for i in range(len(pieces))
    ]
    ok, out = run(c11.check_stream_pieces, whole, capsys)
    assert not ok and "only what is new" in out


def test_checkers_are_exported():
    for module in (c6, c7, c11):
        for name in module.__all__:
            assert getattr(ge.exercises, name) is getattr(module, name)


# --------------------------------------------------- your own gpt-oss: the capstone checkers
# The correct implementations are the package's own classes (the checkers' reference is the
# package, so these tests check the checkers); each mistake is a one-line change of them.
from gptoss_edu.exercises import my_gptoss  # noqa: E402
from gptoss_edu.model import moe as book_moe  # noqa: E402


class NoPlusOne(book_moe.MLPBlock):
    def expert(self, e, t):
        h = t @ self.mlp1_weight[e].T + self.mlp1_bias[e]
        gate, lin = h[..., 0::2].clamp(max=7), h[..., 1::2].clamp(-7, 7)
        return (gate * torch.sigmoid(1.702 * gate) * lin) @ self.mlp2_weight[e].T + self.mlp2_bias[
            e
        ]


class SoftmaxFirst(book_moe.MLPBlock):
    def forward(self, x, recorder=None):
        t = self.norm(x).reshape(-1, x.shape[-1])
        top = torch.topk(torch.softmax(self.gate(t), -1), self.experts_per_token)
        return self.mix(t, top.indices, top.values).to(x.dtype).reshape(x.shape)


class NoNorm(book_moe.MLPBlock):
    def forward(self, x, recorder=None):
        t = x.reshape(-1, x.shape[-1])
        experts, weights = book_moe.route(self.gate(t), self.experts_per_token)
        return self.mix(t, experts, weights).to(x.dtype).reshape(x.shape)


def test_my_mlp_block(capsys):
    assert run(c6.check_my_mlp_block, book_moe.MLPBlock, capsys)[0]
    for cls, words in (
        (NoPlusOne, "+1"),
        (SoftmaxFirst, "softmax over all experts"),
        (NoNorm, "RMSNorm is missing"),
    ):
        ok, out = run(c6.check_my_mlp_block, cls, capsys)
        assert not ok and words in out, out


class NoFinalNorm(ge.GptOss):
    def forward(self, tokens, cache=None, recorder=None):
        x = self.embedding(tokens[None])
        for block in self.block:
            x = block(x, torch.arange(tokens.shape[-1]))
        return self.unembedding(x)[0]


class ParallelResidual(ge.GptOss):
    def forward(self, tokens, cache=None, recorder=None):
        x, positions = self.embedding(tokens[None]), torch.arange(tokens.shape[-1])
        for block in self.block:
            x = x + block.attn(x, positions) + block.mlp(x)
        return self.unembedding(self.norm(x))[0]


def test_my_gptoss_capstone(capsys):
    ok, out = run(c7.check_my_gptoss, ge.GptOss, capsys)
    assert ok and "with and without your KV cache" in out
    ok, out = run(c7.check_my_gptoss, NoFinalNorm, capsys)
    assert not ok and "final RMSNorm" in out
    ok, out = run(c7.check_my_gptoss, ParallelResidual, capsys)
    assert not ok and "parallel residual" in out


def good_generate(model, prompt, n, temperature=0.0, stop_tokens=()):
    return ge.generate(model, prompt, n, temperature=temperature, stop_tokens=stop_tokens)


def drops_stop_token(model, prompt, n, temperature=0.0, stop_tokens=()):
    out = good_generate(model, prompt, n, temperature, stop_tokens)
    return out[:-1] if out and out[-1] in stop_tokens else out


@torch.no_grad()
def feeds_two_tokens(model, prompt, n, temperature=0.0, stop_tokens=()):
    cache, seq, out = model.new_cache(), list(prompt), []
    x = torch.tensor(seq)
    for _ in range(n):
        token = int(model(x, cache)[-1].argmax())
        out.append(token)
        if token in stop_tokens:
            break
        seq.append(token)
        x = torch.tensor(seq[-2:])  # the last token again: the cache holds it twice
    return out


def test_my_generate_capstone(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(my_gptoss, "_student_dir", tmp_path)  # no model.py: the book's model
    ok, out = run(c11.check_my_generate, good_generate, capsys)
    assert ok and "token for token" in out and "using the book's" in out
    ok, out = run(c11.check_my_generate, drops_stop_token, capsys)
    assert not ok and "stop token itself is missing" in out
    ok, out = run(c11.check_my_generate, feeds_two_tokens, capsys)
    assert not ok and "feed only the new token" in out
