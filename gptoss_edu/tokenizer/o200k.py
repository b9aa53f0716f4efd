"""o200k_harmony, gpt-oss's real vocabulary, loaded offline (chapter 1, Tokens).

    tok = o200k_harmony()                    # tiktoken's Rust BPE (fast)
    tok = o200k_harmony(engine="python")     # our BPETokenizer from bpe.py on the same ranks
    tok.encode("hello world")                # [24912, 2375] from both engines

The 199,998 ranks of o200k_base are read from the first of these that exists:
  1. an explicit file (`path=` or the environment variable GPTOSS_EDU_O200K_FILE),
     plain or gzip-compressed;
  2. tiktoken's own cache ($TIKTOKEN_CACHE_DIR, $DATA_GYM_CACHE_DIR or <tmp>/data-gym-cache,
     file name = sha1 of the download URL), filled by any earlier tiktoken.get_encoding call;
  3. the copy shipped inside this package (gptoss_edu/assets/o200k_base.tiktoken.gz, 1.7 MB;
     provenance and licence in gptoss_edu/assets/O200K_NOTICE.md), so a plain
     `pip install gptoss-edu` has it on every platform, offline.
Each is checked against the file's sha256. Nothing is downloaded.

On top of the ranks come the harmony special tokens, exactly as tiktoken's `o200k_harmony`
defines them: the named ones of chapter 1 and the reference card (<|start|> 200006, <|end|> 200007, ...) and every other
id in 200000..201087 as <|reserved_N|>. tiktoken also keeps o200k_base's <|endofprompt|> at
200018, so that id has two names (it decodes as <|endofprompt|>).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from gptoss_edu.tokenizer.bpe import (
    O200K_PATTERN,
    BPETokenizer,
    check_special_set,
    check_text,
    check_token_ids,
    parse_rank_file,
)

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_N_RANKS = 199_998
N_VOCAB = 201_088
ENV_VAR = "GPTOSS_EDU_O200K_FILE"


def harmony_special_tokens() -> dict[str, int]:
    """o200k_harmony's special tokens, in tiktoken's order (tiktoken_ext/openai_public.py)."""
    named = {
        "<|endoftext|>": 199999,
        "<|endofprompt|>": 200018,  # inherited from o200k_base
        "<|startoftext|>": 199998,
        "<|reserved_200000|>": 200000,
        "<|reserved_200001|>": 200001,
        "<|return|>": 200002,
        "<|constrain|>": 200003,
        "<|reserved_200004|>": 200004,
        "<|channel|>": 200005,
        "<|start|>": 200006,
        "<|end|>": 200007,
        "<|message|>": 200008,
        "<|reserved_200009|>": 200009,
        "<|reserved_200010|>": 200010,
        "<|reserved_200011|>": 200011,
        "<|call|>": 200012,
    }
    return named | {f"<|reserved_{i}|>": i for i in range(200013, N_VOCAB)}


# ---- finding the rank file ------------------------------------------------------------


def _tiktoken_cache_path() -> Path | None:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None  # tiktoken's way of saying "no cache"
    return Path(cache_dir) / hashlib.sha1(O200K_URL.encode()).hexdigest()


def _shipped_path() -> Path:
    # package data (pyproject.toml's [tool.setuptools.package-data] "assets/*")
    return Path(__file__).resolve().parent.parent / "assets" / "o200k_base.tiktoken.gz"


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip magic
        data = gzip.decompress(data)
    return data


def find_o200k_file(path: str | Path | None = None) -> tuple[bytes, str]:
    """Return (rank-file bytes, where they came from), trying the three sources in order."""
    explicit = path if path is not None else os.environ.get(ENV_VAR)
    candidates = [
        ("explicit file", Path(explicit) if explicit else None),
        ("tiktoken cache", _tiktoken_cache_path()),
        ("copy shipped with gptoss-edu", _shipped_path()),
    ]
    tried = []
    for label, p in candidates:
        if p is None or not p.is_file():
            tried.append(f"  {label}: {p if p is not None else 'not set'} (not found)")
            continue
        data = _read(p)
        digest = hashlib.sha256(data).hexdigest()
        if digest != O200K_SHA256:
            if label == "explicit file":
                raise ValueError(
                    f"o200k rank file {p} has sha256 {digest[:12]}...; expected {O200K_SHA256[:12]}... "
                    "(o200k_base.tiktoken). Point to the real file."
                )
            tried.append(f"  {label}: {p} (sha256 {digest[:12]}..., not o200k_base)")
            continue
        return data, f"{label}: {p}"
    raise FileNotFoundError(
        "o200k_harmony: could not find the o200k_base rank file. Looked in, in order:\n"
        + "\n".join(tried)
        + "\nFix one of them: pass path= (or set "
        + ENV_VAR
        + ") to a copy of o200k_base.tiktoken[.gz]; or run tiktoken.get_encoding('o200k_base') once "
        "on a machine with internet so tiktoken caches it; or reinstall gptoss-edu "
        "(`pip install --force-reinstall --no-deps gptoss-edu`), whose package data ships it."
    )


@functools.lru_cache(maxsize=4)
def _load_ranks_cached(path: str | None, cache_key: tuple) -> tuple[dict[bytes, int], str]:
    data, source = find_o200k_file(path)
    ranks = parse_rank_file(data, source)
    if len(ranks) != O200K_N_RANKS:
        raise ValueError(
            f"o200k rank file ({source}) has {len(ranks)} ranks; expected {O200K_N_RANKS}"
        )
    return ranks, source


def load_o200k_ranks(path: str | Path | None = None) -> dict[bytes, int]:
    """The 199,998 mergeable ranks of o200k_base (bytes -> id), read offline and cached."""
    # the cache key includes the lookups' inputs, so changing the environment is noticed
    key = (os.environ.get(ENV_VAR), str(_tiktoken_cache_path()), str(_shipped_path()))
    ranks, _ = _load_ranks_cached(None if path is None else str(path), key)
    return ranks


# ---- the tiktoken engine ----------------------------------------------------------------


class TiktokenTokenizer:
    """Our tokenizer interface over a `tiktoken.Encoding` (same methods as BPETokenizer)."""

    def __init__(self, encoding, n_vocab: int | None = None):
        self.encoding = encoding
        self.name = encoding.name
        self.special_tokens: dict[str, int] = dict(encoding._special_tokens)
        self.n_vocab = n_vocab if n_vocab is not None else encoding.n_vocab

    def encode(self, text: str, allowed_special=(), disallowed_special="all") -> list[int]:
        # tiktoken needs a set, not a tuple; a lone str is refused (its set is its characters)
        allowed_special = check_special_set(allowed_special, "allowed_special", self.name)
        disallowed_special = check_special_set(disallowed_special, "disallowed_special", self.name)
        if not isinstance(text, str):  # (tiktoken fixes lone surrogates itself)
            check_text(text, self.name)  # raises TypeError naming the type
        try:
            return self.encoding.encode(
                text, allowed_special=allowed_special, disallowed_special=disallowed_special
            )
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from e

    def encode_ordinary(self, text: str) -> list[int]:
        if not isinstance(text, str):
            check_text(text, self.name)
        return self.encoding.encode_ordinary(text)

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        return check_token_ids(ids, self.name, self.n_vocab)

    def decode_tokens_bytes(self, ids: Iterable[int]) -> list[bytes]:
        return self.encoding.decode_tokens_bytes(self._check_ids(ids))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.encoding.decode_bytes(self._check_ids(ids))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.encoding.decode(self._check_ids(ids), errors=errors)

    def token_id(self, special_name: str) -> int:
        if special_name not in self.special_tokens:
            raise KeyError(f"{self.name}: no special token {special_name!r}")
        return self.special_tokens[special_name]

    def is_special_token(self, token_id: int) -> bool:
        return self.encoding.is_special_token(token_id)

    def __repr__(self) -> str:
        return f"TiktokenTokenizer(name={self.name!r}, n_vocab={self.n_vocab})"


def tiktoken_encoding(
    name: str,
    mergeable_ranks: dict[bytes, int],
    special_tokens: dict[str, int],
    pattern: str = O200K_PATTERN,
    explicit_n_vocab: int | None = None,
):
    """Build a `tiktoken.Encoding` offline from ranks we hold (o200k's or our own trained ones)."""
    import tiktoken

    return tiktoken.Encoding(
        name,
        pat_str=pattern,
        mergeable_ranks=mergeable_ranks,
        special_tokens=special_tokens,
        explicit_n_vocab=explicit_n_vocab,
    )


@functools.lru_cache(maxsize=4)
def _o200k_harmony_cached(engine: str, path: str | None, cache_key: tuple):
    ranks = load_o200k_ranks(path)
    specials = harmony_special_tokens()
    # tiktoken's explicit_n_vocab check counts names, and 200018 has two, so it cannot be
    # passed here (tiktoken's own o200k_harmony does not pass it either); we check instead.
    ids = set(ranks.values()) | set(specials.values())
    if ids != set(range(N_VOCAB)):
        raise ValueError(f"o200k_harmony: ids do not cover 0..{N_VOCAB - 1} exactly")
    if engine == "tiktoken":
        try:
            enc = tiktoken_encoding("o200k_harmony", ranks, specials)
        except ImportError:
            warnings.warn(
                "o200k_harmony: tiktoken is not installed; using the (slower) python engine",
                stacklevel=3,
            )
            engine = "python"
        else:
            return TiktokenTokenizer(enc, n_vocab=N_VOCAB)
    return BPETokenizer(
        ranks, specials, pattern=O200K_PATTERN, name="o200k_harmony", n_vocab=N_VOCAB
    )


def o200k_harmony(engine: str = "tiktoken", path: str | Path | None = None):
    """gpt-oss's tokenizer. engine="tiktoken" (Rust, fast) or "python" (bpe.py, readable)."""
    if engine not in ("tiktoken", "python"):
        raise ValueError(f"o200k_harmony: engine={engine!r}; expected 'tiktoken' or 'python'")
    key = (os.environ.get(ENV_VAR), str(_tiktoken_cache_path()), str(_shipped_path()))
    return _o200k_harmony_cached(engine, None if path is None else str(path), key)
