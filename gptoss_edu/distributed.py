"""Expert parallelism on torch.distributed (chapter 17).

With `world_size` processes (ranks), rank r holds experts [r*E/N, (r+1)*E/N) of every MoE layer
and a replica of everything else. One MoE layer, on every rank at once:

    t = norm(x)                                   # (T, H), the same on every rank (replicas)
    mine = t[lo_r:hi_r]                           # each rank routes its own slice of the tokens
    experts, weights = route(gate(mine), k)       # (n, k): the one routing rule, as one process
    dispatch:  all_to_all_single                  # each assignment's row goes to its expert's owner
    compute:   the owner runs its local experts   # the same kernels as one process
    combine:   all_to_all_single                  # results come back to the token's rank
    y = sum_j weights[:, j] * y_j                 # in j order, exactly as one process sums
    out = all_gather(y)                           # every rank has (T, H) again for the next layer

An expert's owner receives its rows from the ranks in rank order, and the ranks hold the tokens in
order, so each expert sees the same rows in the same order as in one process: the results are
equal to the single-process model, not only close.

Bytes on the wire per layer (float32 rows of H values, 4 bytes each), for T tokens with k experts
each, of which a share f is owned by another rank (f = (N-1)/N for uniform routing):

    dispatch = combine = f * T * k * H * 4      all_gather = (N-1)/N * T * H * 4
    (+ 8 bytes per remote assignment for its expert id, and N*N*8 for the split sizes)

    import gptoss_edu as ge
    from gptoss_edu import distributed as ep
    ep.init()                                  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, ...
    model, tok = ge.load_tiny()
    ep.shard_experts(model)                    # every MoE layer keeps only this rank's experts
    model = ep.load_expert_parallel(path)      # or: read only this rank's experts from the file
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = [
    "EPStats",
    "ExpertParallelMLP",
    "dispatch_combine",
    "expert_range",
    "init",
    "load_expert_parallel",
    "load_model_and_tokenizer",
    "shared_seed",
    "spawn",
    "spawnable_main",
    "shard_experts",
    "token_range",
]


def _dist():
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(
            "expert parallelism needs torch.distributed, which this torch build lacks "
            "(torch.distributed.is_available() is False); install a standard torch wheel"
        )
    return dist


def init(backend: str | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; returns (rank, world_size).

    backend: "gloo" (CPU; the default without CUDA) or "nccl" (GPUs). Already initialized: no-op.
    """
    dist = _dist()
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [
        v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"distributed.init: environment variables {missing} are not set; start the program "
            "with torchrun, e.g. `torchrun --standalone --nproc-per-node=2 -m gptoss_edu generate "
            "--tiny --expert-parallel --prompt 'def '`"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    available = {"gloo": dist.is_gloo_available(), "nccl": dist.is_nccl_available()}
    if backend not in available:
        raise ValueError(f"distributed.init: backend must be 'gloo' or 'nccl'; found {backend!r}")
    if not available[backend]:
        raise RuntimeError(
            f"distributed.init: the {backend!r} back end is not available in this torch build "
            f"(available: {[b for b, ok in available.items() if ok] or 'none'})"
        )
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def shared_seed(seed: int | None) -> int:
    """The same sampling seed on every rank: `seed` if given, else rank 0's random draw."""
    dist = _dist()
    value = torch.tensor([seed if seed is not None else int(torch.randint(0, 2**31 - 1, ()))])
    if dist.is_initialized():
        dist.broadcast(value, src=0)
    return int(value)


def expert_range(num_experts: int, rank: int, world_size: int) -> range:
    """The experts rank `rank` owns: a contiguous block of num_experts / world_size ids."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expert_range: rank {rank} is not in [0, world_size={world_size})")
    if num_experts % world_size:
        raise ValueError(
            f"expert parallelism: num_experts = {num_experts} is not divisible by the number of "
            f"processes {world_size}; use a world size that divides it "
            f"({[n for n in range(1, num_experts + 1) if num_experts % n == 0]})"
        )
    per = num_experts // world_size
    return range(rank * per, (rank + 1) * per)


def token_range(num_tokens: int, rank: int, world_size: int) -> range:
    """The tokens rank `rank` routes: contiguous, sizes differ by at most one (some may be 0)."""
    base, extra = divmod(num_tokens, world_size)
    lo = rank * base + min(rank, extra)
    return range(lo, lo + base + (rank < extra))


@dataclass
class EPStats:
    """What one rank did, summed over calls: for checking that no rank quietly does it all."""

    expert_rows: int = 0  # rows this rank's experts computed (assignments it received)
    expert_calls: int = 0  # (expert, non-empty batch) pairs this rank ran
    sent_rows: int = 0  # assignment rows sent to other ranks (dispatch)
    sent_bytes: int = 0  # bytes sent to other ranks, dispatch + combine (not all_gather)
    seconds_exchange: float = 0.0  # in all_to_all_single and all_gather
    seconds_compute: float = 0.0  # in the local experts
    per_expert_rows: dict = field(default_factory=dict)


def dispatch_combine(
    rows: Tensor,
    experts: Tensor,
    run_local,
    num_experts: int,
    group=None,
    stats: EPStats | None = None,
) -> Tensor:
    """Send each assignment's row to the rank that owns its expert, run, and bring results back.

    rows (n, H): this rank's tokens; experts (n, k) int: their k experts (global ids).
    run_local(x (m, H), local_ids (m,)) -> (m, H) float32 computes this rank's experts on the rows
    it received, which arrive grouped by sender rank, in the sender's order.
    Returns (n, k, H) float32: the unweighted output of expert experts[t, j] for row t.
    """
    import time

    dist = _dist()
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    n, k = experts.shape
    H = rows.shape[1]
    per = len(expert_range(num_experts, rank, world))  # experts per rank (checks divisibility)
    flat = experts.reshape(-1).long()  # (n*k,) assignment a = t*k + j
    owner = flat // per  # (n*k,)
    order = torch.sort(owner, stable=True).indices  # assignments grouped by owner, in a order
    send_counts = torch.bincount(owner, minlength=world)  # (world,)
    send_x = rows[order // k].contiguous()  # (n*k, H)
    send_e = flat[order].contiguous()  # (n*k,)

    t0 = time.perf_counter()
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts, group=group)
    sc, rc = send_counts.tolist(), recv_counts.tolist()
    recv_x = rows.new_empty(sum(rc), H)
    dist.all_to_all_single(recv_x, send_x, rc, sc, group=group)
    recv_e = send_e.new_empty(sum(rc))
    dist.all_to_all_single(recv_e, send_e, rc, sc, group=group)
    t1 = time.perf_counter()
    y_recv = run_local(recv_x, recv_e - rank * per)  # (m, H)
    t2 = time.perf_counter()
    y_send = rows.new_empty(n * k, H)
    dist.all_to_all_single(y_send, y_recv.contiguous(), sc, rc, group=group)
    t3 = time.perf_counter()

    y = torch.empty_like(y_send)
    y[order] = y_send  # back to assignment order a = t*k + j
    if stats is not None:
        remote = n * k - sc[rank]
        stats.sent_rows += remote
        row = H * rows.element_size()
        stats.sent_bytes += remote * (row + 8) + (sum(rc) - rc[rank]) * row
        stats.expert_rows += sum(rc)
        stats.seconds_exchange += (t1 - t0) + (t3 - t2)
        stats.seconds_compute += t2 - t1
        for e, c in zip(*torch.unique(recv_e, return_counts=True)):
            key = int(e)
            stats.per_expert_rows[key] = stats.per_expert_rows.get(key, 0) + int(c)
            stats.expert_calls += 1
    return y.reshape(n, k, H)


class ExpertParallelMLP(nn.Module):
    """An MoE block (`gptoss_edu.model.moe.MLPBlock`) whose experts are spread over the ranks.

    Built from a full block (`from_block`) or filled by a loader; keeps the norm and the router
    (replicas) and only this rank's experts [lo, hi). forward(x) returns what the full block
    returns, on every rank.
    """

    def __init__(self, block: nn.Module, rank: int, world_size: int, group=None):
        super().__init__()
        self.group = group
        self.rank, self.world_size = rank, world_size
        self.num_experts = block.num_experts
        self.local = expert_range(block.num_experts, rank, world_size)
        self.experts_per_token = block.experts_per_token
        self.norm = block.norm
        self.gate = block.gate
        self.block = block  # experts outside self.local are dropped by shard_experts
        self.stats = EPStats()

    def _run_local(self, x: Tensor, local_ids: Tensor) -> Tensor:
        """This rank's experts on the rows it received, one expert per row, through the same
        per-expert code as one process (`MLPBlock.expert`: the seam, dense or packed)."""
        out = x.new_zeros(x.shape)  # (m, H)
        for e in torch.unique(local_ids).tolist():
            rows = torch.nonzero(local_ids == e, as_tuple=True)[0]  # in arrival order
            out[rows] = self.block.expert(e, x[rows])
        return out

    def forward(self, x: Tensor, recorder=None) -> Tensor:
        import time

        from .model.moe import route

        dist = _dist()
        shape = x.shape
        t = self.norm(x).reshape(-1, shape[-1])  # (T, H), identical on every rank
        T, H = t.shape
        mine = token_range(T, self.rank, self.world_size)
        rows = t[mine.start : mine.stop]  # (n, H)
        # The router runs on all T tokens, as in one process (a matmul's round-off can depend on
        # its row count), and each rank keeps its own rows' choices.
        logits = self.gate(t)  # (T, E)
        experts, weights = route(logits, self.experts_per_token)  # (T, k) each
        if recorder is not None:
            recorder.record("router_logits", self.block.layer_idx, logits)
            recorder.record("routing", self.block.layer_idx, (experts, weights))
        experts, weights = experts[mine.start : mine.stop], weights[mine.start : mine.stop]
        y = dispatch_combine(
            rows, experts, self._run_local, self.num_experts, self.group, self.stats
        )  # (n, k, H)
        # Sum each token's experts in ascending expert id, from zero, as MLPBlock.forward's
        # index_add_ does: the same float additions in the same order, so the same result.
        by_id = torch.sort(experts, dim=1, stable=True).indices  # (n, k)
        n = rows.shape[0]
        idx = torch.arange(n)
        out = torch.zeros(n, H, dtype=torch.float32)
        for s in range(experts.shape[1]):
            j = by_id[:, s]
            out += y[idx, j].float() * weights[idx, j, None]
        y = out
        # all_gather needs equal sizes: pad every rank's slice to the largest
        most = token_range(T, 0, self.world_size)
        padded = y.new_zeros(len(most), H)
        padded[: y.shape[0]] = y
        t0 = time.perf_counter()
        gathered = y.new_empty(self.world_size * len(most), H)
        # all_gather_single (torch >= 2.13) is all_gather_into_tensor's new name
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        gather(gathered, padded, group=self.group)
        self.stats.seconds_exchange += time.perf_counter() - t0
        parts = [
            gathered[r * len(most) : r * len(most) + len(token_range(T, r, self.world_size))]
            for r in range(self.world_size)
        ]
        return torch.cat(parts).to(x.dtype).reshape(shape)


def shard_experts(model: nn.Module, group=None) -> nn.Module:
    """Replace every MoE block of `model` by an ExpertParallelMLP keeping only this rank's experts.

    The other experts' weights are dropped (freed). In place; returns the model.
    """
    dist = _dist()
    if not dist.is_initialized():
        raise RuntimeError(
            "shard_experts: call gptoss_edu.distributed.init() first (under torchrun)"
        )
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    for blk in model.block:
        mlp = blk.mlp
        if isinstance(mlp, ExpertParallelMLP):
            raise ValueError("shard_experts: the model is already sharded")
        ep = ExpertParallelMLP(mlp, rank, world, group)
        loaded = getattr(mlp, "local_experts", None)  # load_checkpoint(..., expert_range=...)
        if loaded is None:
            _keep_experts(mlp, ep.local)
        elif loaded != ep.local:
            raise ValueError(
                f"shard_experts: this model was loaded with experts {loaded.start}..."
                f"{loaded.stop - 1}, but rank {rank} of {world} owns experts {ep.local.start}..."
                f"{ep.local.stop - 1}; load it with expert_range=expert_range(num_experts, rank, "
                "world_size), or use load_expert_parallel"
            )
        blk.mlp = ep
    return model


def load_expert_parallel(path, group=None, **kwargs) -> nn.Module:
    """This rank's model of the checkpoint at `path`, sharded: every MoE layer holds only the
    rank's experts, and only their bytes are read from the files and checked (NaN scale bytes,
    NaN/Inf biases); the other ranks' experts are never touched. Same logits as loading the
    whole model and calling `shard_experts`. kwargs go to `load_checkpoint` (dtype, ...).
    """
    from .checkpoint import load_checkpoint, read_config

    dist = _dist()
    if not dist.is_initialized():
        raise RuntimeError(
            "load_expert_parallel: call gptoss_edu.distributed.init() first (under torchrun)"
        )
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    local = expert_range(read_config(path).num_experts, rank, world)
    model = load_checkpoint(path, expert_range=local, **kwargs)
    return shard_experts(model, group)


def load_model_and_tokenizer(checkpoint=None, group=None):
    """(model, tokenizer) for `generate --expert-parallel`: what the single-process CLI loads
    (`gptoss_edu.checkpoint.load_model_and_tokenizer`), with only this rank's experts read.

    checkpoint=None: the shipped tiny model in float32 (as `load_tiny`), with its tokenizer.
    """
    from .checkpoint import load_model_and_tokenizer as load
    from .checkpoint import read_config

    dist = _dist()
    if not dist.is_initialized():
        raise RuntimeError(
            "load_model_and_tokenizer: call gptoss_edu.distributed.init() first (under torchrun)"
        )
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    kwargs = {}
    if checkpoint is None:  # its own tokenizer.tiktoken lies beside its weights
        from .tiny import tiny_path

        checkpoint, kwargs = tiny_path(), {"dtype": torch.float32}
    local = expert_range(read_config(checkpoint).num_experts, rank, world)
    model, tokenizer = load(checkpoint, expert_range=local, **kwargs)
    return shard_experts(model, group), tokenizer


@torch.no_grad()
def _keep_experts(mlp: nn.Module, local: range) -> None:
    """Slice the block's expert tensors to the experts in `local` (copies, so the rest is freed)."""
    sl = slice(local.start, local.stop)
    for name in ("mlp1_weight", "mlp2_weight"):
        w = getattr(mlp, name)
        if hasattr(w, "blocks"):
            # views: with a memory-mapped checkpoint (load_checkpoint's default) the other
            # experts' pages are never read, so this rank's memory holds only its own experts
            w.blocks = w.blocks[sl]
            w.scales = w.scales[sl]
        else:
            setattr(mlp, name, nn.Parameter(w[sl].clone(), requires_grad=w.requires_grad))
    for name in ("mlp1_bias", "mlp2_bias"):
        b = getattr(mlp, name)
        setattr(mlp, name, nn.Parameter(b[sl].clone(), requires_grad=b.requires_grad))


# ----------------------------------------------------------------------------- running on a laptop
# Jupyter cannot hand a function defined in a notebook to a spawned process (spawn pickles it by
# module and name), so the functions chapter 17 runs on several processes live here.


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, fn, world_size: int, port: int, queue, args: tuple) -> None:
    import warnings

    warnings.simplefilter("ignore")  # N copies of the same warning help nobody; errors still raise
    dist = _dist()
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        # tensors travel by value (numpy): a tensor put on a queue is shared memory that
        # vanishes with this process
        queue.put((rank, _map_tensors(fn(rank, world_size, *args), lambda t: t.numpy())))
    finally:
        dist.destroy_process_group()


def _map_tensors(obj, fn, kind=Tensor):
    """obj with fn applied to every `kind` inside dicts, lists and tuples."""
    if isinstance(obj, kind):
        return fn(obj.detach() if isinstance(obj, Tensor) else obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn, kind) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn, kind) for v in obj)
    return obj


def spawnable_main() -> None:
    """Let multiprocessing's spawn run from hosts whose __main__ lacks __spec__ (pytest-xdist's
    workers, some embedded interpreters): spawn reads it to re-import the parent's main module."""
    import sys

    main = sys.modules.get("__main__")
    if main is not None and not hasattr(main, "__spec__"):
        main.__spec__ = None


def spawn(fn, world_size: int, *args) -> list:
    """Run fn(rank, world_size, *args) in `world_size` new processes joined by gloo on a free
    port; returns the per-rank results, rank order. fn must be importable (defined in a module)."""
    import torch.multiprocessing as mp

    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"spawn: world_size must be a positive int; found {world_size!r}")
    if getattr(fn, "__module__", "__main__") == "__main__":
        raise ValueError(
            f"spawn: {getattr(fn, '__name__', fn)!r} is defined in __main__ (a notebook or a "
            "script); spawned processes cannot import it. Put it in a module and import it."
        )
    spawnable_main()
    queue = mp.get_context("spawn").SimpleQueue()
    port = _free_port()
    context = mp.start_processes(
        _spawned, args=(fn, world_size, port, queue, args), nprocs=world_size,
        join=False, start_method="spawn",
    )  # fmt: skip
    import numpy as np

    # read before joining: a result larger than the pipe's buffer blocks its sender until read
    results = {}
    while len(results) < world_size:
        if context.join(timeout=0.05):  # all exited; a crash raises here with its traceback
            break
        while not queue.empty():
            r, v = queue.get()
            results[r] = _map_tensors(v, torch.from_numpy, np.ndarray)
    while not queue.empty():
        r, v = queue.get()
        results[r] = _map_tensors(v, torch.from_numpy, np.ndarray)
    while not context.join():
        pass
    if len(results) != world_size:
        raise RuntimeError(f"spawn: only ranks {sorted(results)} of {world_size} returned a result")
    return [results[r] for r in range(world_size)]


def demo_collectives(rank: int, world_size: int) -> dict:
    """all_reduce, all_gather and all_to_all_single on tiny tensors, as chapter 17 draws them."""
    dist = _dist()
    x = torch.tensor([float(rank + 1)])
    dist.all_reduce(x)  # every rank: 1 + 2 + ... + N
    gathered = torch.empty(world_size)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(gathered, torch.tensor([float(rank)]))
    # rank r sends the value 10*r + d to rank d
    send = torch.tensor([10.0 * rank + d for d in range(world_size)])
    recv = torch.empty(world_size)
    dist.all_to_all_single(recv, send)
    return {"all_reduce": x.item(), "all_gather": gathered.tolist(), "all_to_all": recv.tolist()}


def demo_tiny(rank: int, world_size: int, text: str) -> dict:
    """The shipped tiny gpt-oss with its experts spread over the ranks, on `text`: logits and
    the per-rank work (rows computed per expert), for chapter 17."""
    from .tiny import load_tiny

    model, tok = load_tiny()
    shard_experts(model)
    ids = torch.tensor(tok.encode(text))
    with torch.no_grad():
        logits = model(ids)
    rows = [blk.mlp.stats.expert_rows for blk in model.block]
    sent = [blk.mlp.stats.sent_bytes for blk in model.block]
    return {
        "logits": logits if rank == 0 else None,
        "rows": rows,
        "sent_bytes": sent,
        "T": len(ids),
    }
