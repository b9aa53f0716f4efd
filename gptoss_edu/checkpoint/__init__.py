"""Reading and writing gpt-oss checkpoints in both published layouts (chapters 7 and 12).

Two layouts exist for the same weights (chapter 12, "Two layouts"):

- OpenAI "original": one `model.safetensors` + a 16-key `config.json`; key names such as
  `block.3.attn.qkv.weight` that map one to one onto `GptOss`'s parameters.
- Hugging Face: `model.safetensors` or shards `model-0000K-of-0000M.safetensors` with
  `model.safetensors.index.json`, key names such as `model.layers.3.self_attn.q_proj.weight`.

In both, expert weights are MXFP4: `*.blocks` (uint8, two 4-bit codes per byte) and `*.scales`
(uint8 exponents), everything else bf16. The package, one job per module:

- layouts.py      the key specs of both layouts and the ONE original <-> HF name map;
- safetensors.py  the validating header parser, the memory-mapped reader, the streaming writer;
- atomic.py       the directory writer every save goes through (old or new after any kill);
- load.py         find_checkpoint, CheckpointReader (per-tensor / per-expert views),
                  load_checkpoint, load_model_and_tokenizer;
- save.py         save_checkpoint and write_synthetic.

Reading only some experts (expert parallelism, chapter 17): `CheckpointReader(path)` reads the
headers only; `reader.experts(layer, range(a, b))` returns that layer's expert tensors
(mlp1_weight.blocks/.scales, mlp1_bias, mlp2_...) for experts a..b-1 as zero-copy views of the
memory-mapped file, so a rank touches only its own experts' bytes; `reader.tensor(name)` gives
any other tensor by its original name in either layout. `load_checkpoint(..., mmap=True)` (the
default) makes every tensor stored in the compute dtype a view of the mapping, so experts a rank
never runs are never read from disk either.
"""

# Private names kept importable for the book (chapter 12) and the exercise checkers.
from ..config import OPENAI_KEYS, ModelConfig
from .atomic import atomic_directory, clean_stale, recover
from .layouts import (
    BF16,
    GLOBAL_NAMES,
    LAYER_NAMES,
    U8,
    _hf_names,  # noqa: F401
    hf_key,
    hf_spec,
    original_spec,
    spec_shape_out,
)
from .load import (
    _SAFETENSORS_DTYPES,  # noqa: F401
    CheckpointFiles,
    CheckpointReader,
    _check_scales,  # noqa: F401
    _check_tensors,  # noqa: F401
    check_finite,
    find_checkpoint,
    find_tokenizer,
    load_checkpoint,
    load_model_and_tokenizer,
    read_config,
)
from .safetensors import MAX_HEADER_BYTES, CheckpointError, MappedFile, parse_header, read_header
from .save import (
    _hf_tensors,  # noqa: F401
    _original_tensors,  # noqa: F401
    save_checkpoint,
    write_checkpoint_files,
    write_synthetic,
)  # noqa: F401

__all__ = [
    "BF16",
    "GLOBAL_NAMES",
    "LAYER_NAMES",
    "MAX_HEADER_BYTES",
    "OPENAI_KEYS",
    "U8",
    "CheckpointError",
    "CheckpointFiles",
    "CheckpointReader",
    "MappedFile",
    "ModelConfig",
    "atomic_directory",
    "check_finite",
    "clean_stale",
    "find_checkpoint",
    "find_tokenizer",
    "hf_key",
    "hf_spec",
    "load_checkpoint",
    "load_model_and_tokenizer",
    "original_spec",
    "parse_header",
    "read_config",
    "read_header",
    "recover",
    "save_checkpoint",
    "spec_shape_out",
    "write_checkpoint_files",
    "write_synthetic",
]
