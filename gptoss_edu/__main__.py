"""`python -m gptoss_edu`: the package from a shell (the commands each chapter mentions).

python -m gptoss_edu info 20b                  # config, parameter counts, memory needs
python -m gptoss_edu info path/to/checkpoint   # the same for a checkpoint directory
python -m gptoss_edu generate --tiny --prompt "def "
python -m gptoss_edu generate --checkpoint DIR --prompt "..."   # DIR's own tokenizer if it has one
python -m gptoss_edu chat --tiny
python -m gptoss_edu train --out DIR
python -m gptoss_edu posttrain --out DIR    # the chapter-15 reasoner (about 15 minutes)
python -m gptoss_edu evaluate --tiny --n 20    # accuracy per reasoning effort (chapter 16)
torchrun --standalone --nproc-per-node=2 -m gptoss_edu generate --tiny --expert-parallel --prompt "def "
python -m gptoss_edu bench kernels             # runs benchmarks/kernels.py from a repository checkout

Every bad argument ends with `error: ...` on stderr and exit code 2, before any model loads:
the argument types below check ranges, and the commands turn the loaders' FileNotFoundError /
ValueError (CheckpointError is one) into that message.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

PRESETS = {"20b": "gpt_oss_20b", "120b": "gpt_oss_120b", "tiny": "tiny"}
BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


# ---------------------------------------------------------------------------- argument types
def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}; found {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}; found {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(text, int, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; found {value}")
    return value


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; found {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text, float, "a finite number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; found {value}")
    return value


def nonneg_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text, float, "a finite number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0; found {value}")
    return value


def share_float(text: str) -> float:
    """argparse type: a number in [0, 1] (a share of a batch)."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1]; found {value}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a number in (0, 1] (top-p)."""
    value = _number(text, float, "a number in (0, 1]")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1]; found {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a sampling seed, an integer in [0, 2**64) (what torch can seed with)."""
    value = _number(text, int, "an integer in [0, 2**64)")
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**64); found {value}")
    return value


def new_directory(text: str) -> Path:
    """argparse type: a directory to write into (may exist; must not be a file)."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a directory to write into")
    return path


def existing_path(text: str) -> Path:
    """argparse type: a file or directory that exists."""
    path = Path(text).expanduser()
    from .checkpoint import recover

    if not recover(path).exists():
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


# ---------------------------------------------------------------------------- info
def _config_for(target: str):
    from .config import ModelConfig

    key = target.lower().removeprefix("gpt-oss-").removeprefix("gpt_oss_")
    if key in PRESETS:
        return getattr(ModelConfig, PRESETS[key])(), f"preset {key}"
    from .checkpoint import find_checkpoint

    found = find_checkpoint(target)
    config = ModelConfig.from_json(found.config_path)
    return config, f"{found.layout} checkpoint at {found.directory}"


def info_text(target: str) -> str:
    from .params import count_parameters, format_bytes, kv_cache_bytes

    cfg, source = _config_for(target)
    p = count_parameters(cfg)
    ckpt = format_bytes(p.checkpoint_bytes)
    lines = [f"gpt-oss model: {source}", "", "config:"]
    lines += [f"  {k:<24} {v}" for k, v in cfg.to_dict("openai").items()]
    lines += [
        f"  {'max_context_length':<24} {cfg.max_context_length}",
        "",
        "parameters:",
        f"  {'total':<24} {p.total:>18,}",
        f"  {'active per token':<24} {p.active:>18,}",
        f"  {'embedding':<24} {p.embedding:>18,}",
        f"  {'unembedding':<24} {p.unembedding:>18,}",
        f"  {'attention (all layers)':<24} {p.attention:>18,}",
        f"  {'router (all layers)':<24} {p.router:>18,}",
        f"  {'experts (all layers)':<24} {p.experts:>18,}",
        "",
        "memory for the weights:",
        f"  {'MXFP4 experts + bf16':<24} {p.checkpoint_bytes:>18,} B  ({ckpt})",
        f"  {'all bf16':<24} {p.bf16_bytes:>18,} B  ({format_bytes(p.bf16_bytes)})",
        f"  {'all float32':<24} {p.fp32_bytes:>18,} B  ({format_bytes(p.fp32_bytes)})",
        "",
        "KV cache (bf16, sliding layers keep only their window):",
    ]
    for n in (4096, 32768, cfg.max_context_length):
        if n <= cfg.max_context_length:
            b = kv_cache_bytes(cfg, n)
            lines.append(f"  {n:>7} tokens {b:>18,} B  ({format_bytes(b)})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- model + tokenizer
def load_model_and_tokenizer(checkpoint=None, tiny: bool = False):
    """The one loader of (model, tokenizer) behind `generate` and `chat`.

    --tiny (or no --checkpoint): the shipped tiny model and its tokenizer. --checkpoint DIR:
    the checkpoint in bf16 with its own tokenizer.tiktoken when it ships one, else o200k
    (`gptoss_edu.checkpoint.load_model_and_tokenizer`).
    """
    from .checkpoint import load_model_and_tokenizer as load

    if tiny or checkpoint is None:
        return load(None)
    return load(checkpoint, progress=None)


def warm_backend(model) -> str | None:
    """Resolve the expert kernels' back end now, so that what it says (one warning, on stderr)
    comes before the streamed text, not in the middle of it. None for dense experts."""
    from . import mxfp4

    blocks = getattr(model, "block", None)
    backend = getattr(blocks[0].mlp, "backend", None) if blocks else None
    if backend is None:  # dense experts (or not a GptOss): plain torch, nothing to say
        return None
    device = model.embedding.weight.device.type
    name = mxfp4._backend_name(backend, device)  # says which back end runs, once per process
    sys.stderr.flush()
    return name


# ---------------------------------------------------------------------------- bench
def bench(argv: list[str]) -> int:
    """Run benchmarks/NAME.py of a repository checkout (the benchmarks are not installed)."""
    names = sorted(
        p.stem for p in BENCHMARKS_DIR.glob("*.py") if p.stem not in ("collect", "__init__")
    )
    if not BENCHMARKS_DIR.is_dir() or not names:
        print(
            "error: the benchmarks are scripts in the repository's benchmarks/ folder, which a pip "
            "install does not include; clone the repository and run e.g. "
            "`python benchmarks/kernels.py`",
            file=sys.stderr,
        )
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: python -m gptoss_edu bench NAME [ARGS...]\n\nNAME is one of: "
            + ", ".join(names)
        )
        print(f"(scripts in {BENCHMARKS_DIR}; each writes benchmarks/results/NAME.md)")
        return 0 if argv else 2
    if argv[0] not in names:
        print(
            f"error: no benchmark {argv[0]!r}; expected one of: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    return subprocess.call([sys.executable, str(BENCHMARKS_DIR / f"{argv[0]}.py"), *argv[1:]])


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gptoss_edu", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="config, parameter counts and memory of a model")
    p_info.add_argument("target", help="20b, 120b, tiny, or a checkpoint directory")
    p_gen = sub.add_parser(
        "generate",
        help="continue a text prompt",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p_gen.add_mutually_exclusive_group()
    src.add_argument(
        "--checkpoint",
        type=existing_path,
        help="checkpoint directory (default: the shipped tiny model)",
    )
    src.add_argument("--tiny", action="store_true", help="use the shipped tiny model")
    p_gen.add_argument("--prompt", required=True, help="the text to continue")
    p_gen.add_argument("--max-new-tokens", type=nonneg_int, default=64, help="tokens to add")
    p_gen.add_argument(
        "--temperature", type=nonneg_float, default=0.8, help="0 = greedy; higher = more random"
    )
    p_gen.add_argument("--top-p", type=unit_float, default=0.95, help="nucleus sampling mass")
    p_gen.add_argument("--seed", type=seed_int, default=None, help="sampling seed")
    p_gen.add_argument(
        "--expert-parallel",
        action="store_true",
        help="spread the experts over the processes of torchrun (chapter 17): "
        "torchrun --standalone --nproc-per-node=N -m gptoss_edu generate --expert-parallel ...",
    )
    sub.add_parser("chat", help="a harmony chat loop (see chat --help)", add_help=False)
    sub.add_parser("train", help="train a gpt-oss on text (see train --help)", add_help=False)
    sub.add_parser(
        "posttrain",
        help="fine-tune the tiny model into the chapter-15 reasoner (see posttrain --help)",
        add_help=False,
    )
    sub.add_parser(
        "evaluate",
        help="accuracy per reasoning effort on held-out arithmetic (see evaluate --help)",
        add_help=False,
    )
    sub.add_parser("bench", help="run a benchmark script of the repository", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("chat", "train", "posttrain", "evaluate"):
        import importlib

        modules = {
            "chat": ".conversation",
            "train": ".train",
            "posttrain": ".posttrain.reasoner",
            "evaluate": ".evaluate",
        }
        module = importlib.import_module(modules[argv[0]], __package__)
        return int(module.cli(argv[1:]) or 0)
    if argv and argv[0] == "bench":
        return bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            print(info_text(args.target))
        elif args.command == "generate":
            from .generation import stream_text

            if args.expert_parallel:
                from . import distributed

                rank, _ = distributed.init()
                if rank != 0:  # rank 0 speaks for all: the others print nothing
                    import os
                    import warnings

                    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
                    warnings.simplefilter("ignore")
                args.seed = distributed.shared_seed(args.seed)
            if args.expert_parallel:  # each rank reads only its own experts from the file
                ckpt = None if args.tiny else args.checkpoint
                model, tok = distributed.load_model_and_tokenizer(ckpt)
            else:
                model, tok = load_model_and_tokenizer(args.checkpoint, args.tiny)
            warm_backend(model)
            print(args.prompt, end="", flush=True)
            stream_text(
                model,
                tok,
                args.prompt,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed,
            )
            if args.expert_parallel:
                import torch.distributed as dist

                dist.destroy_process_group()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not getattr(args, "expert_parallel", False):
            raise
        print(f"error: {e}", file=sys.stderr)  # distributed set-up problems, said plainly
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
