"""Training a gpt-oss on a CPU (chapter 14).

The whole recipe in one file, nanoGPT-style:

    docs = read_documents(stdlib_corpus_files())       # default corpus: the Python standard library
    train_docs, heldout_docs = split_heldout(docs)      # whole files held out (every 10th)
    tok = train_tokenizer(train_docs, vocab_size=4096)  # our BPE + the harmony special tokens
    train_ids, heldout_ids = encode_documents(tok, train_docs), encode_documents(tok, heldout_docs)
    model = GptOss(ModelConfig.tiny())
    history = train(model, train_ids, heldout_ids, TrainConfig(steps=1000))

The loss is next-token cross-entropy plus two small router terms:

  * the load-balancing loss of Switch Transformer, E * sum_e f_e * P_e, where f_e is the share
    of the top-k assignments that went to expert e and P_e the mean router probability of e
    (softmax over all E logits). It is 1 when routing is uniform and grows when a few experts
    take most tokens; without it the router tends to collapse onto a few experts;
  * the router z-loss of ST-MoE, mean(logsumexp(router logits)^2), which keeps router logits
    small so that the softmax stays well conditioned.

The router logits come from a `Recorder("router_logits", detach=False)` passed to the model's
own forward (chapter 6): one forward pass, the gradient flowing into the router through them. Batches are drawn with a generator seeded from (seed, step), so a resumed run
draws exactly the batches an uninterrupted one would.

From a shell: `python -m gptoss_edu train --out DIR` (see `cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .model.moe import route
from .model.recorder import Recorder
from .tokenizer.bpe import BPETokenizer, train_bpe
from .tokenizer.o200k import harmony_special_tokens

# ---------------------------------------------------------------------------------- corpus

HELDOUT_EVERY = 10  # every 10th document (sorted by name) is held out
HELDOUT_OFFSET = 5


def stdlib_corpus_files(root: str | Path | None = None) -> list[Path]:
    """The default corpus: the top-level modules of the Python standard library (`*.py`).

    Every Python install has them, no network needed; they are real, varied, well-written
    code with docstrings and comments in English. Only the top level (`os.py`, `typing.py`,
    ...), sorted by name: about 170 files, 4.7 MB on CPython 3.11. Packages (`asyncio/`,
    `email/`, ...) and the test suite are left out to keep the corpus a few MB. The exact bytes
    differ between Python versions, so the shipped model records its file list and the corpus's
    SHA-256 in assets/tiny/TRAINING.md; `--files-from` replays a recorded list.
    """
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(
            f"stdlib_corpus_files: {root} is not a directory; pass the standard library's path "
            "or give your own text files (--text)"
        )
    return sorted(root.glob("*.py"), key=lambda p: p.name)


def read_documents(paths) -> list[tuple[str, str]]:
    """(name, text) for each file; undecodable bytes become U+FFFD so any file can be read."""
    docs = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"read_documents: {p} is not a file")
        docs.append((p.name, p.read_bytes().decode("utf-8", errors="replace")))
    if not docs:
        raise ValueError("read_documents: no files given; pass at least one text file")
    return docs


def corpus_sha256(docs: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, text in docs:
        h.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    return h.hexdigest()


def split_heldout(docs: list[tuple[str, str]], every: int = HELDOUT_EVERY):
    """Split documents into (train, heldout).

    With at least `every` documents, whole documents are held out (index % every == 5), so the
    held-out text is code the model never saw, not the end of a file it trained on. With fewer
    documents, the last 1/every of each document (cut at a line break) is held out instead.
    """
    if len(docs) >= every:
        train = [d for i, d in enumerate(docs) if i % every != HELDOUT_OFFSET]
        held = [d for i, d in enumerate(docs) if i % every == HELDOUT_OFFSET]
        return train, held
    train, held = [], []
    for name, text in docs:
        cut = int(len(text) * (1 - 1 / every))
        nl = text.rfind("\n", 0, cut)
        cut = nl + 1 if nl > 0 else cut
        train.append((name, text[:cut]))
        held.append((name + " (tail)", text[cut:]))
    return train, held


# ------------------------------------------------------------------------------- tokenizer

# o200k_harmony's special tokens live at ids 199998..200018, right after its merges. A trained
# tokenizer gets the same 21 names in the same order at the top of its own vocabulary.
_HARMONY_LOW, _HARMONY_HIGH = 199_998, 200_018


def harmony_specials_for(vocab_size: int) -> dict[str, int]:
    """The harmony special tokens placed at ids vocab_size - 21 ... vocab_size - 1.

    harmony_specials_for(4096)["<|endoftext|>"] == 4076 (o200k: 199999, one after 199998).
    """
    n = _HARMONY_HIGH - _HARMONY_LOW + 1
    base = vocab_size - n
    return {
        name: base + (i - _HARMONY_LOW)
        for name, i in harmony_special_tokens().items()
        if _HARMONY_LOW <= i <= _HARMONY_HIGH
    }


def train_tokenizer(docs, vocab_size: int = 4096, name: str = "gptoss_edu_tiny") -> BPETokenizer:
    """Our byte-level BPE (chapter 1) with the harmony special tokens on top; n_vocab == vocab_size."""
    specials = harmony_specials_for(vocab_size)
    n_ranks = min(specials.values())
    texts = [t for _, t in docs] if docs and isinstance(docs[0], tuple) else list(docs)
    tok = train_bpe(texts, n_ranks, special_tokens=specials, name=name)
    if len(tok.mergeable_ranks) != n_ranks:
        raise ValueError(
            f"train_tokenizer: the text ran out of pairs after {len(tok.mergeable_ranks)} tokens; "
            f"expected {n_ranks} for vocab_size {vocab_size}: give more text or a smaller vocab_size"
        )
    return tok


def encode_documents(tok, docs) -> torch.Tensor:
    """One long (N,) int64 stream: each document's tokens followed by <|endoftext|>."""
    eot = tok.special_tokens["<|endoftext|>"]
    ids: list[int] = []
    for _, text in docs:
        ids.extend(tok.encode_ordinary(text))
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.long)


# ---------------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    min_lr: float = 3e-4  # the cosine ends here
    warmup_steps: int = 50
    weight_decay: float = 0.1  # on matrices only; norms, biases and sinks are not decayed
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    aux_loss_coef: float = 0.01  # Switch Transformer's load-balancing loss
    z_loss_coef: float = 1e-3  # ST-MoE's router z-loss
    eval_every: int = 100
    eval_batches: int = 8  # windows of batch_size x seq_len for the periodic evaluation
    seed: int = 0

    def lr_at(self, step: int) -> float:
        """Linear warm-up to `lr`, then a cosine down to `min_lr` at `steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        progress = min(1.0, progress)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # cross-entropy of the training batch
    aux_loss: list[float] = field(default_factory=list)
    z_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    expert_load: list[list[list[float]]] = field(default_factory=list)  # per eval: (layers, E)
    tokens_per_s: float = 0.0
    seconds: float = 0.0


# ----------------------------------------------------------------------------- the losses


class RouterTap:
    """Deprecated (use `Recorder("router_logits", detach=False)`): forward hooks on every
    `block[i].mlp.gate` that keep the router logits (N, E) of the last forward pass."""

    def __init__(self, model):
        import warnings

        warnings.warn(
            "train.RouterTap is deprecated and will be removed in the next release; pass "
            "recorder=Recorder('router_logits', detach=False) to the model instead",
            DeprecationWarning,
            stacklevel=2,
        )
        self.model = model
        self.logits: list[torch.Tensor] = []
        self._handles = []

    def __enter__(self):
        for block in self.model.block:
            self._handles.append(block.mlp.gate.register_forward_hook(self._keep))
        return self

    def _keep(self, module, inputs, output):
        self.logits.append(output)

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


def load_balancing_loss(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Switch Transformer's auxiliary loss for one layer: E * sum_e f_e * P_e.

    logits (N, E). f_e: share of the N*k top-k assignments that chose e (no gradient);
    P_e: mean over tokens of softmax(logits)[:, e]. Uniform routing gives exactly 1.
    """
    N, E = logits.shape
    probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
    ids, _ = route(logits.detach(), k)  # (N, k): the experts the MoE block chooses
    f = torch.bincount(ids.reshape(-1), minlength=E).float() / (N * k)  # (E,)
    return E * (f * probs.mean(0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's z-loss: mean over tokens of logsumexp(router logits)^2."""
    return torch.logsumexp(logits.float(), dim=-1).pow(2).mean()


def expert_load(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the top-k assignments each expert received: (E,), sums to 1."""
    ids, _ = route(logits.detach(), k)  # (N, k), the package's one routing rule
    return torch.bincount(ids.reshape(-1), minlength=logits.shape[-1]).float() / ids.numel()


def compute_loss(model, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig):
    """(total loss, cross-entropy, aux loss, z-loss) for a batch x, y of shape (B, T)."""
    k = model.config.experts_per_token
    rec = Recorder("router_logits", detach=False)  # keep the graph: the losses train the router
    logits = model(x, recorder=rec)  # (B, T, V)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
    aux = torch.stack([load_balancing_loss(r, k) for r in rec["router_logits"]]).mean()
    z = torch.stack([router_z_loss(r) for r in rec["router_logits"]]).mean()
    total = ce + cfg.aux_loss_coef * aux + cfg.z_loss_coef * z
    return total, ce, aux, z


# ------------------------------------------------------------------------------- batches


def get_batch(data: torch.Tensor, batch_size: int, seq_len: int, seed: int, step: int):
    """Random windows of `data`: x, y (B, T) with y the next token. Depends only on (seed, step)."""
    if len(data) < seq_len + 2:
        raise ValueError(
            f"get_batch: {len(data)} tokens of data; need at least seq_len + 2 = {seq_len + 2} "
            "(give more text or a smaller seq_len)"
        )
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=g)
    x = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
    y = torch.stack([data[s + 1 : s + seq_len + 1] for s in starts.tolist()])
    return x, y


def eval_windows(data: torch.Tensor, seq_len: int, max_windows: int | None = None):
    """Non-overlapping windows covering `data` in order: x, y (W, T). The targets are
    data[1 : 1 + W*T], every position predicted once (context restarts each window)."""
    W = (len(data) - 1) // seq_len
    if max_windows is not None:
        W = min(W, max_windows)
    if W == 0:
        raise ValueError(
            f"eval_windows: {len(data)} held-out tokens; need at least seq_len + 1 = {seq_len + 1}"
        )
    x = data[: W * seq_len].reshape(W, seq_len)
    y = data[1 : W * seq_len + 1].reshape(W, seq_len)
    return x, y


@torch.no_grad()
def evaluate(model, data: torch.Tensor, seq_len: int, batch_size: int = 16, max_windows=None):
    """Mean next-token cross-entropy (nats) over held-out windows, and the expert load (L, E)."""
    was_training = model.training
    model.eval()
    x, y = eval_windows(data, seq_len, max_windows)
    k = model.config.experts_per_token
    total, n = 0.0, 0
    load = torch.zeros(model.config.num_hidden_layers, model.config.num_experts)
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            rec = Recorder("router_logits")
            logits = model(xb, recorder=rec)
            total += F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum"
            ).item()
            n += yb.numel()
            for layer, r in enumerate(rec["router_logits"]):
                load[layer] += expert_load(r, k) * yb.numel()
    finally:
        model.train(was_training)
    return total / n, load / n


def ngram_baselines(train_ids: torch.Tensor, heldout_ids: torch.Tensor, vocab_size: int):
    """Held-out cross-entropy (nats/token) of a unigram and a bigram model fit on train_ids.

    Targets are heldout_ids[1:], the same tokens `eval_windows` scores. Unigram: add-one
    (Laplace) counts. Bigram: P(b|a) = lam * count(a, b) / count(a) + (1 - lam) * P_unigram(b),
    with lam the best of a small grid on the held-out set itself, which flatters the bigram:
    a model that beats it beats every bigram of that family.
    """
    V = vocab_size
    uni = torch.bincount(train_ids, minlength=V).double() + 1.0
    p_uni = uni / uni.sum()  # (V,)
    prev, nxt = heldout_ids[:-1], heldout_ids[1:]
    unigram = -p_uni[nxt].log().mean().item()
    # count(a, b) for the held-out pairs only, via sorted pair codes (no V x V table)
    codes, counts = torch.unique(train_ids[:-1] * V + train_ids[1:], return_counts=True)
    query = prev * V + nxt
    pos = torch.searchsorted(codes, query).clamp(max=len(codes) - 1)
    pair_count = torch.where(codes[pos] == query, counts[pos], 0).double()  # (N,)
    row = torch.bincount(train_ids[:-1], minlength=V).double()[prev]  # count(a) as a context
    p_big = torch.where(row > 0, pair_count / row.clamp(min=1), 0.0)
    best = (float("inf"), None)
    for lam in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        p = lam * p_big + (1 - lam) * p_uni[nxt]
        best = min(best, (-p.log().mean().item(), lam))
    return {"unigram": unigram, "bigram": best[0], "bigram_lambda": best[1]}


# ------------------------------------------------------------------------------- training


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


STATE_FORMAT = "gptoss_edu.train_state.v1"


def save_state(path: str | Path, model, optimizer, step: int, history: History, cfg: TrainConfig):
    """Write everything a resumed run needs: model and AdamW tensors (safetensors) + JSON.

    Both files are replaced together, as one directory (`atomic_directory`): a kill at any
    moment leaves the previous state or this one, never this step's weights with the previous
    step's counter. The step is also written into the safetensors metadata, and `load_state`
    refuses a pair whose steps differ (files copied by hand from two saves).
    """
    from .checkpoint import atomic_directory
    from .checkpoint.safetensors import write_safetensors

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for p, s in optimizer.state.items():
        for key, value in s.items():
            tensors[f"adamw.{names[id(p)]}.{key}"] = torch.as_tensor(value).contiguous()
    meta = {
        "format": STATE_FORMAT,
        "step": step,
        "train_config": dataclasses.asdict(cfg),
        "model_config": model.config.to_dict("openai"),
        "history": dataclasses.asdict(history),
    }
    with atomic_directory(path, overwrite=True, what="save_state") as tmp:
        entries = [(k, t.dtype, tuple(t.shape), t) for k, t in tensors.items()]
        write_safetensors(
            tmp / "state.safetensors", entries, {"format": STATE_FORMAT, "step": str(step)}
        )
        (tmp / "state.json").write_text(json.dumps(meta) + "\n")


def _state_error(path: Path, what: str) -> ValueError:
    return ValueError(
        f"load_state: {path}: {what}; the training state is damaged: start again without "
        "--resume (or with another --state-dir)"
    )


def load_state(path: str | Path, model, optimizer) -> tuple[int, History]:
    """Restore what `save_state` wrote; returns (next step, history).

    Every failure names the file and what is wrong: a missing, truncated or malformed
    state.json, a corrupt state.safetensors, a pair from two different saves, a model config
    or tensor set that does not match this run.
    """
    from .checkpoint import recover
    from .checkpoint.safetensors import CheckpointError, MappedFile

    path = recover(Path(path))  # a save killed between its two renames
    st, js = path / "state.safetensors", path / "state.json"
    if not st.is_file() or not js.is_file():
        raise FileNotFoundError(
            f"load_state: no training state in {path} (expected state.safetensors and "
            "state.json, written by a run with the same --state-dir)"
        )
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise _state_error(js, f"not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not {"step", "model_config", "history"} <= set(meta):
        raise _state_error(js, "expected an object with step, model_config and history")
    step = meta["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _state_error(js, f"step must be a non-negative integer; found {step!r}")
    if meta["model_config"] != model.config.to_dict("openai"):
        raise ValueError(
            f"load_state: {path} was written for model config {meta['model_config']}; "
            f"this run builds {model.config.to_dict('openai')}"
        )
    try:
        mapped = MappedFile(st)
        tensors = {k: mapped.tensor(k).clone() for k in mapped.keys()}
        with open(st, "rb") as f:  # the metadata, which parse_header leaves out
            n = int.from_bytes(f.read(8), "little")
            file_meta = json.loads(f.read(n)).get("__metadata__", {})
    except CheckpointError as e:
        raise _state_error(st, str(e).replace(str(st) + ": ", "")) from None
    if file_meta.get("step") != str(step):
        raise _state_error(
            path,
            f"state.json is at step {step} but state.safetensors at step "
            f"{file_meta.get('step')!r}: the two files come from different saves",
        )
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        history = History(**meta["history"])
    except (RuntimeError, TypeError) as e:
        raise _state_error(st, f"does not fit this model ({str(e).splitlines()[0]})") from None
    by_name = dict(model.named_parameters())
    for key, value in tensors.items():
        if key.startswith("adamw."):
            pname, slot = key[6:].rsplit(".", 1)
            if pname not in by_name:
                raise _state_error(st, f"optimizer state for unknown parameter {pname}")
            optimizer.state[by_name[pname]][slot] = value
    return step, history


def train(
    model,
    train_ids: torch.Tensor,
    heldout_ids: torch.Tensor | None,
    cfg: TrainConfig,
    state_dir: str | Path | None = None,
    resume: bool = False,
    save_every: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> History:
    """Train `model` in place for cfg.steps steps; return the loss history.

    With `state_dir`, the model and optimizer are saved there every `save_every` steps (default:
    every eval) and at the end; with `resume=True` training continues from the saved step.
    `stop_after` ends the call early after that many steps (to test resuming).
    """
    optimizer = make_optimizer(model, cfg)
    start, history = 0, History()
    if resume:
        if state_dir is None:
            raise ValueError("train: resume=True needs the state_dir the first run saved into")
        start, history = load_state(state_dir, model, optimizer)
    save_every = save_every or cfg.eval_every
    model.train()
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="training", unit="step")
    t0 = time.perf_counter()
    seconds_before = history.seconds
    tokens = 0
    for step in range(start, end):
        lr = cfg.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(train_ids, cfg.batch_size, cfg.seq_len, cfg.seed, step)
        total, ce, aux, z = compute_loss(model, x, y, cfg)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        tokens += x.numel()
        history.step.append(step)
        history.loss.append(ce.item())
        history.aux_loss.append(aux.item())
        history.z_loss.append(z.item())
        history.lr.append(lr)
        last = step + 1 == cfg.steps
        if heldout_ids is not None and ((step + 1) % cfg.eval_every == 0 or last):
            loss, load = evaluate(
                model, heldout_ids, cfg.seq_len, cfg.batch_size, cfg.eval_batches * cfg.batch_size
            )
            history.eval_step.append(step + 1)
            history.eval_loss.append(loss)
            history.expert_load.append(load.tolist())
        if bar is not None:
            post = {"loss": f"{ce.item():.3f}", "aux": f"{aux.item():.3f}"}
            if history.eval_loss:
                post["heldout"] = f"{history.eval_loss[-1]:.3f}"
            bar.set_postfix(post)
            bar.update(1)
        if state_dir is not None and ((step + 1) % save_every == 0 or step + 1 == end):
            history.seconds = seconds_before + time.perf_counter() - t0
            save_state(state_dir, model, optimizer, step + 1, history, cfg)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    history.seconds = seconds_before + elapsed
    if tokens:
        history.tokens_per_s = tokens / elapsed
    model.eval()
    return history


def plot_losses(history: History, baselines: dict | None = None, ax=None, title=None):
    """Training and held-out loss against step (and the n-gram baselines as lines)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.step, history.loss, lw=0.8, alpha=0.6, label="train (batch)")
    if history.eval_step:
        ax.plot(history.eval_step, history.eval_loss, "o-", ms=3, label="held-out")
    for name, style in (("unigram", ":"), ("bigram", "--")):
        if baselines and name in baselines:
            ax.axhline(baselines[name], color="gray", ls=style, lw=1, label=f"{name} baseline")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title or "training loss")
    ax.legend()
    return ax.figure


# ------------------------------------------------------------------------------------ CLI


def _model_config(args) -> ModelConfig:
    presets = {"tiny": ModelConfig.tiny, "20b": ModelConfig.gpt_oss_20b}
    if args.config not in presets:
        return ModelConfig.from_json(args.config)
    cfg = presets[args.config]()
    changes = {
        k: v
        for k, v in {
            "num_hidden_layers": args.layers,
            "num_experts": args.experts,
            "experts_per_token": args.experts_per_token,
            "hidden_size": args.hidden_size,
            "intermediate_size": args.intermediate_size,
            "vocab_size": args.vocab_size,
        }.items()
        if v is not None
    }
    return cfg.replace(**changes)


def build_parser() -> argparse.ArgumentParser:
    from .__main__ import (
        new_directory,
        nonneg_float,
        nonneg_int,
        positive_float,
        positive_int,
        unit_float,
    )

    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m gptoss_edu train",
        description="Train a gpt-oss on text (default: the Python standard library) on a CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out",
        required=True,
        type=new_directory,
        help="directory for the checkpoint, tokenizer, loss plot and training.json",
    )
    p.add_argument(
        "--state-dir", help="directory for resumable training state (default: OUT/state)"
    )
    p.add_argument("--resume", action="store_true", help="continue from --state-dir")
    p.add_argument(
        "--text",
        nargs="+",
        metavar="FILE",
        help="text files to train on (default: the standard library corpus)",
    )
    p.add_argument("--files-from", help="a file listing corpus paths, one per line")
    p.add_argument("--config", default="tiny", help="tiny, 20b or a config.json path")
    for name in ("layers", "experts", "experts-per-token", "hidden-size", "intermediate-size"):
        p.add_argument(
            f"--{name}", type=positive_int, help=f"override the config's {name.replace('-', '_')}"
        )
    p.add_argument(
        "--vocab-size", type=positive_int, help="tokenizer size = the model's vocab_size"
    )
    p.add_argument("--tokenizer", help="an existing tokenizer rank file instead of training one")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps")
    p.add_argument(
        "--batch-size", type=positive_int, default=d.batch_size, help="sequences per step"
    )
    p.add_argument("--seq-len", type=positive_int, default=d.seq_len, help="tokens per sequence")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="peak learning rate")
    p.add_argument(
        "--min-lr", type=nonneg_float, default=d.min_lr, help="learning rate the cosine ends at"
    )
    p.add_argument(
        "--warmup-steps", type=nonneg_int, default=d.warmup_steps, help="linear warm-up steps"
    )
    p.add_argument(
        "--weight-decay",
        type=nonneg_float,
        default=d.weight_decay,
        help="AdamW weight decay (matrices only)",
    )
    p.add_argument(
        "--grad-clip", type=positive_float, default=d.grad_clip, help="gradient norm clip"
    )
    p.add_argument(
        "--aux-loss-coef",
        type=nonneg_float,
        default=d.aux_loss_coef,
        help="weight of the load-balancing loss",
    )
    p.add_argument(
        "--z-loss-coef", type=nonneg_float, default=d.z_loss_coef, help="weight of the z-loss"
    )
    p.add_argument(
        "--eval-every",
        type=positive_int,
        default=d.eval_every,
        help="steps between held-out evaluations (and state saves)",
    )
    p.add_argument(
        "--eval-batches",
        type=positive_int,
        default=d.eval_batches,
        help="batches per periodic evaluation",
    )
    p.add_argument("--seed", type=nonneg_int, default=d.seed, help="seed of init and batches")
    p.add_argument(
        "--threads", type=positive_int, default=2, help="torch.set_num_threads for the run"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    del unit_float
    return p


def cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # _run sets the thread count and deterministic mode; put them back for in-process callers
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return _run(args, argv)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run(args, argv: list[str]) -> int:
    from .model.transformer import GptOss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    state_dir = Path(args.state_dir) if args.state_dir else out / "state"
    mcfg = _model_config(args)
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        aux_loss_coef=args.aux_loss_coef,
        z_loss_coef=args.z_loss_coef,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        seed=args.seed,
    )
    if args.resume:  # before any slow work: is there a state to resume from?
        from .checkpoint import recover

        if not (recover(state_dir) / "state.json").is_file():
            raise FileNotFoundError(
                f"train --resume: no training state in {state_dir} (expected state.json and "
                "state.safetensors from an earlier run with the same --out/--state-dir)"
            )
    if args.files_from:
        if not Path(args.files_from).is_file():
            raise FileNotFoundError(f"train: --files-from {args.files_from} does not exist")
        paths = [Path(s) for s in Path(args.files_from).read_text().split("\n") if s.strip()]
        corpus = f"files listed in {args.files_from}"
    elif args.text:
        paths, corpus = [Path(t) for t in args.text], "user-supplied text files"
    else:
        paths = stdlib_corpus_files()
        corpus = f"top-level *.py of the Python {sys.version.split()[0]} standard library"
    if out.exists() and any(
        p.name != state_dir.name and not p.name.startswith(".") for p in out.iterdir()
    ):
        if not (args.overwrite or args.resume):
            raise ValueError(f"train: {out} is not empty; pass --overwrite to replace it")
    if state_dir.exists() and not state_dir.is_dir():
        raise ValueError(f"train: --state-dir {state_dir} is a file; give a directory")
    t_start = time.perf_counter()
    docs = read_documents(paths)
    train_docs, held_docs = split_heldout(docs)
    print(f"corpus: {corpus}: {len(docs)} files, {sum(len(t) for _, t in docs):,} characters")
    if args.tokenizer:
        tok = BPETokenizer.load(args.tokenizer)
    else:
        print(f"training the BPE tokenizer ({mcfg.vocab_size} tokens) on the training files ...")
        tok = train_tokenizer(train_docs, mcfg.vocab_size)
    if tok.n_vocab > mcfg.vocab_size:
        raise ValueError(
            f"train: the tokenizer has {tok.n_vocab} ids; the model's vocab_size is {mcfg.vocab_size}"
        )
    train_ids = encode_documents(tok, train_docs)
    held_ids = encode_documents(tok, held_docs)
    print(f"tokens: {len(train_ids):,} train, {len(held_ids):,} held-out")
    baselines = ngram_baselines(train_ids, held_ids, mcfg.vocab_size)
    print(
        f"held-out baselines: unigram {baselines['unigram']:.3f}, bigram {baselines['bigram']:.3f} nats/token"
    )

    model = GptOss(mcfg)  # initialised under torch.manual_seed(seed)
    history = train(
        model,
        train_ids,
        held_ids,
        cfg,
        state_dir=state_dir,
        resume=args.resume,
        progress=not args.no_progress,
    )
    final, load = evaluate(model, held_ids, cfg.seq_len, cfg.batch_size)
    print(
        f"held-out loss {final:.3f} nats/token (unigram {baselines['unigram']:.3f}, "
        f"bigram {baselines['bigram']:.3f}); {history.tokens_per_s:,.0f} tokens/s"
    )
    report = {
        "command": "python -m gptoss_edu train " + " ".join(argv),
        "corpus": corpus,
        "corpus_files": [p.name for p in paths],
        "corpus_sha256": corpus_sha256(docs),
        "heldout_files": [n for n, _ in held_docs],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_config": dataclasses.asdict(cfg),
        "model_config": mcfg.to_dict("openai"),
        "tokens_train": len(train_ids),
        "tokens_heldout": len(held_ids),
        "heldout_loss": final,
        "baselines": baselines,
        "expert_load_heldout": [[round(v, 4) for v in row] for row in load.tolist()],
        "train_seconds": history.seconds,
        "total_seconds": time.perf_counter() - t_start,
        "tokens_per_s": history.tokens_per_s,
        "final_train_loss": sum(history.loss[-20:]) / len(history.loss[-20:]),
        "eval": list(zip(history.eval_step, history.eval_loss)),
    }
    # OUT is replaced as one directory (atomic_directory): the checkpoint (OpenAI's original
    # layout, experts in MXFP4), tokenizer, plot, report, and the training state when it lives
    # inside OUT (hard-linked into the new directory, so that no kill can lose it)
    from .checkpoint import atomic_directory, write_checkpoint_files

    with atomic_directory(out, overwrite=True, what="train") as tmp:
        write_checkpoint_files(model, tmp, layout="original")
        tok.save(tmp / "tokenizer.tiktoken")
        fig = plot_losses(history, baselines, title=f"{out.name}: {cfg.steps} steps")
        fig.savefig(tmp / "loss.png", dpi=80, bbox_inches="tight")
        (tmp / "training.json").write_text(json.dumps(report, indent=1) + "\n")
        if state_dir.resolve().parent == out.resolve() and state_dir.is_dir():
            _link_tree(state_dir, tmp / state_dir.name)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"saved {out} ({size:,} bytes)")
    return 0


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link src's files into dst (a copy where links are not possible)."""
    import os
    import shutil

    dst.mkdir()
    for f in src.iterdir():
        if f.is_dir():
            _link_tree(f, dst / f.name)
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)


__all__ = [
    "History",
    "RouterTap",
    "TrainConfig",
    "cli",
    "compute_loss",
    "corpus_sha256",
    "encode_documents",
    "evaluate",
    "expert_load",
    "get_batch",
    "harmony_specials_for",
    "load_balancing_loss",
    "ngram_baselines",
    "plot_losses",
    "read_documents",
    "router_z_loss",
    "split_heldout",
    "stdlib_corpus_files",
    "train",
    "train_tokenizer",
]
