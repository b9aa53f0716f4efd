"""`python -m gptoss_edu`: the package from a shell.

python -m gptoss_edu info 20b                  # config, parameter counts, memory needs
python -m gptoss_edu info path/to/checkpoint   # the same for a checkpoint directory
python -m gptoss_edu generate --tiny --prompt "def "
python -m gptoss_edu chat --tiny
"""

from __future__ import annotations

import argparse
import sys

PRESETS = {"20b": "gpt_oss_20b", "120b": "gpt_oss_120b", "tiny": "tiny"}


def _config_for(target: str):
    from .config import ModelConfig

    key = target.lower().removeprefix("gpt-oss-").removeprefix("gpt_oss_")
    if key in PRESETS:
        return getattr(ModelConfig, PRESETS[key])(), f"preset {key}"
    from .checkpoint import find_checkpoint

    found = find_checkpoint(target)
    return ModelConfig.from_json(
        found.config_path
    ), f"{found.layout} checkpoint at {found.directory}"


def info_text(target: str) -> str:
    from .params import count_parameters, format_bytes, kv_cache_bytes

    cfg, source = _config_for(target)
    p = count_parameters(cfg)
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
        f"  {'MXFP4 experts + bf16':<24} {p.checkpoint_bytes:>18,} B  ({format_bytes(p.checkpoint_bytes)})",
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


def _load(args):
    import torch

    if getattr(args, "tiny", False) or not args.checkpoint:
        from .tiny import load_tiny

        return load_tiny()
    from .checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, dtype=torch.bfloat16, progress=True)
    from .tokenizer import o200k_harmony

    return model, o200k_harmony()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m gptoss_edu", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="config, parameter counts and memory of a model")
    p_info.add_argument("target", help="20b, 120b, tiny, or a checkpoint directory")
    p_gen = sub.add_parser("generate", help="continue a text prompt")
    p_gen.add_argument(
        "--checkpoint", help="checkpoint directory (default: the shipped tiny model)"
    )
    p_gen.add_argument("--tiny", action="store_true", help="use the shipped tiny model")
    p_gen.add_argument("--prompt", required=True)
    p_gen.add_argument("--max-new-tokens", type=int, default=64)
    p_gen.add_argument("--temperature", type=float, default=0.8)
    p_gen.add_argument("--top-p", type=float, default=0.95)
    p_gen.add_argument("--seed", type=int, default=None)
    sub.add_parser("chat", help="a harmony chat loop", add_help=False)
    sub.add_parser("train", help="train a gpt-oss on text", add_help=False)
    sub.add_parser("bench", help="run the benchmarks", add_help=False)

    if argv and argv[0] in ("chat", "train"):
        import importlib

        module = importlib.import_module(
            {"chat": ".conversation", "train": ".train"}[argv[0]], __package__
        )
        return int(module.cli(argv[1:]) or 0)
    if argv and argv[0] == "bench":
        print("benchmarks live in benchmarks/ of the repository: python benchmarks/kernels.py")
        return 0
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info_text(args.target))
        elif args.command == "generate":
            from .generation import stream_text

            model, tok = _load(args)
            print(args.prompt, end="")
            stream_text(
                model,
                tok,
                args.prompt,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed,
            )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
