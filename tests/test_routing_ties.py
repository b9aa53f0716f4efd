"""One routing rule everywhere (chapter 6): the k largest router logits, equal logits to the
lower expert id first, then a softmax over the k chosen.

Hand-checkable ties: logits [1, 2, 2, 2, 0, 2, 1, 2] with k = 2 have five experts tied at 2
(ids 1, 2, 3, 5, 7); the rule picks [1, 2] with weights [1/2, 1/2]. The same on the dense MLP
block, the packed one, every kernel back end that runs here, and training's load statistics.
"""

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu import kernels
from gptoss_edu.model import Recorder, route
from gptoss_edu.train import expert_load, load_balancing_loss

# (logits, k, expected experts): worked by hand from the rule
CASES = [
    ([1, 2, 2, 2, 0, 2, 1, 2], 2, [1, 2]),
    ([1, 2, 2, 2, 0, 2, 1, 2], 4, [1, 2, 3, 5]),
    ([0, 0, 0, 0], 3, [0, 1, 2]),
    ([5, 1, 5, 1], 2, [0, 2]),
    ([1, 3, 1, 3, 2], 3, [1, 3, 4]),
    ([-1, -1, 7, -1], 2, [2, 0]),
]


def _logits(values):
    return torch.tensor([values], dtype=torch.float32)  # (1, E)


@pytest.mark.parametrize("values,k,want", CASES)
def test_dense_rule(values, k, want):
    ids, weights = route(_logits(values), k)
    assert ids[0].tolist() == want
    chosen = torch.tensor([float(values[e]) for e in want])
    torch.testing.assert_close(weights[0], torch.softmax(chosen, 0))


def _kernel_backends():
    out = []
    for name in ("torch", "numba", "numba_cuda", "cuda"):
        reason = kernels.available_backends()[name]
        gpu = name in ("numba_cuda", "cuda")
        skip = reason or (gpu and not torch.cuda.is_available())
        marks = pytest.mark.skip(reason=reason or "needs a GPU") if skip else ()
        out.append(pytest.param(name, marks=marks))
    return out


@pytest.mark.parametrize("backend", _kernel_backends())
@pytest.mark.parametrize("values,k,want", CASES)
def test_kernel_backends_follow_the_rule(backend, values, k, want):
    device = "cuda" if backend in ("numba_cuda", "cuda") else "cpu"
    r = kernels.route(_logits(values).to(device), k, backend=backend)
    assert r.experts[0].tolist() == want
    chosen = torch.tensor([float(values[e]) for e in want])
    torch.testing.assert_close(r.weights[0].cpu(), torch.softmax(chosen, 0))


def _block_with_fixed_logits(values, experts):
    cfg = ge.ModelConfig.tiny().replace(
        num_hidden_layers=1,
        num_experts=len(values),
        experts_per_token=2,
        hidden_size=32,
        intermediate_size=32,
        head_dim=8,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=16,
    )
    torch.manual_seed(0)
    model = ge.GptOss(cfg, experts=experts, backend="torch").eval()
    gate = model.block[0].mlp.gate
    with torch.no_grad():  # every token gets exactly these router logits
        gate.weight.zero_()
        gate.bias.copy_(torch.tensor(values, dtype=torch.float32))
    return model


@pytest.mark.parametrize("experts", ["dequantized", "mxfp4"])
def test_mlp_block_routes_ties_to_lower_ids(experts):
    model = _block_with_fixed_logits([1, 2, 2, 2, 0, 2, 1, 2], experts)
    rec = Recorder("routing")
    with torch.no_grad():
        model(torch.tensor([1, 2, 3]), recorder=rec)
    ids, weights = rec["routing"][0]
    assert ids.tolist() == [[1, 2]] * 3
    torch.testing.assert_close(weights, torch.full((3, 2), 0.5))


def test_training_counts_the_same_experts():
    logits = _logits([1, 2, 2, 2, 0, 2, 1, 2]).repeat(4, 1)  # (4 tokens, 8 experts)
    load = expert_load(logits, 2)
    assert load.tolist() == [0, 0.5, 0.5, 0, 0, 0, 0, 0]
    # aux loss = E * sum_e f_e * P_e with f = load and P = softmax of the row (same for all)
    p = torch.softmax(logits[0].double(), 0)
    want = 8 * (0.5 * p[1] + 0.5 * p[2])
    torch.testing.assert_close(load_balancing_loss(logits, 2).double(), want)
