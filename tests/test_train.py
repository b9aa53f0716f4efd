"""Training (gptoss_edu/train.py, chapter 14): losses against hand-computed values, the
schedule, batches, n-gram baselines against a brute-force count, determinism and resuming."""

import json
import math
from collections import Counter

import pytest
import torch
from configs import micro_config

import gptoss_edu as ge
from gptoss_edu import train as tr
from gptoss_edu.tokenizer.o200k import harmony_special_tokens


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: a second thread only adds synchronisation (and on a busy machine, waiting)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# a model small enough that a training step takes milliseconds
MICRO = micro_config(vocab_size=64)


def test_harmony_specials_fit_below_vocab_size():
    specials = tr.harmony_specials_for(4096)
    o200k = harmony_special_tokens()
    # o200k_harmony's names for ids 199998..200018 (22 names: <|endofprompt|> and
    # <|reserved_200018|> share 200018), same order, on the 21 top ids of 4096
    assert len(specials) == 22
    assert sorted(set(specials.values())) == list(range(4075, 4096))
    assert specials["<|endoftext|>"] == 4096 - 21 + (o200k["<|endoftext|>"] - 199998)
    for name, i in specials.items():
        assert i - 4075 == o200k[name] - 199998


def test_lr_schedule_warmup_then_cosine():
    cfg = tr.TrainConfig(steps=110, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert cfg.lr_at(0) == pytest.approx(1e-4)  # 1e-3 * 1/10
    assert cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(10) == pytest.approx(1e-3)  # cosine starts at the peak
    assert cfg.lr_at(60) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way: the mean
    assert cfg.lr_at(110) == pytest.approx(1e-4)
    assert cfg.lr_at(500) == pytest.approx(1e-4)  # stays at the floor


def test_load_balancing_loss_hand_values():
    # uniform logits: f_e = P_e = 1/E, so E * sum f P = 1 (ties: topk picks some k, f still sums to 1)
    E, k = 4, 2
    assert tr.load_balancing_loss(torch.zeros(8, E), k).item() == pytest.approx(1.0)
    # every token prefers experts 0 and 1 strongly: f = (.5, .5, 0, 0), P ~ (.5, .5, 0, 0)
    logits = torch.tensor([[20.0, 20.0, 0.0, 0.0]]).repeat(6, 1)
    assert tr.load_balancing_loss(logits, k).item() == pytest.approx(E * 0.5, rel=1e-6)
    # a general case written out in float64
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(10, E, generator=g)
    p = torch.softmax(logits.double(), -1)
    chosen = [sorted(range(E), key=lambda e: -logits[n, e].item())[:k] for n in range(10)]
    f = [sum(e in c for c in chosen) / (10 * k) for e in range(E)]
    want = E * sum(f[e] * p[:, e].mean().item() for e in range(E))
    assert tr.load_balancing_loss(logits, k).item() == pytest.approx(want, rel=1e-5)


def test_load_balancing_loss_gradient_flows_through_probabilities_only():
    logits = torch.randn(5, 4, requires_grad=True)
    tr.load_balancing_loss(logits, 2).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_router_z_loss_and_expert_load():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # logsumexp: ln 2 and ln 4
    want = (math.log(2) ** 2 + math.log(4) ** 2) / 2
    assert tr.router_z_loss(logits).item() == pytest.approx(want, rel=1e-6)
    load = tr.expert_load(torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]]), 2)
    torch.testing.assert_close(load, torch.tensor([1 / 4, 2 / 4, 1 / 4]))


def test_get_batch_is_shifted_and_seeded():
    data = torch.arange(1000)
    x, y = tr.get_batch(data, 4, 16, seed=3, step=7)
    assert x.shape == y.shape == (4, 16)
    torch.testing.assert_close(y, x + 1)  # y is the next token of x
    x2, _ = tr.get_batch(data, 4, 16, seed=3, step=7)
    x3, _ = tr.get_batch(data, 4, 16, seed=3, step=8)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    with pytest.raises(ValueError, match="seq_len"):
        tr.get_batch(torch.arange(10), 2, 16, 0, 0)


def test_eval_windows_cover_the_data_once():
    x, y = tr.eval_windows(torch.arange(21), 5)
    assert x.shape == (4, 5)
    assert x.reshape(-1).tolist() == list(range(20))
    assert y.reshape(-1).tolist() == list(range(1, 21))


def test_ngram_baselines_against_brute_force():
    g = torch.Generator().manual_seed(0)
    V = 7
    train_ids = torch.randint(0, V, (300,), generator=g)
    held = torch.randint(0, V, (80,), generator=g)
    got = tr.ngram_baselines(train_ids, held, V)
    t = train_ids.tolist()
    uni = Counter(t)
    p_uni = {b: (uni[b] + 1) / (len(t) + V) for b in range(V)}
    pairs = Counter(zip(t[:-1], t[1:]))
    ctx = Counter(t[:-1])
    h = held.tolist()
    assert got["unigram"] == pytest.approx(-sum(math.log(p_uni[b]) for b in h[1:]) / 79)
    lam = got["bigram_lambda"]
    nll = -sum(
        math.log(lam * pairs[(a, b)] / ctx[a] + (1 - lam) * p_uni[b]) for a, b in zip(h, h[1:])
    )
    assert got["bigram"] == pytest.approx(nll / 79, rel=1e-9)


def test_split_heldout_whole_files_and_tails():
    docs = [(f"f{i}.py", f"text {i}\n") for i in range(20)]
    train, held = tr.split_heldout(docs)
    assert [n for n, _ in held] == ["f5.py", "f15.py"]
    assert len(train) == 18
    few = [("a.py", "line\n" * 50)]
    train, held = tr.split_heldout(few)
    assert train[0][1] + held[0][1] == few[0][1] and held[0][1].startswith("line")


def test_train_tokenizer_has_exact_vocab_and_specials():
    text = ("def f(x):\n    return x + 1\n" * 20) + "".join(chr(c) for c in range(32, 127))
    tok = tr.train_tokenizer([("a.py", text)], vocab_size=300)
    assert tok.n_vocab == 300
    assert tok.special_tokens["<|endoftext|>"] == 300 - 21 + 1
    ids = tok.encode_ordinary("def f(x):\n")
    assert tok.decode(ids) == "def f(x):\n" and max(ids) < 279


def _data(n=3000):
    g = torch.Generator().manual_seed(0)
    # a learnable stream: a repeating pattern with a little noise
    base = torch.arange(n) % 13
    noise = torch.randint(0, 64, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.1, noise, base)


CFG = tr.TrainConfig(
    steps=12, batch_size=4, seq_len=16, lr=1e-2, min_lr=1e-3, warmup_steps=2, eval_every=6
)


def test_training_lowers_the_loss_and_is_deterministic():
    data = _data()
    torch.manual_seed(0)
    m1 = ge.GptOss(MICRO)
    before, _ = tr.evaluate(m1, data[:500], 16)
    h1 = tr.train(m1, data, data[:500], CFG, progress=False)
    torch.manual_seed(0)
    m2 = ge.GptOss(MICRO)
    h2 = tr.train(m2, data, data[:500], CFG, progress=False)
    assert h1.eval_loss[-1] < before - 0.5
    assert h1.loss == h2.loss  # bit for bit
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert h1.eval_step == [6, 12]
    load = torch.tensor(h1.expert_load[-1])
    assert load.shape == (2, 4)
    torch.testing.assert_close(load.sum(-1), torch.ones(2))


def test_resume_matches_an_uninterrupted_run(tmp_path):
    data = _data()
    torch.manual_seed(0)
    ref = ge.GptOss(MICRO)
    h_ref = tr.train(ref, data, None, CFG, progress=False)
    torch.manual_seed(0)
    m = ge.GptOss(MICRO)
    tr.train(m, data, None, CFG, state_dir=tmp_path, save_every=5, progress=False, stop_after=5)
    assert json.loads((tmp_path / "state.json").read_text())["step"] == 5
    torch.manual_seed(123)
    m2 = ge.GptOss(MICRO)  # different initial weights: all must come from the saved state
    h = tr.train(m2, data, None, CFG, state_dir=tmp_path, resume=True, progress=False)
    assert h.step == list(range(12))
    assert h.loss == pytest.approx(h_ref.loss, rel=1e-5, abs=1e-6)
    for a, b in zip(ref.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compute_loss_uses_the_models_own_forward():
    torch.manual_seed(0)
    model = ge.GptOss(MICRO)
    x = torch.randint(0, 64, (2, 8))
    y = torch.randint(0, 64, (2, 8))
    total, ce, aux, z = tr.compute_loss(model, x, y, CFG)
    want_ce = torch.nn.functional.cross_entropy(model(x).reshape(-1, 64), y.reshape(-1))
    torch.testing.assert_close(ce, want_ce)
    torch.testing.assert_close(total, ce + CFG.aux_loss_coef * aux + CFG.z_loss_coef * z)
    assert 0 < aux.item() < MICRO.num_experts  # E * sum f P lies in (0, E]
    assert z.item() > 0


def test_cli_trains_and_saves_a_loadable_checkpoint(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    body = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(300))
    text.write_text(body + "".join(chr(c) for c in range(32, 127)) + "\n")
    out = tmp_path / "out"
    argv = [
        "--out", str(out), "--text", str(text), "--vocab-size", "320", "--layers", "2",
        "--experts", "4", "--hidden-size", "32", "--intermediate-size", "32",
        "--steps", "6", "--batch-size", "2", "--seq-len", "16", "--warmup-steps", "2",
        "--eval-every", "3", "--eval-batches", "1", "--no-progress", "--threads", "1",
    ]  # fmt: skip
    assert tr.cli(argv) == 0
    report = json.loads((out / "training.json").read_text())
    assert report["command"].startswith("python -m gptoss_edu train --out")
    assert {"unigram", "bigram"} <= set(report["baselines"])
    model = ge.load_checkpoint(out)
    assert model.config.vocab_size == 320 and model.config.num_experts == 4
    from gptoss_edu.tokenizer.bpe import BPETokenizer

    tok = BPETokenizer.load(out / "tokenizer.tiktoken")
    assert tok.n_vocab == 320
    assert (out / "loss.png").stat().st_size > 1000
    # the training state came along into the new OUT (one directory write), nothing left behind
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "out"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # a second run into the same directory is refused without --overwrite
    assert tr.cli(argv) == 2
    assert "overwrite" in capsys.readouterr().err
    # and resumes from the saved state
    assert tr.cli([*argv, "--steps", "8", "--resume"]) == 0  # the last --steps wins
    assert json.loads((out / "state" / "state.json").read_text())["step"] == 8


def test_state_killed_between_its_two_renames_is_recovered(tmp_path):
    import os

    data = _data()
    m = ge.GptOss(MICRO)
    tr.train(
        m, data, None, CFG, state_dir=tmp_path / "s", save_every=5, progress=False, stop_after=5
    )
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    (tmp_path / "s").rename(tmp_path / f".s.old-{dead}-00ff")  # only the backup is left
    m2 = ge.GptOss(MICRO)
    step, _ = tr.load_state(tmp_path / "s", m2, tr.make_optimizer(m2, CFG))
    assert step == 5
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)
