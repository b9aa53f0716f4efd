"""Everything a lent GPU machine should run, as ONE command that ends well inside 10 minutes
(issue 15 goal 5; the device tool's machines start bare, cannot reach the internet, and lend
about 15 minutes in all, start included).

    python3 benchmarks/gpu_session.py --out "$OUT"        # on the GPU machine, in the repo root

(with the device tool: `run` with that command and timeout_s=600; nothing needs carrying: the
machine's python3 has torch, numba, numba-cuda, safetensors and pytest.)
    python3 benchmarks/gpu_session.py --out /tmp/s --model tiny   # rehearsal on a CPU machine

Each step runs in its own subprocess with its own time limit, so that a step that crashes (an
illegal memory access) or hangs costs only its own minutes and the others still report:

1. machine: GPU, driver, torch, numba and numba-cuda versions, nvcc;
2. build the CUDA C++ extension and check it (`python -m gptoss_edu.kernels.cuda`: with a GPU,
   one small call of each kernel against the reference), timed;
3. the GPU tests (`pytest -m gpu`): both GPU back ends against the reference at 20b's shapes;
4. `benchmarks/kernels_gpu.py`: the MXFP4 matmul and the routing kernel, each back end, against
   torch's bf16 matmul and the device's measured copy bandwidth;
5. a 20b-shaped synthetic checkpoint (`write_synthetic`, 13.8 GB; `--model tiny` for a
   rehearsal) loaded on the GPU in bf16 with packed MXFP4 experts, for each GPU back end:
   prefill of 16 and 64 tokens, greedy decode of DECODE_TOKENS tokens, peak GPU memory;
6. NCCL: a one-process NCCL group runs `ExpertParallelMLP` on the GPU and is compared with the
   plain `MLPBlock` (two ranks need two GPUs; the lent machine has one).

Without a GPU every step that needs one says so and the run still writes its page: the
rehearsal checks this script's own code (tests/test_gpu_session.py runs it). Writes
OUT/gpu_session.md, OUT/gpu_session.json and OUT/gpu_session.log (every step's output: the
device tool brings back at most 8 files), and OUT/kernels_gpu.md; copy the pages to
benchmarks/results/gpu_session.md (and kernels_gpu.md from OUT) when it ran on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECODE_TOKENS = 32
PROMPTS = (16, 64)


# ----------------------------------------------------------------------------- steps (children)


def step_machine() -> dict:
    import shutil

    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    for name in ("numba", "numba_cuda", "safetensors", "numpy"):
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "?")
        except ImportError:
            info[name] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs"
        info["gpus"] = torch.cuda.device_count()
    for tool, args in (("nvidia-smi", ["-L"]), ("nvcc", ["--version"])):
        if shutil.which(tool):
            out = subprocess.run([tool, *args], capture_output=True, text=True).stdout.strip()
            info[tool] = out.splitlines()[-1] if out else ""
        else:
            info[tool] = None
    return info


def _generate(model, prompt, n_new: int, sync) -> tuple[list[int], float]:
    """Greedy decode n_new tokens after prompt on a fresh cache; (tokens, seconds of decode)."""
    import torch

    with torch.no_grad():
        cache = model.new_cache()
        logits = model(prompt, cache=cache)
        tokens = [int(logits[-1].argmax())]
        sync()
        t0 = time.perf_counter()
        for _ in range(n_new - 1):
            out = model(torch.tensor(tokens[-1:], device=prompt.device), cache=cache)
            tokens.append(int(out[-1].argmax()))  # .item(): the host waits for the GPU
        sync()
    return tokens, time.perf_counter() - t0


def step_model(model_name: str, work: str) -> dict:
    import torch

    import gptoss_edu as ge
    from gptoss_edu.checkpoint import write_synthetic

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    backends = ["cuda", "numba_cuda"] if cuda else ["numba"]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    cfg = ge.ModelConfig.gpt_oss_20b() if model_name == "20b" else ge.ModelConfig.tiny()
    path = Path(work) / f"synthetic-{model_name}"
    result = {"device": device, "model": model_name}
    t0 = time.perf_counter()
    if not path.exists():
        write_synthetic(path, cfg, progress=False)
    result["write_s"] = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    prompts = {n: torch.randint(0, cfg.vocab_size, (n,), generator=g) for n in PROMPTS}
    runs = {}
    first_tokens = None
    for backend in backends:
        run = {}
        try:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            model = ge.load_checkpoint(
                path,
                dtype=torch.bfloat16,
                device=device,
                experts="mxfp4",
                backend=backend,
                progress=False,
            )
            sync()
            run["load_s"] = time.perf_counter() - t0
            with torch.no_grad():
                model(prompts[16].to(device), cache=model.new_cache())  # warm-up: compile, JIT
                sync()
                for n in PROMPTS:
                    ids = prompts[n].to(device)
                    t0 = time.perf_counter()
                    model(ids, cache=model.new_cache())
                    sync()
                    run[f"prefill_{n}_s"] = time.perf_counter() - t0
            tokens, secs = _generate(model, prompts[16].to(device), DECODE_TOKENS, sync)
            run["decode_tok_s"] = (DECODE_TOKENS - 1) / secs
            run["tokens"] = tokens
            if first_tokens is None:
                first_tokens = tokens
            run["same_tokens_as_first_backend"] = tokens == first_tokens
            if cuda:
                run["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
            del model
        except Exception as e:  # noqa: BLE001 - report it and go on with the next back end
            run["error"] = f"{type(e).__name__}: {e}"[:600]
        runs[backend] = run
        result["backends"] = runs
        print("RESULT " + json.dumps(result), flush=True)  # so far: kept if a later one hangs
    return result


def step_nccl() -> dict:
    import torch
    import torch.distributed as dist

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU: NCCL needs one"}
    if not dist.is_nccl_available():
        return {"skipped": f"torch {torch.__version__} has no NCCL"}
    import gptoss_edu as ge
    from gptoss_edu.distributed import ExpertParallelMLP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1")
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        model, _ = ge.load_tiny()
        block = model.block[0].mlp.to("cuda")  # the shipped tiny model's first MoE block
        x = torch.randn(64, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
        x = x.to("cuda", next(block.parameters()).dtype)
        with torch.no_grad():
            want = block(x)
            got = ExpertParallelMLP(block, 0, 1)(x)  # dispatch and combine through NCCL
        torch.cuda.synchronize()
        return {
            "world_size": 1,
            "max_abs_diff": float((want.float() - got.float()).abs().max()),
            "max_abs": float(want.float().abs().max()),
        }
    finally:
        dist.destroy_process_group()


STEPS = {
    "machine": (60, step_machine),
    "model": (420, step_model),
    "nccl": (90, step_nccl),
}


def child(name: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    result = STEPS[name][1](*args)
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- parent


LOG = "gpu_session.log"  # every step's output, one file: the device tool brings back 8 at most


def run_step(name: str, cmd: list[str], timeout: float, out: Path, env: dict) -> dict:
    """Run one step; its output is appended to out/LOG and its last line kept in "last_line"."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        partial = e.stdout or ""
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        text += f"\n(timed out after {timeout:.0f} s)"
        rc = "timeout"
    lines = [x for x in text.splitlines() if x.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT ") :]) if lines else {}
    result["rc"] = rc
    result["s"] = round(time.perf_counter() - t0, 1)
    if rc != 0 and not lines:
        result["error"] = text.strip()[-800:]
    body = [x for x in text.strip().splitlines() if not x.startswith("RESULT ")]
    result["last_line"] = body[-1] if body else ""
    with open(out / LOG, "a") as f:
        f.write(f"===== {name}: rc {rc}, {result['s']} s: {' '.join(cmd)}\n{text.rstrip()}\n\n")
    print(f"[{name}] {json.dumps(result)[:400]}", flush=True)
    return result


def render(run: dict) -> str:
    m = run["steps"].get("machine", {})
    lines = [
        "# One GPU session: build, GPU tests, kernels, 20b, NCCL",
        "",
        f"Date: {run['date']}. Command: `python3 benchmarks/gpu_session.py --out $OUT"
        + ("" if run["model"] == "20b" else f" --model {run['model']}")
        + "` on the lent machine, from the repository root.",
        f"Machine: {m.get('gpu') or 'no CUDA GPU'}; {m.get('nvidia-smi') or 'no nvidia-smi'}; "
        f"{m.get('cpus')} CPUs; Python {m.get('python')}, torch {m.get('torch')} "
        f"(CUDA {m.get('torch_cuda')}), numba {m.get('numba')}, numba-cuda "
        f"{m.get('numba_cuda')}; nvcc: {m.get('nvcc') or 'none'}.",
        "",
        "| step | seconds | outcome |",
        "|---|---:|---|",
    ]
    for name, r in run["steps"].items():
        if r.get("skipped"):
            outcome = f"skipped: {r['skipped']}"
        elif r.get("rc") == 0:
            outcome = "ok"
        else:
            outcome = f"FAILED ({r.get('rc')}): see {LOG}"
        lines.append(f"| {name} | {r.get('s', '?')} | {outcome} |")
    tests = run["steps"].get("tests", {})
    if "summary" in tests:
        lines += ["", f"GPU tests: {tests['summary']}"]
    model = run["steps"].get("model", {})
    if model.get("backends"):
        lines += [
            "",
            f"The {model['model']}-shaped synthetic checkpoint on {model['device']} (bf16, packed "
            f"MXFP4 experts; written in {model.get('write_s', 0):.0f} s). Prefill times are one "
            f"forward pass on a fresh cache after a warm-up pass; decode is greedy, "
            f"{DECODE_TOKENS - 1} steps after a 16-token prompt, each step waiting for its token.",
            "",
            "| back end | load s | prefill 16 s | prefill 64 s | decode tok/s | peak GPU GiB | "
            "same tokens |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for name, r in model["backends"].items():
            if "error" in r:
                lines.append(f"| {name} | error: {r['error'][:200]} | | | | | |")
                continue
            lines.append(
                f"| {name} | {r['load_s']:.1f} | {r['prefill_16_s']:.3f} | "
                f"{r['prefill_64_s']:.3f} | {r['decode_tok_s']:.1f} | "
                f"{r.get('peak_gpu_gib', float('nan')):.1f} | "
                f"{r['same_tokens_as_first_backend']} |"
            )
    nccl = run["steps"].get("nccl", {})
    if "max_abs_diff" in nccl:
        lines += [
            "",
            f"NCCL, one process: ExpertParallelMLP vs MLPBlock on the GPU, max |diff| "
            f"{nccl['max_abs_diff']:.3g} for outputs up to {nccl['max_abs']:.3g}.",
        ]
    return "\n".join(lines) + "\n"


def _write(run: dict, out: Path) -> None:
    """The JSON and the page as they stand: written after every step, so a run cut short by
    the machine's limit still brings back what it measured."""
    (out / "gpu_session.json").write_text(json.dumps(run, indent=1) + "\n")
    (out / "gpu_session.md").write_text(render(run))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the page, JSON and logs")
    ap.add_argument("--model", choices=("20b", "tiny"), default="20b")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu_session"), help="scratch folder")
    ap.add_argument("--skip", nargs="*", default=[], help="steps to leave out")
    ap.add_argument(
        "--budget",
        type=float,
        default=540,
        help="seconds for the whole run (default 540: inside the device tool's 600 s a command); "
        "each step gets at most what is left",
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / LOG).write_text("")
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": args.model,
        "steps": {},
    }
    plan = [
        ("machine", me + ["machine"], STEPS["machine"][0]),
        ("build", [sys.executable, "-m", "gptoss_edu.kernels.cuda"], 300),
        (
            "tests",
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-m",
                "gpu",
                "tests/test_kernels_cuda.py",
                "tests/test_routing_ties.py",
            ],
            180,
        ),
        ("kernels", [sys.executable, "benchmarks/kernels_gpu.py"], 180),
        ("nccl", me + ["nccl"], STEPS["nccl"][0]),
        ("model", me + ["model", args.model, str(args.work)], STEPS["model"][0]),
    ]
    start = time.perf_counter()
    for name, cmd, timeout in plan:
        left = args.budget - (time.perf_counter() - start)
        if name in args.skip or left < 10:
            run["steps"][name] = {"skipped": "--skip" if name in args.skip else "out of time"}
            _write(run, args.out)
            continue
        r = run_step(name, cmd, min(timeout, left), args.out, env)
        if name == "build" and r["rc"] == 2:  # a CPU-only torch: nothing to build
            r["skipped"] = r["last_line"] or "no CUDA build of torch"
            r.pop("error", None)
        if name == "tests":
            r["summary"] = r["last_line"]
            if r["rc"] in (0, 5) and " passed" not in r["summary"]:  # all skipped or deselected
                r["skipped"] = "no GPU test ran: " + r["summary"]
        if name == "kernels":
            made = ROOT / "benchmarks" / "results" / "kernels_gpu.md"
            if r["rc"] == 0 and made.exists():
                (args.out / "kernels_gpu.md").write_text(made.read_text())
            elif "needs a CUDA GPU" in r.get("error", ""):
                r["skipped"] = "no CUDA GPU"
        run["steps"][name] = r
        _write(run, args.out)
    print(render(run))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
