"""Byte-level BPE, written for reading: train, encode, decode, save and load (chapter 1, Tokens).

A byte-level BPE vocabulary is a list of byte strings ranked by the order in which training
created them: ranks 0..255 are the 256 single bytes, and every later rank is the concatenation
of two earlier tokens. Encoding a piece of text repeats one rule until it no longer applies:

    merge the adjacent pair whose concatenation has the lowest rank

    b"hello" -> [b"h", b"e", b"l", b"l", b"o"] -> [b"he", b"l", b"l", b"o"] -> ... -> [b"hello"]

That is exactly tiktoken's algorithm, so a `BPETokenizer` built on o200k's ranks gives the same
ids as tiktoken. Before BPE runs, the text is cut into pieces by a regular expression (the
"pre-tokenizer"): no token ever crosses a piece boundary, which keeps words, numbers and
whitespace apart.

    tok = train_bpe(text, vocab_size=4096, special_tokens=["<|endoftext|>"])
    ids = tok.encode("hello world")          # list[int]
    tok.decode(ids) == "hello world"
    tok.save("tiny.tiktoken")                # tiktoken's rank-file format + a JSON sidecar
    tok = BPETokenizer.load("tiny.tiktoken")
"""

from __future__ import annotations

import base64
import heapq
import json
import operator
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import regex

# tiktoken's o200k_base pre-tokenizer, copied verbatim from tiktoken_ext/openai_public.py.
# In order: words with an optional leading non-letter and English contractions (two variants,
# for lower-case and Capitalised words), runs of 1-3 digits, punctuation runs with a leading
# space, newlines with the whitespace before them, whitespace not followed by a non-space
# (so " world" keeps its space), and any remaining whitespace.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class Tokenizer(Protocol):
    """The one interface shared by our BPE, the tiktoken wrapper and the tiny model's tokenizer."""

    name: str
    n_vocab: int
    special_tokens: dict[str, int]

    def encode(self, text: str, allowed_special=(), disallowed_special="all") -> list[int]: ...
    def encode_ordinary(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def decode_bytes(self, ids: Iterable[int]) -> bytes: ...
    def decode_tokens_bytes(self, ids: Iterable[int]) -> list[bytes]: ...
    def token_id(self, special_name: str) -> int: ...


def bpe_merge(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Encode one pre-tokenized piece: repeatedly merge the adjacent pair of lowest rank.

    b"aaab" with ranks {a:0, b:1, aa:2, ab:3} -> [a, a, a, b] -> [aa, a, b] -> [aa, ab] -> [2, 3]

    Like tiktoken, the pair to merge is chosen by the rank of its *concatenated bytes*, and
    among equal ranks the leftmost wins (only one occurrence is merged per step).

    Finding the lowest pair by scanning all pairs after every merge costs O(n) per merge, so
    O(n^2) for a long piece (a 1 MB word without spaces: hours). Here the candidate pairs wait
    in a heap ordered by (rank, position), so the leftmost lowest pair is on top, and the parts
    form a linked list over byte offsets:

        part i spans piece[i:end[i]];  prev[i] is the part before it;  end[i] = DEAD once merged

    A merge touches two pairs (with the part before and the part after), so it pushes at most two
    entries: O(n log n) in all. Entries whose parts have changed since they were pushed are stale
    and skipped when popped.
    """
    n = len(piece)
    end = list(range(1, n + 1))  # end[i]: where part i stops (parts start as single bytes)
    prev = list(range(-1, n - 1))  # prev[i]: the start of the part before part i, -1 for none
    heap: list[tuple[int, int, int]] = []  # (rank of the pair's bytes, left start, right end)

    def push(i: int) -> None:
        """Offer the pair (part i, the part after it) if its concatenation is a token."""
        j = end[i]
        if j < n:
            rank = ranks.get(piece[i : end[j]])
            if rank is not None:
                heapq.heappush(heap, (rank, i, end[j]))

    for i in range(n - 1):
        push(i)
    while heap:
        _, i, stop = heapq.heappop(heap)
        j = end[i]
        if j == _DEAD or j >= n or end[j] != stop:
            continue  # stale: part i was merged away, or one of the two parts grew since
        end[i] = stop  # part i absorbs part j
        end[j] = _DEAD
        if stop < n:
            prev[stop] = i
        if prev[i] >= 0:
            push(prev[i])  # the pair to the left changed
        push(i)  # and so did the pair to the right
    out = []
    i = 0
    while i < n:
        out.append(ranks[piece[i : end[i]]])
        i = end[i]
    return out


_DEAD = -1  # end[i] of a part that has been merged into the part before it


def check_token_ids(ids: Iterable[int], name: str, n_vocab: int) -> list[int]:
    """`ids` as a list of ints in [0, n_vocab): floats, bools and strings are refused, never
    truncated (decode([3.7]) is a bug in the caller, not token 3). Integer tensors and numpy
    integers are fine (they convert exactly)."""
    if isinstance(ids, (str, bytes, int)) or not isinstance(ids, Iterable):
        raise TypeError(
            f"{name}: decode expects a sequence of token ids; found a {type(ids).__name__} "
            f"({ids!r:.60}); wrap a single id in a list: decode([id])"
        )
    out = []
    for pos, i in enumerate(ids):
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise TypeError(
                f"{name}: token id at position {pos} is {i!r:.60} ({type(i).__name__}); token "
                "ids are integers (convert a tensor with .tolist(), round floats explicitly)"
            )
        try:
            value = operator.index(i)  # exact for int, numpy ints and 1-element integer tensors
        except TypeError as err:
            raise TypeError(
                f"{name}: token id at position {pos} is {i!r:.60}; expected one integer "
                f"(a flat list of ids): {err}"
            ) from None
        if not 0 <= value < n_vocab:
            raise ValueError(
                f"{name}: token id {value} (position {pos}) is not in the vocabulary "
                f"(ids of this tokenizer: 0..{n_vocab - 1})"
            )
        out.append(value)
    return out


def check_text(text, name: str) -> str:
    """`text` as tiktoken encodes it: a str whose lone surrogates (e.g. "\\ud800", which UTF-8
    cannot encode) become U+FFFD and whose surrogate pairs become the character they spell.
    This is tiktoken's own fix-up (Encoding.encode), so both engines give the same ids."""
    if not isinstance(text, str):
        raise TypeError(
            f"{name}: encode expects a str; found a {type(text).__name__} "
            "(decode bytes first: data.decode('utf-8'))"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def check_special_set(value, what: str, name: str) -> str | frozenset[str]:
    """`allowed_special` / `disallowed_special` as tiktoken takes them: "all" or a collection of
    special-token strings. A single string is refused: set("<|end|>") would be its characters."""
    if isinstance(value, str) and value == "all":
        return "all"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name}: {what}={value!r:.60}; expected 'all' or a set of special-token strings "
            f"(one token: {what}={{{value!r:.40}}}; none: {what}=())"
        )
    return frozenset(value)


class BPETokenizer:
    """Byte-level BPE over `mergeable_ranks` (bytes -> id) plus special tokens (str -> id).

    The same class serves o200k (engine="python") and vocabularies trained by `train_bpe`.
    Encoding mirrors tiktoken, including its special-token rules:
      - `allowed_special`: "all" or a set of special-token strings that become their ids;
      - `disallowed_special`: "all" (default: any other special-token string in the text
        raises ValueError) or () to encode such strings as ordinary text.
    """

    def __init__(
        self,
        mergeable_ranks: dict[bytes, int],
        special_tokens: dict[str, int] | None = None,
        pattern: str = O200K_PATTERN,
        name: str = "bpe",
        n_vocab: int | None = None,
        cache_size: int = 100_000,
    ):
        missing = [b for b in range(256) if bytes([b]) not in mergeable_ranks]
        if missing:
            raise ValueError(
                f"BPETokenizer: mergeable_ranks lacks {len(missing)} single-byte tokens "
                f"(first: {bytes([missing[0]])!r}); a byte-level BPE needs all 256 so any text can be encoded"
            )
        self.name = name
        self.pattern = pattern
        self.mergeable_ranks = mergeable_ranks
        self.special_tokens = dict(special_tokens or {})
        for s, i in self.special_tokens.items():
            if not isinstance(s, str) or not s:
                raise ValueError(
                    f"BPETokenizer {name!r}: special token {s!r} (id {i!r}); expected a non-empty "
                    "str such as '<|endoftext|>'"
                )
        self._regex = regex.compile(pattern)
        # id -> bytes; for an id with two special names (o200k_harmony's 200018 is both
        # <|endofprompt|> and <|reserved_200018|>) the first name wins, as in tiktoken.
        self._decoder: dict[int, bytes] = {i: b for b, i in mergeable_ranks.items()}
        if len(self._decoder) != len(mergeable_ranks):
            raise ValueError(f"BPETokenizer {name!r}: two tokens share one rank in mergeable_ranks")
        for s, i in self.special_tokens.items():
            if i in self._decoder and i < len(mergeable_ranks):
                raise ValueError(
                    f"BPETokenizer {name!r}: special token {s!r} has id {i}, which is already the "
                    f"rank of {self._decoder[i]!r}; give special tokens ids >= {len(mergeable_ranks)}"
                )
            self._decoder.setdefault(i, s.encode("utf-8"))
        max_id = max(self._decoder)
        self.n_vocab = n_vocab if n_vocab is not None else max_id + 1
        if self.n_vocab <= max_id:
            raise ValueError(
                f"BPETokenizer {name!r}: n_vocab={self.n_vocab} but the largest id is {max_id}"
            )
        # longest first, so that a special token that is a prefix of another never wins early
        names = sorted(self.special_tokens, key=len, reverse=True)
        self._special_regex = (
            regex.compile("|".join(regex.escape(s) for s in names)) if names else None
        )
        self._cache: dict[str, list[int]] = {}
        self._cache_size = cache_size

    # ---- encoding -------------------------------------------------------------------------

    def _encode_piece(self, piece: str) -> list[int]:
        ids = self._cache.get(piece)
        if ids is None:
            b = piece.encode("utf-8")
            rank = self.mergeable_ranks.get(b)
            ids = [rank] if rank is not None else bpe_merge(b, self.mergeable_ranks)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # a crude bound on memory; common pieces come back quickly
            self._cache[piece] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` treating special-token strings as plain text."""
        text = check_text(text, self.name)
        ids: list[int] = []
        for piece in self._regex.findall(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def encode(self, text: str, allowed_special=(), disallowed_special="all") -> list[int]:
        """Encode `text`; special-token strings follow tiktoken's allowed/disallowed rules."""
        text = check_text(text, self.name)
        allowed_special = check_special_set(allowed_special, "allowed_special", self.name)
        disallowed_special = check_special_set(disallowed_special, "disallowed_special", self.name)
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = set(disallowed_special)
        if disallowed and self._special_regex is not None:
            for m in self._special_regex.finditer(text):
                if m.group() in disallowed:
                    raise ValueError(
                        f"{self.name}: the text contains the special token {m.group()!r}, which is not allowed. "
                        f"Pass allowed_special={{{m.group()!r}}} (or 'all') to encode it as its id, or "
                        "disallowed_special=() to encode it as ordinary text."
                    )
        if not allowed or self._special_regex is None:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for m in self._special_regex.finditer(text):
            if m.group() not in allowed:
                continue
            ids.extend(self.encode_ordinary(text[start : m.start()]))
            ids.append(self.special_tokens[m.group()])
            start = m.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    # ---- decoding -------------------------------------------------------------------------

    def decode_tokens_bytes(self, ids: Iterable[int]) -> list[bytes]:
        out = []
        for i in check_token_ids(ids, self.name, self.n_vocab):
            b = self._decoder.get(i)
            if b is None:
                raise ValueError(
                    f"{self.name}: token id {i} is not in the vocabulary "
                    f"(ids of this tokenizer: 0..{self.n_vocab - 1}, with gaps only where no token exists)"
                )
            out.append(b)
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.decode_tokens_bytes(ids))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode to text; a token sequence that splits a UTF-8 character gives U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ---- special tokens -------------------------------------------------------------------

    def token_id(self, special_name: str) -> int:
        """The id of a special token, e.g. token_id("<|start|>") -> 200006 for o200k_harmony."""
        if special_name not in self.special_tokens:
            raise KeyError(
                f"{self.name}: no special token {special_name!r}; this tokenizer has "
                f"{len(self.special_tokens)} special tokens, e.g. {list(self.special_tokens)[:5]}"
            )
        return self.special_tokens[special_name]

    def is_special_token(self, token_id: int) -> bool:
        return token_id in self._decoder and token_id >= len(self.mergeable_ranks)

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(name={self.name!r}, n_vocab={self.n_vocab}, "
            f"merges={len(self.mergeable_ranks) - 256}, special_tokens={len(self.special_tokens)})"
        )

    # ---- files ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write `path` in tiktoken's rank-file format and `path` + ".json" with the rest.

        The rank file has one `base64(token_bytes) rank` line per token, as tiktoken's
        `load_tiktoken_bpe` reads it; the JSON sidecar keeps the name, pattern, special
        tokens and n_vocab. Returns the rank file's path.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            for token, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1]):
                f.write(f"{base64.b64encode(token).decode('ascii')} {rank}\n")
        sidecar = {
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "n_vocab": self.n_vocab,
        }
        Path(str(path) + ".json").write_text(
            json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n"
        )
        return path

    @classmethod
    def load(cls, path: str | Path, **overrides) -> BPETokenizer:
        """Read a rank file (and its ".json" sidecar when present; otherwise the o200k pattern)."""
        path = Path(path)
        ranks = load_rank_file(path)
        sidecar_path = Path(str(path) + ".json")
        meta = json.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
        kwargs = {
            "special_tokens": meta.get("special_tokens", {}),
            "pattern": meta.get("pattern", O200K_PATTERN),
            "name": meta.get("name", path.stem),
            "n_vocab": meta.get("n_vocab"),
        }
        kwargs.update(overrides)
        return cls(ranks, **kwargs)


def parse_rank_file(data: bytes, source: str = "<bytes>") -> dict[bytes, int]:
    """Parse tiktoken's rank-file format: one `base64(token) rank` per line."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as e:
            raise ValueError(
                f"{source}: line {lineno} is {line[:60]!r}; expected 'base64-token rank' (tiktoken's rank-file format)"
            ) from e
    return ranks


def load_rank_file(path: str | Path) -> dict[bytes, int]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"rank file {path} does not exist; write one with BPETokenizer.save()"
        )
    return parse_rank_file(path.read_bytes(), str(path))


# ---- training ---------------------------------------------------------------------------


def train_bpe(
    text: str | Iterable[str],
    vocab_size: int,
    *,
    pattern: str = O200K_PATTERN,
    special_tokens: Iterable[str] | dict[str, int] = (),
    name: str = "bpe",
    progress: bool = False,
) -> BPETokenizer:
    """Train a byte-level BPE with `vocab_size - 256` merges (special tokens come on top).

    The algorithm is the textbook one, made incremental:
      1. cut the text into pieces with `pattern`; count each distinct piece once
         ("the" seen 5000 times is one chunk with count 5000);
      2. count adjacent pairs over all chunks, weighted by the chunk counts, and keep an
         index pair -> chunks that contain it;
      3. repeat: take the most frequent pair (a max-heap), give it the next id, rewrite only
         the chunks that contain it and update the counts of the pairs they touched.

    Ties in pair count go to the smallest pair of ids (first id, then second), so training is
    deterministic and independent of dictionary order. A merge whose bytes already exist as a
    token (e.g. "ab"+"c" after "a"+"bc") reuses that token instead of adding a duplicate, so the
    rank file never holds one byte string twice; the vocabulary can then end up slightly smaller
    than asked only if the text runs out of pairs.

    `text` may be one string or an iterable of documents. `special_tokens` may be a list
    (ids are given after the merges, in order) or a dict of explicit ids.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"train_bpe: vocab_size={vocab_size!r}; expected an int >= 256")
    if vocab_size < 256:
        raise ValueError(
            f"train_bpe: vocab_size={vocab_size}; expected at least 256 (one token per byte)"
        )
    docs = [text] if isinstance(text, str) else text
    if isinstance(docs, (bytes, bytearray)) or not isinstance(docs, Iterable):
        raise TypeError(
            f"train_bpe: text is a {type(text).__name__}; expected a str or an iterable of str"
        )
    compiled = regex.compile(pattern)
    piece_counts: Counter[str] = Counter()
    for k, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise TypeError(f"train_bpe: document {k} is a {type(doc).__name__}; expected a str")
        piece_counts.update(compiled.findall(check_text(doc, "train_bpe")))  # lone surrogates

    chunks: list[list[int]] = [list(p.encode("utf-8")) for p in piece_counts]  # token ids per chunk
    counts: list[int] = list(piece_counts.values())

    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}  # pair -> indices of chunks that (may) contain it
    for ci, (ids, n) in enumerate(zip(chunks, counts)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += n
            where.setdefault(pair, set()).add(ci)
    # max-heap by count via negation; entries go stale when a count changes, and are skipped
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    vocab: list[bytes] = [bytes([b]) for b in range(256)]  # id -> bytes
    by_bytes: dict[bytes, int] = {b: i for i, b in enumerate(vocab)}
    n_merges = vocab_size - 256
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_merges, desc="BPE merges")
    while len(vocab) < vocab_size and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count or neg_count == 0:
            continue  # stale entry
        merged = vocab[pair[0]] + vocab[pair[1]]
        new_id = by_bytes.get(merged)
        if new_id is None:
            new_id = len(vocab)
            vocab.append(merged)
            by_bytes[merged] = new_id
            if bar is not None:
                bar.update(1)
        changed: set[tuple[int, int]] = set()
        for ci in where.pop(pair, ()):
            ids, n = chunks[ci], counts[ci]
            if len(ids) < 2:
                continue
            new_ids = _merge_ids(ids, pair, new_id)
            if len(new_ids) == len(ids):
                continue  # stale index entry: the pair left this chunk earlier
            for p in zip(ids, ids[1:]):
                pair_counts[p] -= n
                changed.add(p)
            for p in zip(new_ids, new_ids[1:]):
                pair_counts[p] += n
                changed.add(p)
                where.setdefault(p, set()).add(ci)
            chunks[ci] = new_ids
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_counts[p]
    if bar is not None:
        bar.close()

    ranks = {b: i for i, b in enumerate(vocab)}
    if isinstance(special_tokens, dict):
        specials = dict(special_tokens)
    else:
        specials = {s: len(vocab) + k for k, s in enumerate(special_tokens)}
    return BPETokenizer(ranks, specials, pattern=pattern, name=name)


def _merge_ids(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, left to right.

    [1, 2, 3, 1, 2], (1, 2) -> 9  gives  [9, 3, 9]
    """
    out = []
    i = 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
