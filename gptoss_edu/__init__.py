"""gptoss-edu: OpenAI's gpt-oss built step by step in PyTorch, for reading and for running.

    import gptoss_edu as ge
    model = ge.GptOss(ge.ModelConfig.tiny())
    logits = model(torch.tensor([1, 2, 3]))

Submodules load on first use, so `import gptoss_edu` stays fast (numba and the tokenizer
are only imported by the chapters that need them).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "ModelConfig": ("gptoss_edu.config", "ModelConfig"),
    "GptOss": ("gptoss_edu.model.transformer", "GptOss"),
    "KVCache": ("gptoss_edu.model.attention", "KVCache"),
    "Recorder": ("gptoss_edu.model.recorder", "Recorder"),
    "load_checkpoint": ("gptoss_edu.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("gptoss_edu.checkpoint", "save_checkpoint"),
    "generate": ("gptoss_edu.generation", "generate"),
    "count_parameters": ("gptoss_edu.params", "count_parameters"),
    "load_tiny": ("gptoss_edu.tiny", "load_tiny"),
    "chat": ("gptoss_edu.conversation", "chat"),
    "config": ("gptoss_edu.config", None),
    "model": ("gptoss_edu.model", None),
    "checkpoint": ("gptoss_edu.checkpoint", None),
    "params": ("gptoss_edu.params", None),
    "mxfp4": ("gptoss_edu.mxfp4", None),
    "kernels": ("gptoss_edu.kernels", None),
    "tokenizer": ("gptoss_edu.tokenizer", None),
    "harmony": ("gptoss_edu.tokenizer.harmony", None),
    "exercises": ("gptoss_edu.exercises", None),
    "viz": ("gptoss_edu.viz", None),
    "train": ("gptoss_edu.train", None),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gptoss_edu' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return __all__
