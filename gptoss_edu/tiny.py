"""The shipped tiny gpt-oss models.

  "tiny"      `ModelConfig.tiny()` trained on the Python standard library (chapters 13 and 14;
              made by `python -m gptoss_edu train`, recorded in assets/tiny/TRAINING.md).
  "reasoner"  "tiny" fine-tuned to reason in harmony at low, medium and high effort on integer
              arithmetic and to call a calculator (chapter 15; made by
              `python -m gptoss_edu posttrain`, recorded in assets/reasoner/TRAINING.md). Its
              tokenizer is tiny's with numbers split into single digits.

    model, tok = ge.load_tiny()                     # or ge.load_tiny("reasoner")
    ids = tok.encode("def ")
    new = ge.generate(model, ids, max_new_tokens=40, temperature=0.8, seed=0)
    print(tok.decode(ids + new))

The checkpoint is in OpenAI's "original" layout (config.json + model.safetensors with MXFP4
expert weights), and it loads through the same `load_checkpoint` as a real gpt-oss.
"""

from __future__ import annotations

from pathlib import Path

import torch

ASSETS = Path(__file__).parent / "assets"
TINY_DIR = ASSETS / "tiny"
TINY_MODELS = ("tiny", "reasoner")
TOKENIZER_FILE = "tokenizer.tiktoken"


def _check_name(name, where: str) -> str:
    if name in ("mxfp4", "dequantized"):
        raise ValueError(
            f"{where}: the first argument is the model's name, {TINY_MODELS}; got {name!r}, "
            f"which is an experts mode: write {where}(experts={name!r})"
        )
    if not isinstance(name, str) or name not in TINY_MODELS:
        raise ValueError(f"{where}: name={name!r}; expected one of {TINY_MODELS}")
    return name


def tiny_path(name: str = "tiny") -> Path:
    """The directory of a shipped checkpoint (config.json, model.safetensors, tokenizer)."""
    directory = ASSETS / _check_name(name, "tiny_path")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"the {name} model is missing: {directory / 'config.json'} does not exist; "
            f"reinstall gptoss-edu, or rebuild it with the command in assets/{name}/TRAINING.md"
        )
    return directory


def load_tiny_tokenizer(name: str = "tiny"):
    """The BPE tokenizer a shipped model was trained with (4075 tokens + 21 harmony specials;
    the reasoner's splits numbers into single digits)."""
    from .tokenizer.bpe import BPETokenizer

    path = tiny_path(name) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the {name} model's tokenizer is missing: {path} does not exist")
    return BPETokenizer.load(path)


def load_tiny(name: str = "tiny", experts: str | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of a shipped tiny gpt-oss ("tiny" or "reasoner"), in eval mode on
    the CPU.

    `experts` is passed on to `load_checkpoint` ("mxfp4" keeps the experts packed,
    "dequantized" decodes them to `dtype`); None uses load_checkpoint's default. float32 is the
    default dtype here: the model is small and float32 makes comparisons in the book exact.
    """
    from .checkpoint import load_checkpoint

    kwargs = {"dtype": dtype}
    if experts is not None:
        kwargs["experts"] = experts
    model = load_checkpoint(tiny_path(_check_name(name, "load_tiny")), **kwargs)
    return model, load_tiny_tokenizer(name)


__all__ = ["TINY_DIR", "TINY_MODELS", "load_tiny", "load_tiny_tokenizer", "tiny_path"]
