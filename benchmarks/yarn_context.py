"""Why YaRN is needed: train a tiny gpt-oss with plain RoPE on short sequences, read it longer
(chapter 4 loads and plots the result).

A tiny gpt-oss (every layer full attention, plain RoPE with base 10,000, no YaRN) is trained on
Python standard-library source cut into 128-token sequences. It is then evaluated, without any
further training, on 1,024-token sequences of held-out files, with four rotations:

    plain RoPE        the trained frequencies, extrapolated to unseen angles past position 128
    interpolation     every frequency divided by s = 8 (Chen et al. 2023)
    YaRN              gptoss_edu.model.rope.yarn_inv_freq: fast pairs kept, slow pairs / 8, ramp,
                      concentration 0.1 ln 8 + 1 = 1.208 (beta scaled to 8 turns for L = 128)
    YaRN, c = 1       the same frequencies without the concentration

and, for YaRN's frequencies, a sweep of the concentration factor measuring the loss and the
entropy of the attention rows (sink column included) past position 128.

    nice python benchmarks/yarn_context.py              # ~10 minutes on one core
    nice python benchmarks/yarn_context.py --steps 20   # a quick smoke run (meaningless numbers)

Writes benchmarks/results/yarn_context.json (chapter 4 reads it) and yarn_context.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sysconfig
import time

import torch

import gptoss_edu as ge
from gptoss_edu.model.recorder import Recorder
from gptoss_edu.model.rope import yarn_inv_freq

HERE = pathlib.Path(__file__).resolve().parent
L_TRAIN, FACTOR = 128, 8
L_EVAL = L_TRAIN * FACTOR
CONCENTRATIONS = [1.0, 1.1, 1.208, 1.3, 1.45, 1.6]


def configs():
    base = ge.ModelConfig.tiny().replace(
        num_hidden_layers=2,
        rope_theta=10_000.0,
        initial_context_length=L_TRAIN,
        sliding_window=4096,  # wider than any sequence here: every layer sees the whole past
        rope_ntk_beta=8.0,  # "fast" = more than 8 turns over 128 tokens (gpt-oss: 32 over 4,096)
        rope_ntk_alpha=1.0,
    )
    return base.replace(rope_scaling_factor=1.0), base.replace(rope_scaling_factor=float(FACTOR))


def corpus(tokenizer):
    """Token ids of the standard library's top-level modules: even-indexed files train, the
    first odd-indexed files long enough give the held-out 1,024-token sequences."""
    files = sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    train, held_out = [], []
    for i, f in enumerate(files):
        ids = tokenizer.encode(f.read_text(encoding="utf-8", errors="ignore"))
        if i % 2 == 0:
            train += ids
        elif len(ids) > L_EVAL and len(held_out) < 12:
            held_out.append(torch.tensor(ids[: L_EVAL + 1]))
    return torch.tensor(train), torch.stack(held_out)


def set_rope(model, inv_freq: torch.Tensor, concentration: float) -> None:
    for block in model.block:
        block.attn.rope.inv_freq = inv_freq.float()
        block.attn.rope.concentration = concentration


@torch.no_grad()
def evaluate(model, seqs, want_entropy=False):
    """Mean loss per position (L_EVAL,) over the held-out sequences, and the mean attention
    entropy (nats) of the queries before and after position L_TRAIN."""
    losses, ent_in, ent_out = [], [], []
    for s in seqs:
        rec = Recorder("attention") if want_entropy else None
        logits = model(s[None, :-1], recorder=rec)[0]  # (T, V)
        losses.append(torch.nn.functional.cross_entropy(logits, s[1:], reduction="none"))
        if want_entropy:
            for w in rec["attention"]:  # (1, H, T, T + 1), sink column last
                h = -(w * w.clamp_min(1e-30).log()).sum(-1)[0]  # (H, T)
                ent_in.append(h[:, 16:L_TRAIN].mean())
                ent_out.append(h[:, L_TRAIN:].mean())
    out = {"loss": torch.stack(losses).mean(0)}
    if want_entropy:
        out["entropy_inside"] = float(torch.stack(ent_in).mean())
        out["entropy_outside"] = float(torch.stack(ent_out).mean())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="seeds other than 0 write *_seedN files")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    _, tokenizer = ge.load_tiny()
    train_ids, held_out = corpus(tokenizer)
    cfg_train, cfg_eval = configs()
    model = ge.GptOss(cfg_train)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)
    model.train()
    for step in range(args.steps):
        lr = 3e-3 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * (1 - step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train_ids) - L_TRAIN - 1, (args.batch,), generator=g)
        batch = torch.stack([train_ids[s : s + L_TRAIN + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(
                f"step {step:>4}  train loss {loss.item():.3f}  ({time.perf_counter() - t_start:.0f} s)",
                flush=True,
            )
    train_s = time.perf_counter() - t_start
    final_train_loss = float(loss.item())

    # the same weights in a model whose context allows 1,024 positions
    ev = ge.GptOss(cfg_eval)
    ev.load_state_dict(model.state_dict())
    ev.eval()
    plain, _ = yarn_inv_freq(cfg_train)
    yarn, c_yarn = yarn_inv_freq(cfg_eval)
    variants = {
        "plain RoPE": (plain, 1.0),
        "interpolation (theta / 8)": (plain / FACTOR, 1.0),
        "YaRN": (yarn, c_yarn),
        "YaRN without concentration": (yarn, 1.0),
    }
    result = {"variants": {}, "concentration_sweep": []}
    for name, (inv_freq, c) in variants.items():
        set_rope(ev, inv_freq, c)
        r = evaluate(ev, held_out, want_entropy=True)
        loss = r["loss"]
        result["variants"][name] = {
            "concentration": c,
            "loss_per_position": [round(float(x), 4) for x in loss],
            "loss_inside": float(loss[16:L_TRAIN].mean()),
            "loss_outside": float(loss[L_TRAIN:].mean()),
            "entropy_inside": r["entropy_inside"],
            "entropy_outside": r["entropy_outside"],
        }
        print(
            f"{name:<28} loss 16-127 {loss[16:L_TRAIN].mean():.3f}  128-1023 {loss[L_TRAIN:].mean():.3f}  "
            f"entropy {r['entropy_inside']:.3f} / {r['entropy_outside']:.3f}",
            flush=True,
        )
    for c in CONCENTRATIONS:
        set_rope(ev, yarn, c)
        r = evaluate(ev, held_out, want_entropy=True)
        result["concentration_sweep"].append(
            {
                "concentration": c,
                "loss_outside": float(r["loss"][L_TRAIN:].mean()),
                "entropy_outside": r["entropy_outside"],
            }
        )
        print(
            f"YaRN c = {c:<6} loss 128-1023 {r['loss'][L_TRAIN:].mean():.3f}  entropy {r['entropy_outside']:.3f}",
            flush=True,
        )
    set_rope(ev, plain, 1.0)
    base_entropy = evaluate(ev, held_out[:, : L_TRAIN + 1], want_entropy=True)["entropy_inside"]
    result.update(
        {
            "entropy_trained_context": base_entropy,
            "train_steps": args.steps,
            "batch": args.batch,
            "final_train_loss": final_train_loss,
            "L_train": L_TRAIN,
            "L_eval": L_EVAL,
            "factor": FACTOR,
            "yarn_concentration": c_yarn,
            "held_out_sequences": len(held_out),
            "config": {
                k: getattr(cfg_eval, k)
                for k in (
                    "num_hidden_layers",
                    "hidden_size",
                    "head_dim",
                    "rope_theta",
                    "rope_ntk_beta",
                    "rope_ntk_alpha",
                )
            },
            "seconds": round(time.perf_counter() - t_start),
            "train_seconds": round(train_s),
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, 1 thread",
            "command": "nice python benchmarks/yarn_context.py"
            + (f" --steps {args.steps}" if args.steps != 600 else "")
            + (f" --seed {args.seed}" if args.seed else ""),
            "date": datetime.date.today().isoformat(),
        }
    )
    (HERE / "results").mkdir(exist_ok=True)
    stem = "yarn_context" if args.seed == 0 else f"yarn_context_seed{args.seed}"
    result["seed"] = args.seed
    (HERE / "results" / f"{stem}.json").write_text(json.dumps(result, indent=1))
    v = result["variants"]
    rows = "\n".join(
        f"| {n} | {d['concentration']:.3f} | {d['loss_inside']:.3f} | {d['loss_outside']:.3f} | {d['entropy_outside']:.3f} |"
        for n, d in v.items()
    )
    sweep = "\n".join(
        f"| {d['concentration']:.3f} | {d['loss_outside']:.3f} | {d['entropy_outside']:.3f} |"
        for d in result["concentration_sweep"]
    )
    (HERE / "results" / f"{stem}.md").write_text(
        f"""# Why YaRN: plain RoPE past its trained context{"" if args.seed == 0 else f" (seed {args.seed})"}

`{result["command"]}` on {result["date"]} ({result["machine"]}; {result["seconds"]} s).
A {cfg_eval.num_hidden_layers}-layer tiny gpt-oss (all layers full attention, plain RoPE, base
10,000) trained {args.steps} steps on {L_TRAIN}-token sequences of standard-library source, then
evaluated without further training on {len(held_out)} held-out {L_EVAL}-token sequences.
Loss in nats per token; entropy of the attention rows (sink column included) in nats, queries
past position {L_TRAIN}; at its own context the model's entropy is {base_entropy:.3f}.

| rotation at evaluation | concentration | loss, positions 16-127 | loss, 128-1023 | entropy past 128 |
|---|---|---|---|---|
{rows}

YaRN's frequencies with other concentration factors (YaRN's rule: 0.1 ln 8 + 1 = {c_yarn:.3f}):

| concentration | loss, 128-1023 | entropy past 128 |
|---|---|---|
{sweep}

Chapter 4 (`book/04_rope_yarn.ipynb`) plots `results/yarn_context.json`.
"""
    )
    print(f"wrote {HERE / 'results' / stem}.json ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
