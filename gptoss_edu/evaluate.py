"""An evaluation harness: how to pilot a model before adopting it (chapter 16).

Runs a task set (the held-out arithmetic problems of chapter 15, per operation and reasoning
effort) against any model and tokenizer the package loads, with given sampling settings and
seed, and reports per (operation, effort): accuracy with a Wilson 95% confidence interval, the
mean number of analysis and final tokens, latency, and peak memory; as a table and as JSON.

    report = evaluate(model, tok, heldout_problems(seed=0, n=50), efforts=("low", "high"))
    print(report.table())
    report.to_json()

From a shell:

    python -m gptoss_edu.evaluate --tiny --n 20 --effort low high --json out.json
    python -m gptoss_edu.evaluate --checkpoint gpt-oss-20b/original --n 20 --tools --tool-n 10

An answer is right when the final channel's text, stripped of surrounding whitespace, is the
integer result written as Python writes it ("-42"); no final message counts as wrong. With
`use_tools=True` every question goes through the agent loop of gptoss_edu/tools.py (the
calculator declared in the developer message), and the table counts the calls.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from gptoss_edu import harmony
from gptoss_edu.posttrain.data import EFFORTS, Problem, heldout_problems

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% with the default z).

    Unlike p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at k = 0 or k = n,
    which matters for the small n of a pilot: 7/10 gives (0.397, 0.892), 0/5 gives (0, 0.435).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"wilson_interval: n={n!r}; expected an int >= 1 (the number of tasks)")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: k={k!r}; expected an int in 0..n={n}")
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def _group(p: Problem) -> str:
    return f"{p.op} (tool)" if p.needs_tool else p.op


@dataclass
class TaskResult:
    question: str
    group: str  # "+", "-", "*" or "* (tool)"
    effort: str
    expected: str
    final: str | None
    correct: bool
    analysis_tokens: int
    final_tokens: int
    tool_calls: int
    seconds: float


@dataclass
class Row:
    group: str
    effort: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_analysis_tokens: float
    mean_final_tokens: float
    mean_seconds: float
    tool_calls: int


@dataclass
class Report:
    rows: list[Row]
    results: list[TaskResult]
    settings: dict
    peak_memory_mb: float
    memory_kind: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def row(self, group: str, effort: str) -> Row:
        for r in self.rows:
            if (r.group, r.effort) == (group, effort):
                return r
        raise KeyError(
            f"no row for ({group!r}, {effort!r}); rows: {[(r.group, r.effort) for r in self.rows]}"
        )

    def table(self) -> str:
        """The rows as a Markdown table."""
        lines = [
            "| op | effort | n | accuracy | 95% CI (Wilson) | analysis tokens | final tokens "
            "| seconds/task | tool calls |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.group} | {r.effort} | {r.n} | {r.accuracy:.1%} | "
                f"[{r.ci_low:.1%}, {r.ci_high:.1%}] | {r.mean_analysis_tokens:.1f} | "
                f"{r.mean_final_tokens:.1f} | {r.mean_seconds:.3f} | {r.tool_calls} |"
            )
        lines.append(f"\nPeak memory: {self.peak_memory_mb:.0f} MB ({self.memory_kind}).")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "settings": self.settings,
            "rows": [asdict(r) for r in self.rows],
            "results": [asdict(t) for t in self.results],
            "peak_memory_mb": self.peak_memory_mb,
            "memory_kind": self.memory_kind,
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _count(tokenizer, messages, channel: str) -> int:
    return sum(
        len(tokenizer.encode_ordinary(m.text))
        for m in messages
        if m.role == "assistant" and m.channel == channel
    )


def _memory(model) -> tuple[float, str]:
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated"
    # ru_maxrss is in KiB on Linux: the process's peak, including what it did before
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rss, "peak RSS of the whole process since it started (CPU)"


def evaluate(
    model,
    tokenizer,
    problems: Sequence[Problem],
    efforts: Sequence[str] = EFFORTS,
    *,
    temperature: float = 0.0,
    seed: int = 0,
    max_new_tokens: int = 512,
    use_tools: bool = False,
    max_calls: int = 3,
    progress: Callable[[str], object] | None = None,
) -> Report:
    """Ask every problem at every effort; return a Report (see the module docstring).

    Task i at effort e is sampled with seed `seed * 1_000_003 + i` (the same for every effort),
    so a run is reproducible and the efforts see the same random draws.
    """
    from gptoss_edu.conversation import chat
    from gptoss_edu.generation import check_sampling
    from gptoss_edu.tools import run_agent

    problems = list(problems)
    if not problems:
        raise ValueError("evaluate: no problems; give e.g. heldout_problems(seed=0, n=20)")
    for i, p in enumerate(problems):
        if not isinstance(p, Problem):
            raise TypeError(f"evaluate: problems[{i}] is a {type(p).__name__}; expected Problem")
    efforts = list(efforts)
    for e in efforts:
        if e not in EFFORTS:
            raise ValueError(f"evaluate: effort {e!r}; expected some of {EFFORTS}")
    check_sampling(temperature, 1.0, None)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    results: list[TaskResult] = []
    start = time.perf_counter()
    for effort in efforts:
        for i, p in enumerate(problems):
            task_seed = seed * 1_000_003 + i
            t0 = time.perf_counter()
            if use_tools:
                run = run_agent(
                    model,
                    tokenizer,
                    p.question,
                    reasoning=effort,
                    max_calls=max_calls,
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    seed=task_seed,
                )
                messages, final, calls = run.messages, run.final, run.calls
            else:
                conv = [harmony.system(reasoning_effort=effort), harmony.user(p.question)]
                messages = chat(
                    model,
                    tokenizer,
                    conv,
                    reasoning=effort,
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    seed=task_seed,
                    stream=None,
                )
                final, calls = messages.final, 0
            seconds = time.perf_counter() - t0
            expected = str(p.answer)
            results.append(
                TaskResult(
                    question=p.question,
                    group=_group(p),
                    effort=effort,
                    expected=expected,
                    final=final,
                    correct=final is not None and final.strip() == expected,
                    analysis_tokens=_count(tokenizer, messages, "analysis"),
                    final_tokens=_count(tokenizer, messages, "final"),
                    tool_calls=calls,
                    seconds=seconds,
                )
            )
            if progress is not None:
                progress(f"{effort} {p.question} -> {final!r} (expected {expected})")
    rows = []
    groups = list(dict.fromkeys(_group(p) for p in problems))
    for effort in efforts:
        for g in groups + (["all"] if len(groups) > 1 else []):
            rs = [r for r in results if r.effort == effort and (g == "all" or r.group == g)]
            k, n = sum(r.correct for r in rs), len(rs)
            lo, hi = wilson_interval(k, n)
            rows.append(
                Row(
                    group=g,
                    effort=effort,
                    n=n,
                    correct=k,
                    accuracy=k / n,
                    ci_low=lo,
                    ci_high=hi,
                    mean_analysis_tokens=sum(r.analysis_tokens for r in rs) / n,
                    mean_final_tokens=sum(r.final_tokens for r in rs) / n,
                    mean_seconds=sum(r.seconds for r in rs) / n,
                    tool_calls=sum(r.tool_calls for r in rs),
                )
            )
    peak, kind = _memory(model)
    settings = {
        "temperature": temperature,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "use_tools": use_tools,
        "max_calls": max_calls,
        "efforts": efforts,
        "n_problems": len(problems),
        "device": str(device),
    }
    return Report(rows, results, settings, peak, kind, time.perf_counter() - start)


# ---- the command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from gptoss_edu.__main__ import nonneg_float, nonneg_int, positive_int

    ap = argparse.ArgumentParser(
        prog="python -m gptoss_edu.evaluate",
        description="Accuracy (Wilson 95%% CI), analysis/final tokens, latency and peak memory "
        "on the held-out arithmetic problems of chapter 15, per operation and effort.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--tiny", action="store_true", help="the tiny gpt-oss shipped with the package"
    )
    src.add_argument("--checkpoint", metavar="DIR", help="a gpt-oss checkpoint folder")
    ap.add_argument("--effort", nargs="+", choices=EFFORTS, default=list(EFFORTS))
    ap.add_argument("--ops", nargs="+", choices=("+", "-", "*"), default=["+", "-", "*"])
    ap.add_argument("--n", type=positive_int, default=20, help="held-out problems per operation")
    ap.add_argument(
        "--tool-n", type=nonneg_int, default=0, help="held-out `*` problems beyond range (tool)"
    )
    ap.add_argument("--split-seed", type=int, default=0, help="the seed of the data split")
    ap.add_argument("--temperature", type=nonneg_float, default=0.0)
    ap.add_argument("--seed", type=int, default=0, help="the sampling seed")
    ap.add_argument("--max-new-tokens", type=positive_int, default=512)
    ap.add_argument("--tools", action="store_true", help="run through the calculator agent loop")
    ap.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
    ap.add_argument("--verbose", action="store_true", help="print every question and answer")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gptoss_edu.__main__ import load_model_and_tokenizer

    try:
        model, tokenizer = load_model_and_tokenizer(args.checkpoint, tiny=args.tiny)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = [
        p
        for p in heldout_problems(args.split_seed, args.n, args.tool_n)
        if p.op in args.ops or p.needs_tool
    ]
    report = evaluate(
        model,
        tokenizer,
        problems,
        args.effort,
        temperature=args.temperature,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        use_tools=args.tools,
        progress=print if args.verbose else None,
    )
    report.settings["model"] = "tiny" if args.tiny else args.checkpoint
    report.settings["split_seed"] = args.split_seed
    print(report.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(), f, indent=1)
        print(f"wrote {args.json}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m gptoss_edu evaluate ...` (the package's command line calls this)."""
    return main(argv)


__all__ = ["Report", "Row", "TaskResult", "cli", "evaluate", "main", "wilson_interval"]

if __name__ == "__main__":
    sys.exit(main())
