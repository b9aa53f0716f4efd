"""gptoss-edu: OpenAI's gpt-oss built step by step in PyTorch, for reading and for running.

    import gptoss_edu as ge
    model = ge.GptOss(ge.ModelConfig.tiny())
    logits = model(torch.tensor([1, 2, 3]))

Plain imports, so "go to definition" works on every name below. Importing the package imports
torch and the package's own modules, nothing heavier: numba (the kernels' back ends), tiktoken,
transformers, matplotlib and ipywidgets are imported inside the functions that need them.
"""

from gptoss_edu import (
    checkpoint,
    config,
    distributed,
    evaluate,
    exercises,
    harmony,
    kernels,
    model,
    mxfp4,
    params,
    posttrain,
    tokenizer,
    tools,
    train,
    viz,
)
from gptoss_edu.checkpoint import load_checkpoint, save_checkpoint
from gptoss_edu.config import ModelConfig
from gptoss_edu.conversation import chat
from gptoss_edu.generation import generate
from gptoss_edu.kernels.cpus import fit_torch_threads as _fit_torch_threads
from gptoss_edu.model.attention import KVCache
from gptoss_edu.model.recorder import Recorder
from gptoss_edu.model.transformer import GptOss
from gptoss_edu.params import count_parameters
from gptoss_edu.tiny import load_tiny

__version__ = "0.1.0"

# In a container whose CPU quota is below the cores torch sees (Binder, Kubernetes), torch would
# run more threads than it has CPUs for; fit its count to the quota (kernels/cpus.py).
_fit_torch_threads()

__all__ = [
    "GptOss",
    "KVCache",
    "ModelConfig",
    "Recorder",
    "__version__",
    "chat",
    "checkpoint",
    "config",
    "count_parameters",
    "distributed",
    "evaluate",
    "exercises",
    "generate",
    "harmony",
    "kernels",
    "load_checkpoint",
    "load_tiny",
    "model",
    "mxfp4",
    "params",
    "posttrain",
    "save_checkpoint",
    "tokenizer",
    "tools",
    "train",
    "viz",
]
