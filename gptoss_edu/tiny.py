"""The shipped tiny gpt-oss: `ModelConfig.tiny()` trained on the Python standard library
(chapters 13 and 14; made by `python -m gptoss_edu train`, recorded in assets/tiny/TRAINING.md).

    model, tok = ge.load_tiny()
    ids = tok.encode("def ")
    new = ge.generate(model, ids, max_new_tokens=40, temperature=0.8, seed=0)
    print(tok.decode(ids + new))

The checkpoint is in OpenAI's "original" layout (config.json + model.safetensors with MXFP4
expert weights), and it loads through the same `load_checkpoint` as a real gpt-oss.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_DIR = Path(__file__).parent / "assets" / "tiny"
TOKENIZER_FILE = "tokenizer.tiktoken"


def tiny_path() -> Path:
    """The directory of the shipped checkpoint (config.json, model.safetensors, tokenizer)."""
    if not (TINY_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the tiny model is missing: {TINY_DIR / 'config.json'} does not exist; reinstall "
            "gptoss-edu, or rebuild it with the command in assets/tiny/TRAINING.md"
        )
    return TINY_DIR


def load_tiny_tokenizer():
    """The BPE tokenizer the tiny model was trained with (4075 tokens + 21 harmony specials)."""
    from .tokenizer.bpe import BPETokenizer

    path = tiny_path() / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the tiny model's tokenizer is missing: {path} does not exist")
    return BPETokenizer.load(path)


def load_tiny(experts: str | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of the shipped tiny gpt-oss, in eval mode on the CPU.

    `experts` is passed on to `load_checkpoint` ("mxfp4" keeps the experts packed,
    "dequantized" decodes them to `dtype`); None uses load_checkpoint's default. float32 is the
    default dtype here: the model is small and float32 makes comparisons in the book exact.
    """
    from .checkpoint import load_checkpoint

    kwargs = {"dtype": dtype}
    if experts is not None:
        kwargs["experts"] = experts
    model = load_checkpoint(tiny_path(), **kwargs)
    return model, load_tiny_tokenizer()


__all__ = ["TINY_DIR", "load_tiny", "load_tiny_tokenizer", "tiny_path"]
