"""The reasoner recipe (gptoss_edu.posttrain.reasoner, chapter 15): the digit tokenizer, the
config checks, reproducible batches, the shipped name in load_tiny, and one tiny end-to-end
`posttrain` run that writes a checkpoint the package loads back."""

import json
import subprocess
import sys

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.posttrain import data
from gptoss_edu.posttrain.reasoner import SFTConfig, batch_at, digit_tokenizer, render_record
from gptoss_edu.tiny import load_tiny_tokenizer


@pytest.fixture(scope="module")
def toks():
    base = load_tiny_tokenizer()
    return base, digit_tokenizer(base)


def test_every_digit_is_its_own_token(toks):
    base, tok = toks
    text = "What is 4827 + 12345? 0 9 1000000 x1y22"
    pieces = [tok.decode([i]) for i in tok.encode_ordinary(text)]
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == [c for c in text if c.isdigit()]  # one token per digit, in order
    assert tok.decode(tok.encode_ordinary(text)) == text
    # the base cuts numbers into runs: the reason for the change
    assert len(base.encode_ordinary("12345")) < 5 == len(tok.encode_ordinary("12345"))


def test_text_without_digits_and_specials_are_unchanged(toks):
    base, tok = toks
    text = "def f(x):\n    return x  # the same pieces as before\n"
    assert tok.encode_ordinary(text) == base.encode_ordinary(text)
    for name in ("<|start|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>"):
        assert tok.token_id(name) == base.token_id(name)
    assert tok.n_vocab == base.n_vocab


def test_digit_tokenizer_refuses_other_things():
    with pytest.raises(TypeError, match="BPETokenizer"):
        digit_tokenizer("o200k")


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"steps": 0}, "steps"),
        ({"lr": float("nan")}, "lr"),
        ({"effort_weights": (1.0, 1.0)}, "effort_weights"),
        ({"effort_weights": (0.0, 0.0, 0.0)}, "effort_weights"),
        ({"op_weights": (1.0, 1.0)}, "op_weights"),
        ({"op_weights": (0.0, 0.0, 0.0)}, "op_weights"),
        ({"op_weights": (1.0, -1.0, 2.0)}, "op_weights"),
        ({"op_weights": (1.0, float("nan"), 2.0)}, "op_weights"),
        ({"effort_weights": (1.0, float("inf"), 2.0)}, "effort_weights"),
        ({"op_weights": (1.0, 1.0, 2.0), "balance_ops": True}, "exclude"),
        ({"tool_share": 1.5}, "tool_share"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_config_is_named(kw, word):
    with pytest.raises(ValueError, match=word):
        SFTConfig(**kw)


def test_lr_schedule_warms_up_and_decays_to_the_floor():
    cfg = SFTConfig(steps=100, warmup=10, lr=1e-3, min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(1e-4) and cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(10) == pytest.approx(1e-3)
    assert cfg.lr_at(100) == pytest.approx(1e-4)
    assert all(cfg.lr_at(s) >= cfg.lr_at(s + 1) for s in range(10, 100))


def test_batches_are_a_function_of_seed_and_step(toks):
    _, tok = toks
    cfg = SFTConfig(batch_size=3, tool_share=0.5)
    train, _ = data.split_problems(0, n_train=50, n_heldout=5)
    tool = [p for p in data.heldout_problems(0, n=0, n_tool=10) if p.needs_tool]
    a, b = batch_at(7, cfg, train, tool, tok), batch_at(7, cfg, train, tool, tok)
    assert a[0] == b[0] and all(torch.equal(x, y) for x, y in zip(a[1:], b[1:]))
    c = batch_at(8, cfg, train, tool, tok)
    assert not torch.equal(a[1], c[1]) or a[0] != c[0]
    # the weights are the loss mask: never on the system prompt that opens every conversation
    x, w = a[1], a[3]
    assert w.shape == x.shape and float(w[:, :20].sum()) == 0


def test_load_tiny_names_the_model():
    with pytest.raises(ValueError, match="experts='mxfp4'"):
        ge.load_tiny("mxfp4")
    with pytest.raises(ValueError, match="reasoner"):
        ge.load_tiny("big")


@pytest.mark.slow
def test_posttrain_writes_a_checkpoint_the_package_loads(tmp_path):
    out = tmp_path / "r"
    f32 = tmp_path / "w.safetensors"
    r = _posttrain("--out", out, "--save-float", f32)
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "training.json").read_text())
    assert len(record["history"]["loss"]) == 2 and record["config"]["batch_size"] == 1
    assert (out / "TRAINING.md").read_text() == render_record(record)
    q = record["requantization"]
    assert 0.5 < q["argmax_agreement"] <= 1 and q["tokens"] > 1000
    # the checkpoint keeps its experts packed and loads with its own (digit) tokenizer
    from safetensors import safe_open

    from gptoss_edu.checkpoint import load_model_and_tokenizer

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        blocks = [k for k in f.keys() if k.endswith("mlp1_weight.blocks")]
        assert blocks and f.get_tensor(blocks[0]).dtype == torch.uint8
    model, tok = load_model_and_tokenizer(out)
    assert len(tok.encode_ordinary("4827")) == 4
    # a second run refuses to overwrite without --overwrite, and says so
    r = _posttrain("--out", out, "--save-float", f32)
    assert r.returncode == 2 and "--overwrite" in r.stderr


def _posttrain(*args):
    cmd = [sys.executable, "-m", "gptoss_edu", "posttrain", "--steps", "2", "--batch-size", "1"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_second_stage_continues_the_first(tmp_path):
    """--init starts from the previous stage's float32 weights, draws the batches that follow,
    and its record (and TRAINING.md) carries the first stage's."""
    f1 = tmp_path / "s1.safetensors"
    r = _posttrain("--out", tmp_path / "a", "--save-float", f1)
    assert r.returncode == 0, r.stderr
    r = _posttrain(
        "--out", tmp_path / "b", "--init", f1, "--facts-steps", 2, "--facts-share", 0.5,
        "--facts-mix", "facts", "--balance-ops", "--effort-weights", 0, 0, 1,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "b" / "training.json").read_text())
    assert record["history"]["steps"] == [2, 3]
    assert record["previous_stage"]["history"]["steps"] == [0, 1]
    assert len(record["facts_losses"]) == 2 and record["config"]["facts_share"] == 0.5
    assert 0 <= record["facts_accuracy"] <= 1
    md = (tmp_path / "b" / "TRAINING.md").read_text()
    assert "## Stage 1 of 2" in md and "## Stage 2 of 2" in md and md == render_record(record)
    assert record["config"]["facts_mix"] == "facts" and record["config"]["balance_ops"] is True
    assert record["config"]["effort_weights"] == [0, 0, 1]
    assert set(record["history"]["effort"]) == {"high"}  # only high-effort batches were drawn
    assert "2 steps of 32 drills" in md and "facts share 0.5 (drawn by facts)" in md
    assert "operations balanced" in md
    uneven = json.loads(json.dumps(record))
    uneven["config"].update(balance_ops=False, op_weights=[1.0, 1.0, 2.5])
    md = render_record(uneven)
    assert "operations drawn with weights + 1, - 1, * 2.5," in md and "balanced" not in md
    # a share outside [0, 1] is named before anything runs
    r = _posttrain("--out", tmp_path / "d", "--facts-share", 1.5)
    assert r.returncode == 2 and "--facts-share" in r.stderr and "1.5" in r.stderr
    r = _posttrain("--out", tmp_path / "e", "--effort-weights", 0, 0, 0)
    assert r.returncode == 2 and "effort_weights" in r.stderr and not (tmp_path / "e").exists()
    r = _posttrain("--out", tmp_path / "e", "--balance-ops", "--op-weights", 1, 1, 2)
    assert r.returncode == 2 and "balance_ops" in r.stderr and not (tmp_path / "e").exists()
    # a stage with another seed would train on another held-out split: refused
    r = _posttrain("--out", tmp_path / "c", "--init", f1, "--seed", 1)
    assert r.returncode == 2 and "seed" in r.stderr


def test_copy_examples_train_only_the_second_copy(toks):
    import random

    from gptoss_edu.posttrain.reasoner import copy_example

    _, tok = toks
    for k in range(20):
        ids, mask = copy_example(random.Random(k), tok)
        text = tok.decode(ids)
        first, second = text.split("\n")[:2]
        assert first.startswith("copy: ") and second == "again: " + first[len("copy: ") :]
        trained = tok.decode([i for i, m in zip(ids, mask) if m])
        assert trained == second + "\n" and mask == sorted(mask)  # the second line, only


def _fact_value(question: str) -> int:
    """The value of `a op b [op c] = ` by hand (an independent check of fact())."""
    words = question.split()
    assert words[-1] == "=", question
    value = int(words[0])
    for op, n in zip(words[1:-1:2], words[2:-1:2]):
        n = int(n)
        if op == "+":
            value += n
        elif op == "-":
            value -= n
        else:
            assert op == "*" and len(words) in (4, 6) and value < 10 and n < 10, question
            value *= n
    return value


def test_facts_are_right_and_are_the_working_s_own_lines():
    """Every fact is arithmetically right, and every single-digit step of the high-effort
    working (data.analysis_text) is a fact the drill can draw, in the same characters."""
    import random
    import re

    from gptoss_edu.posttrain.reasoner import fact

    rng = random.Random(0)
    drawn = set()
    for _ in range(100_000):  # each of the ~1,300 facts is drawn (a miss: p < 1e-10 each)
        question, result = fact(rng)
        assert int(result) == _fact_value(question) and int(result) >= 0, (question, result)
        drawn.add(question + result)
    step = re.compile(r"(?<![\d*] )(?<!\d)\b\d{1,2} [-+*] \d(?: [-+] \d)? = \d+")
    seen = set()
    problems, _ = data.split_problems(0, n_train=300, n_heldout=1)
    for p in problems:
        for line in data.analysis_text(p, "high").splitlines():
            if " = " in line and not line.startswith("So "):
                for piece in re.split(r"[,;:] ", line):
                    m = step.fullmatch(piece.strip())
                    if m:
                        seen.add(m.group(0))
    assert len(seen) > 150  # the working has many distinct facts, and the drill has them all
    assert seen <= drawn, sorted(seen - drawn)[:5]


def test_facts_examples_train_only_the_results(toks):
    import random

    from gptoss_edu.posttrain.reasoner import facts_example

    _, tok = toks
    for k in range(20):
        ids, mask = facts_example(random.Random(k), tok)
        lines = tok.decode(ids).splitlines()
        assert 6 <= len(lines) <= 12
        trained = tok.decode([i for i, m in zip(ids, mask) if m])
        want = "".join(line.split(" = ")[1] + "\n" for line in lines)
        assert trained == want
        for line in lines:
            q, r = line.split(" = ")
            assert int(r) == _fact_value(q + " = ")


def test_facts_share_mixes_drills_into_the_batches(toks):
    _, tok = toks
    train, _ = data.split_problems(0, n_train=50, n_heldout=5, clip_train=True)

    def drills(cfg):
        n = 0
        for step in range(12):
            _, x, _, _ = batch_at(step, cfg, train, [], tok)
            n += sum("copy" not in t and "<|start|>" not in t for t in map(tok.decode, x.tolist()))
        return n

    assert drills(SFTConfig(batch_size=8, facts_share=0.0)) == 0
    mixed = drills(SFTConfig(batch_size=8, facts_share=0.5))
    assert 30 <= mixed <= 66  # about half of 96
    with pytest.raises(ValueError, match="facts_share"):
        SFTConfig(facts_share=1.5)


class _Oracle(torch.nn.Module):
    """Predicts every next token of the facts_accuracy batch right, or (wrong=True) repeats the
    current token, which is never the result digit that follows `= `."""

    def __init__(self, tok, wrong=False):
        super().__init__()
        import random

        from gptoss_edu.posttrain.reasoner import facts_example
        from gptoss_edu.posttrain.sft import make_batch

        rng = random.Random("gptoss_edu.posttrain.facts-eval/0")
        _, self.y, _ = make_batch([facts_example(rng, tok) for _ in range(64)])
        self.wrong, self.n_vocab = wrong, tok.n_vocab

    def forward(self, x):
        target = x if self.wrong else self.y
        return torch.nn.functional.one_hot(target, self.n_vocab).float()


def test_facts_accuracy_counts_the_result_digits(toks):
    from gptoss_edu.posttrain.reasoner import facts_accuracy

    _, tok = toks
    assert facts_accuracy(_Oracle(tok), tok) == 1.0
    assert facts_accuracy(_Oracle(tok, wrong=True), tok) < 0.15  # only repeated digits, e.g. 11


def test_facts_mix_draws_shapes_or_facts_equally():
    import random
    from collections import Counter

    from gptoss_edu.posttrain.reasoner import fact

    def shape(question):
        ops = question.split()[1::2][:-1]
        return ("+", "-", "*", "*+")[["+ +", "- -", "*", "* +"].index(" ".join(ops))]

    for mix, want in (("shapes", (1, 1, 1, 1)), ("facts", (200, 200, 100, 800))):
        rng = random.Random(1)
        got = Counter(shape(fact(rng, mix)[0]) for _ in range(20000))
        total = sum(want)
        for s, w in zip(("+", "-", "*", "*+"), want):
            assert abs(got[s] / 20000 - w / total) < 0.015, (mix, s, got)
    with pytest.raises(ValueError, match="mix"):
        fact(random.Random(0), "tables")
    with pytest.raises(ValueError, match="facts_mix"):
        SFTConfig(facts_mix="tables")


def test_balance_ops_draws_each_operation_equally(toks):
    _, tok = toks
    train, _ = data.split_problems(0, n_train=2000, n_heldout=5, clip_train=True)
    train = [q for q in train if q.op != "*"] + [q for q in train if q.op == "*"][:200]

    def share_of_products(cfg):
        ops = []
        for step in range(30):
            _, x, _, _ = batch_at(step, cfg, train, [], tok)
            for text in map(tok.decode, x.tolist()):
                q = text.split("What is ")[1].split("?")[0]
                ops.append(q.split()[1])
        return ops.count("*") / len(ops)

    # 200 of 4,200 problems are products: drawn by problem, about 5%; by operation, a third
    assert share_of_products(SFTConfig(batch_size=8, tool_share=0)) < 0.12
    assert 0.22 < share_of_products(SFTConfig(batch_size=8, tool_share=0, balance_ops=True)) < 0.45
    # by weights: half the conversations are products with 1 1 2, all of them with 0 0 1
    cfg = SFTConfig(batch_size=8, tool_share=0, op_weights=(1.0, 1.0, 2.0))
    assert 0.38 < share_of_products(cfg) < 0.62
    assert share_of_products(SFTConfig(batch_size=8, tool_share=0, op_weights=(0, 0, 1))) == 1.0
