"""Tokenizers and the harmony chat format (chapters 1 and 2).

import gptoss_edu as ge
tok = ge.tokenizer.o200k_harmony()            # engine="tiktoken" (fast) or "python" (bpe.py)
mine = ge.tokenizer.train_bpe(text, 4096)     # our own byte-level BPE
text = ge.harmony.render([ge.harmony.user("Hi")])
"""

from gptoss_edu.tokenizer import harmony
from gptoss_edu.tokenizer.bpe import O200K_PATTERN, BPETokenizer, Tokenizer, bpe_merge, train_bpe
from gptoss_edu.tokenizer.o200k import (
    TiktokenTokenizer,
    find_o200k_file,
    harmony_special_tokens,
    load_o200k_ranks,
    o200k_harmony,
    tiktoken_encoding,
)

__all__ = [
    "O200K_PATTERN",
    "BPETokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "bpe_merge",
    "find_o200k_file",
    "harmony",
    "harmony_special_tokens",
    "load_o200k_ranks",
    "o200k_harmony",
    "tiktoken_encoding",
    "train_bpe",
]
