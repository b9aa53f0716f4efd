"""The SFT loss mask and loss of chapter 15 (gptoss_edu.posttrain.sft).

Expected masks are written by hand, as text spans of the rendered conversation marked
"generated" or "prompt", and tokenized here; they are not produced by render_with_mask.
"""

import dataclasses
import json

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu import harmony
from gptoss_edu.posttrain.data import CALCULATOR
from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_loss, sft_step
from gptoss_edu.tiny import load_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


def _expected(tok, spans):
    """ids and mask from [(text, generated?)], each span split at format tokens."""
    ids, mask = [], []
    for text, gen in spans:
        piece = tok.encode(text, allowed_special="all")
        ids += piece
        mask += [int(gen)] * len(piece)
    return ids, mask


def test_mask_of_a_reasoning_turn(tok):
    sys_msg = harmony.system(reasoning_effort="low")
    conv = [
        sys_msg,
        harmony.user("What is 2 + 3?"),
        harmony.assistant("2 + 3 = 5.", channel="analysis"),
        harmony.assistant("5", channel="final"),
    ]
    spans = [
        (harmony.render([sys_msg], for_completion=False), 0),
        ("<|start|>user<|message|>What is 2 + 3?<|end|>", 0),
        ("<|start|>assistant", 0),  # the prompt's suffix: ge.chat writes it, not the model
        ("<|channel|>analysis<|message|>2 + 3 = 5.<|end|>", 1),
        ("<|start|>assistant<|channel|>final<|message|>5<|return|>", 1),
    ]
    assert render_with_mask(conv, tok) == _expected(tok, spans)


def test_mask_of_a_tool_call_turn(tok):
    conv = [
        harmony.system(reasoning_effort="high"),
        harmony.developer(tools=[CALCULATOR]),
        harmony.user("What is 123 * 456?"),
        harmony.assistant("Use the calculator.", channel="analysis"),
        harmony.tool_call("calculator", {"expression": "123 * 456"}),
        harmony.tool_result("calculator", {"result": 56088}),
        harmony.assistant("56088", channel="final"),
    ]
    prompt = harmony.render(conv[:3], for_completion=False)
    args = json.dumps({"expression": "123 * 456"})
    spans = [
        (prompt, 0),
        ("<|start|>assistant", 0),
        ("<|channel|>analysis<|message|>Use the calculator.<|end|>", 1),
        ("<|start|>assistant", 1),
        (" to=functions.calculator<|channel|>commentary <|constrain|>json<|message|>", 1),
        (args + "<|call|>", 1),
        (
            '<|start|>functions.calculator to=assistant<|channel|>commentary<|message|>{"result": '
            "56088}<|end|>",
            0,
        ),  # fmt: skip
        ("<|start|>assistant", 0),  # after the tool's reply the caller appends it again
        ("<|channel|>final<|message|>56088<|return|>", 1),
    ]
    ids, mask = render_with_mask(conv, tok)
    assert (ids, mask) == _expected(tok, spans)
    # the ones are exactly the generated text, read back
    generated = tok.decode([i for i, m in zip(ids, mask) if m])
    assert generated == (
        "<|channel|>analysis<|message|>Use the calculator.<|end|><|start|>assistant to=functions."
        f"calculator<|channel|>commentary <|constrain|>json<|message|>{args}<|call|>"
        "<|channel|>final<|message|>56088<|return|>"
    )


def test_prompt_only_conversation_has_no_ones(tok):
    ids, mask = render_with_mask([harmony.system(), harmony.user("hi")], tok)
    assert len(ids) == len(mask) and set(mask) == {0}
    with pytest.raises(TypeError, match=r"messages\[1\] is a str"):
        render_with_mask([harmony.system(), "hi"], tok)


def _small_model():
    torch.manual_seed(0)  # the package's model, cut to one layer of 4 experts: fast on a CPU
    cfg = dataclasses.replace(ge.ModelConfig.tiny(), num_hidden_layers=1, num_experts=4)
    return ge.GptOss(cfg)


def _batch(tok):
    convs = [
        [harmony.system("low"), harmony.user("What is 2 + 3?"),
         harmony.assistant("Answer directly.", "analysis"), harmony.assistant("5")],
        [harmony.system("high"), harmony.user("What is 20 - 3?"),
         harmony.assistant("20 - 3 = 17.", "analysis"), harmony.assistant("17")],
    ]  # fmt: skip
    return make_batch([render_with_mask(c, tok) for c in convs])


def test_batch_shifts_and_pads(tok):
    conv = [harmony.user("hi"), harmony.assistant("yo")]
    ids, mask = render_with_mask(conv, tok)
    x, y, w = make_batch([(ids, mask), (ids[:5], mask[:5])], pad_id=7)
    assert x[0].tolist() == ids[:-1] and y[0].tolist() == ids[1:]
    assert w[0].tolist() == [float(m) for m in mask[1:]]
    assert x[1, 4:].eq(7).all() and w[1, 4:].eq(0).all()
    with pytest.raises(ValueError, match="example 0 has 3 ids and 2 mask values"):
        make_batch([([1, 2, 3], [0, 1])])


def test_loss_is_cross_entropy_on_masked_targets_only(tok):
    model = _small_model().eval()
    x, y, w = _batch(tok)
    with torch.no_grad():
        loss = sft_loss(model, x, y, w)
        # float64 reference, written out: -log p(target) averaged over w == 1
        logp = torch.log_softmax(model(x).double(), dim=-1)
        terms = [
            -logp[b, t, y[b, t]] for b in range(x.shape[0]) for t in range(x.shape[1]) if w[b, t]
        ]
        assert float(loss) == pytest.approx(float(sum(terms) / len(terms)), rel=1e-5)
        prompt_pos = (w[0] == 0).nonzero()[3].item()  # a target inside the system message
        gen_pos = (w[0] == 1).nonzero()[2].item()
        y2 = y.clone()
        y2[0, prompt_pos] = (y2[0, prompt_pos] + 1) % 4096
        assert torch.equal(sft_loss(model, x, y2, w), loss)  # prompt targets are ignored
        y3 = y.clone()
        y3[0, gen_pos] = (y3[0, gen_pos] + 1) % 4096
        assert not torch.equal(sft_loss(model, x, y3, w), loss)  # generated targets count
    with pytest.raises(ValueError, match="weights are all 0"):
        sft_loss(model, x, y, torch.zeros_like(w))
    with pytest.raises(ValueError, match="same shape"):
        sft_loss(model, x, y[:, :-1], w)


def test_sft_step_lowers_the_loss(tok):
    model = _small_model()
    x, y, w = _batch(tok)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = [sft_step(model, opt, x, y, w) for _ in range(4)]
    assert losses[-1] < losses[0] - 0.5, losses
