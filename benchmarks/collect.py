"""Gather every benchmark's result page (`benchmarks/results/*.md`) into `benchmarks/RESULTS.md`.

Each benchmark script writes its own page with the machine, the command and the date; this
script only concatenates them, so RESULTS.md never drifts from what the scripts printed.

    python benchmarks/collect.py            # rewrite RESULTS.md
    python benchmarks/collect.py --check    # exit 1 if RESULTS.md is out of date
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["kernels", "memory_20b", "train_tiny", "tokenizer"]  # the rest follow, by name

HEADER = """\
# Benchmark results

Speed and memory figures of gptoss-edu, each measured by the script named in its section, on the
machine and date written there. Ratios are measured side by side in one run; absolute times on
shared machines indicate scale only. This file is generated: edit `benchmarks/results/*.md` (or
re-run a benchmark) and then `python benchmarks/collect.py`.

GPU figures come from one command, `python3 benchmarks/gpu_session.py --out DIR`, which builds
the CUDA extension, runs the GPU tests, the GPU kernel benchmark, gpt-oss-20b on the GPU and NCCL
in under 10 minutes; it writes `gpu_session.md` and `kernels_gpu.md` into DIR, to be copied to
`benchmarks/results/`. No GPU has run it yet: every figure below is from a CPU.
"""


def render() -> str:
    pages = sorted((HERE / "results").glob("*.md"))
    rank = {name: i for i, name in enumerate(ORDER)}
    pages.sort(key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))
    parts = [HEADER]
    for page in pages:
        text = page.read_text().strip()
        # Each page starts with its own "# Title"; demote it to a section of this file.
        if text.startswith("# "):
            text = "#" + text
        parts.append(f"{text}\n\n(from `benchmarks/results/{page.name}`)\n")
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that RESULTS.md is current"
    )
    args = parser.parse_args(argv)
    target = HERE / "RESULTS.md"
    text = render()
    if args.check:
        if not target.exists() or target.read_text() != text:
            print("benchmarks/RESULTS.md is out of date: run python benchmarks/collect.py")
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
