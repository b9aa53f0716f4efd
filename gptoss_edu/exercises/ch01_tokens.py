"""Checkers for chapter 1's exercises (exercises/01_tokens.ipynb): counting pairs, merging,
training and encoding with byte-level BPE, decoding bytes back to text, and o200k's rule that
numbers are cut into groups of 1-3 digits from the left.

    ge.exercises.check_pair_counts(my_pair_counts)   # ✅ check_pair_counts: passed

The exercises use minbpe's conventions: ids are lists of ints, the k-th merge creates id 256 + k,
and `merges` maps a pair of ids to the id it becomes, in the order the merges were learned.
"""

from __future__ import annotations

from collections import Counter

import regex

from ._common import Checker, ExerciseFailure, cases

__all__ = [
    "check_pair_counts",
    "check_merge",
    "check_train",
    "check_encode",
    "check_decode",
    "check_split_numbers",
    "check_train_chunked",
]


# ---- references, written plainly (chapter 1 builds the same things) --------------------------


def _pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    return dict(Counter(zip(ids, ids[1:])))


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _train(text: str, n_merges: int, tie: str = "smallest", recount: bool = True):
    ids = list(text.encode("utf-8"))
    merges: dict[tuple[int, int], int] = {}
    counts = _pair_counts(ids)
    for k in range(n_merges):
        if recount:
            counts = _pair_counts(ids)
        counts = {p: c for p, c in counts.items() if p not in merges}
        if not counts:
            break
        if tie == "smallest":
            pair = min(counts, key=lambda p: (-counts[p], p))
        else:  # minbpe's max(stats, key=stats.get): the first pair seen among equals
            pair = max(counts, key=counts.get)
        merges[pair] = 256 + k
        ids = _merge(ids, pair, 256 + k)
    return merges


def _encode(text: str, merges: dict[tuple[int, int], int], rule: str = "lowest") -> list[int]:
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pairs = [p for p in zip(ids, ids[1:]) if p in merges]
        if not pairs:
            break
        if rule == "lowest":
            pair = min(pairs, key=lambda p: merges[p])
        elif rule == "leftmost":
            pair = pairs[0]
        else:  # "highest"
            pair = max(pairs, key=lambda p: merges[p])
        ids = _merge(ids, pair, merges[pair])
    return ids


def _as_list(got, what: str) -> list:
    if isinstance(got, tuple):
        got = list(got)
    if not isinstance(got, list):
        raise ExerciseFailure(f"{what}: expected a list, got {type(got).__name__}")
    return got


def _random_ids(rng, n_max: int = 30, alphabet: int = 4) -> list[int]:
    """A short list of ids from a small alphabet, so that pairs repeat."""
    base = rng.randint(0, 250)
    return [base + rng.randrange(alphabet) for _ in range(rng.randint(0, n_max))]


def _random_text(rng, n_max: int = 40) -> str:
    return "".join(rng.choice("ab aé1") for _ in range(rng.randint(1, n_max)))


# ---- checkers ---------------------------------------------------------------------------------


@Checker("check_pair_counts")
def check_pair_counts(fn, seed=None):
    """fn(ids) -> {(a, b): how often b follows a}, counting every adjacent (overlapping) pair."""
    visible = [
        [1, 2, 3, 1, 2],
        [97, 97, 97],  # "aaa": (97, 97) twice, the pairs overlap
        [5],
        [],
        list(b"hello hello"),
    ]
    for ids in cases(visible, seed, _random_ids):
        got = fn(list(ids))
        if not isinstance(got, dict):
            raise ExerciseFailure(f"fn({ids}) returned {type(got).__name__}; expected a dict")
        got = {tuple(k): v for k, v in got.items() if v}
        expected = _pair_counts(ids)
        if got == expected:
            continue
        if ids == [97, 97, 97] and got.get((97, 97)) == 1:
            raise ExerciseFailure(
                "fn([97, 97, 97]) counts (97, 97) once; pairs overlap: positions 0-1 and 1-2 "
                "are both pairs, so the count is 2"
            )
        if len(ids) >= 2 and got == _pair_counts(ids[:-1]):
            raise ExerciseFailure(
                f"fn({ids}) misses the last pair {tuple(ids[-2:])}: loop over "
                "zip(ids, ids[1:]) (or i in range(len(ids) - 1))"
            )
        raise ExerciseFailure(f"fn({ids}) = {got}; expected {expected}")
    return "every adjacent pair counted, overlaps included"


@Checker("check_merge")
def check_merge(fn, seed=None):
    """fn(ids, pair, new_id) -> ids with every non-overlapping `pair`, left to right, replaced."""

    def draw(rng):
        ids = _random_ids(rng, alphabet=3)
        pair = tuple(rng.sample(ids, 2)) if len(ids) >= 2 and rng.random() < 0.8 else (1, 1)
        if rng.random() < 0.3:
            pair = (pair[0], pair[0])  # a pair of equal ids: overlaps
        return ids, pair, 256 + rng.randrange(100)

    visible = [
        ([1, 2, 3, 1, 2], (1, 2), 9),
        ([97, 97, 97], (97, 97), 256),  # -> [256, 97]: left to right, no overlap
        ([97, 97, 97, 97], (97, 97), 256),
        ([3, 1], (1, 2), 9),  # the pair's first id at the end: nothing to merge
        ([1, 2], (2, 1), 9),
        ([], (1, 2), 9),
    ]
    for ids, pair, new_id in cases(visible, seed, draw):
        got = _as_list(fn(list(ids), pair, new_id), f"fn({ids}, {pair}, {new_id})")
        expected = _merge(ids, pair, new_id)
        if got == expected:
            continue
        if ids == [1, 2, 3, 1, 2] and got == [9, 3, 1, 2]:
            raise ExerciseFailure(
                "only the first occurrence was replaced; replace every occurrence of the pair"
            )
        if ids == [97, 97, 97] and got == [256, 256]:
            raise ExerciseFailure(
                "fn([97, 97, 97], (97, 97), 256) gave [256, 256]: a byte was used twice. After "
                "a match, skip both ids (i += 2), so the answer is [256, 97]"
            )
        if ids == [97, 97, 97] and got == [97, 256]:
            raise ExerciseFailure(
                "fn([97, 97, 97], (97, 97), 256) gave [97, 256]; scan from the left: [256, 97]"
            )
        if len(got) < len(expected) or (expected and got == expected[:-1]):
            raise ExerciseFailure(
                f"fn({ids}, {pair}, {new_id}) = {got}; expected {expected}: the last id was "
                "lost; when no pair starts at position i, keep ids[i] (the last one too)"
            )
        raise ExerciseFailure(f"fn({ids}, {pair}, {new_id}) = {got}; expected {expected}")
    return "pairs replaced left to right, without overlap"


TRAIN_TEXT = "low lower lowest newer wider new news aaabdaaabac"


@Checker("check_train")
def check_train(fn, seed=None):
    """fn(text, n_merges) -> merges {pair: 256 + k}, learned on the UTF-8 bytes of text."""
    visible = [("aaabdaaabac", 3), (TRAIN_TEXT, 12), ("abcabc", 0), ("ab", 5)]
    for text, n in cases(visible, seed, lambda rng: (_random_text(rng), rng.randint(0, 12))):
        got = fn(text, n)
        if not isinstance(got, dict):
            raise ExerciseFailure(
                f"fn({text!r}, {n}) returned {type(got).__name__}; expected a dict {{pair: id}}"
            )
        got = {tuple(k): v for k, v in got.items()}
        expected = _train(text, n)
        if got == expected:
            continue
        where = f"fn({text!r}, {n})"
        if list(got) == list(expected) and list(got.values()) != list(expected.values()):
            raise ExerciseFailure(
                f"{where}: the right pairs with the wrong ids {list(got.values())}; the k-th merge "
                "(k = 0, 1, ...) gets id 256 + k"
            )
        if got == _train(text, n, tie="first"):
            raise ExerciseFailure(
                f"{where}: on a tie in counts you took the pair seen first; take the smallest pair "
                "(compare as tuples): min(counts, key=lambda p: (-counts[p], p))"
            )
        if got == _train(text, n, recount=False):
            raise ExerciseFailure(
                f"{where}: the pair counts were computed once; recount them on the merged ids "
                "after every merge"
            )
        if len(got) > len(expected) and len(expected) < n:
            raise ExerciseFailure(
                f"{where}: made {len(got)} merges but the text runs out of pairs after "
                f"{len(expected)}; stop when no pair is left"
            )
        exp_items, got_items = list(expected.items()), list(got.items())
        for k in range(min(len(exp_items), len(got_items))):
            if exp_items[k] != got_items[k]:
                raise ExerciseFailure(
                    f"{where}: merge #{k} is {got_items[k]}; expected {exp_items[k]} (merges "
                    f"before it were right). Did you apply each merge to the ids?"
                )
        raise ExerciseFailure(f"{where}: {len(got)} merges; expected {len(expected)}")
    return "same merges, in the same order, as the book's trainer"


@Checker("check_encode")
def check_encode(fn, seed=None):
    """fn(text, merges) -> ids: repeatedly merge the adjacent pair learned first (lowest id)."""
    visible = [
        ("abc", {(98, 99): 256, (97, 98): 257}),  # "bc" was learned first: [97, 256]
        ("aaa", {(97, 97): 256, (256, 97): 257}),
        ("", {(97, 97): 256}),
        ("é!", {}),
    ]
    trained = _train(TRAIN_TEXT, 20)
    visible += [(t, trained) for t in ("lowest newest", "aaabdaaabac", "wider news", "zzz")]

    def draw(rng):
        return _random_text(rng), _train(_random_text(rng, 80), rng.randint(1, 15))

    for text, merges in cases(visible, seed, draw):
        got = _as_list(fn(text, dict(merges)), f"fn({text!r}, merges)")
        expected = _encode(text, merges)
        if got == expected:
            continue
        where = f"fn({text!r}, merges)"
        if got == _encode(text, merges, "leftmost"):
            raise ExerciseFailure(
                f"{where} = {got}; expected {expected}: you merged the leftmost mergeable pair. "
                "Merge the pair with the lowest id in `merges` (the one learned first)"
            )
        if got == _encode(text, merges, "highest"):
            raise ExerciseFailure(
                f"{where} = {got}; expected {expected}: you merged the pair with the highest id; "
                "take the lowest (min over merges[pair])"
            )
        if text == "é!" and got != expected:
            raise ExerciseFailure(
                f"{where} = {got}; expected {expected}: start from text.encode('utf-8'), the bytes, "
                "not from ord() of each character"
            )
        raise ExerciseFailure(f"{where} = {got}; expected {expected}")
    return "lowest-id pair merged first, exactly as tiktoken does"


@Checker("check_decode")
def check_decode(fn, seed=None):
    """fn(ids, vocab {id: bytes}) -> str: join the bytes of all tokens, then decode UTF-8 once."""
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = b"h\xc3"  # "h" + the first byte of "é"
    vocab[257] = b"\xa9!"  # the second byte of "é" + "!"
    vocab[258] = b"ol" + "á".encode()
    visible = [
        ([104, 105], "hi"),
        ([258], "olá"),
        ([256, 257], "hé!"),  # one character split over two tokens
        ([], ""),
        ([104, 255, 105], "h\ufffdi"),  # 0xff is never valid UTF-8
    ]

    def draw(rng):
        ids = [rng.choice([104, 105, 255, 256, 257, 258, 33]) for _ in range(rng.randint(0, 8))]
        return ids, b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    for ids, expected in cases(visible, seed, draw):
        try:
            got = fn(list(ids), dict(vocab))
        except UnicodeDecodeError as e:
            raise ExerciseFailure(
                f"fn({ids}) raised UnicodeDecodeError ({e.reason}); a model can emit bytes that are "
                "not valid UTF-8: decode with errors='replace'"
            ) from None
        if isinstance(got, bytes):
            raise ExerciseFailure(
                f"fn({ids}) returned bytes {got!r}; decode them to str with .decode('utf-8', errors='replace')"
            )
        if got == expected:
            continue
        if ids == [256, 257] and "\ufffd" in str(got):
            raise ExerciseFailure(
                f"fn([256, 257]) = {got!r}; expected 'hé!': the two bytes of 'é' sit in two tokens. "
                "Join all the tokens' bytes first, then decode once"
            )
        raise ExerciseFailure(f"fn({ids}) = {got!r}; expected {expected!r}")
    return "bytes joined first, decoded once, invalid bytes replaced"


@Checker("check_split_numbers")
def check_split_numbers(fn, seed=None):
    """fn(text) -> the number pieces o200k's pre-tokenizer makes: digits in groups of 1-3, from the left."""

    def draw(rng):
        words = [str(rng.randint(0, 10 ** rng.randint(1, 12))) for _ in range(rng.randint(1, 4))]
        return " and ".join(words + [rng.choice(["cats", "٣٤٥٦", "x1y22"])])

    visible = [
        "1234567",
        "In 2026, 1000000 people paid 3.14159 euros.",
        "no digits here",
        "12",
        "x = 99999 + 0",
    ]
    for text in cases(visible, seed, draw):
        got = _as_list(fn(text), f"fn({text!r})")
        expected = regex.findall(r"\p{N}{1,3}", text)
        if got == expected:
            continue
        where = f"fn({text!r}) = {got}"
        if got == regex.findall(r"\p{N}+", text):
            raise ExerciseFailure(
                f"{where}: whole numbers; o200k cuts a run of digits into pieces of at most 3"
            )
        from_right = []
        for run in regex.findall(r"\p{N}+", text):
            head = len(run) % 3
            from_right += ([run[:head]] if head else []) + [
                run[i : i + 3] for i in range(head, len(run), 3)
            ]
        if got == from_right:
            raise ExerciseFailure(
                f"{where}: you grouped from the right, like thousands separators; the regex "
                r"\p{N}{1,3} takes 3 digits at a time from the left: '1234567' -> '123', '456', '7'"
            )
        if got == regex.findall(r"\p{N}", text):
            raise ExerciseFailure(f"{where}: single digits; o200k keeps up to 3 digits together")
        raise ExerciseFailure(f"{where}; expected {expected}")
    return "numbers in groups of 1-3 digits from the left"


# ---- extension: training on pre-tokenized chunks ---------------------------------------------


def _train_chunked(text: str, n_merges: int, pattern: str) -> dict[tuple[int, int], int]:
    """BPE training where no merge crosses a pre-tokenizer chunk (the chunks are counted once
    each, with their multiplicity)."""
    chunks = Counter(regex.findall(pattern, text))
    words = {chunk: list(chunk.encode("utf-8")) for chunk in chunks}
    merges: dict[tuple[int, int], int] = {}
    for k in range(n_merges):
        counts: Counter = Counter()
        for chunk, ids in words.items():
            for pair in zip(ids, ids[1:]):
                counts[pair] += chunks[chunk]
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = 256 + k
        words = {c: _merge(ids, pair, 256 + k) for c, ids in words.items()}
    return merges


@Checker("check_train_chunked")
def check_train_chunked(fn, seed=None):
    """fn(text, n_merges, pattern) -> merges: BPE training in which no merge crosses the chunks
    that regex.findall(pattern, text) cuts (ties: the smallest pair, as in exercise 3)."""
    from ..tokenizer import O200K_PATTERN

    visible = [
        ("the cat sat on the mat, the cat", 10, O200K_PATTERN),
        ("aaa aaa aaa", 4, r"\S+|\s+"),
        ("12345 678 12345", 6, O200K_PATTERN),
    ]

    def draw(rng):
        words = ["low", "lower", "newest", " the", "aaa", "1234", "été", "widest", "!"]
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
        return text, rng.randint(1, 25), rng.choice([O200K_PATTERN, r"\S+|\s+"])

    for text, n, pattern in cases(visible, seed, draw):
        got = fn(text, n, pattern)
        where = f"fn({text[:40]!r}, {n})"
        if not isinstance(got, dict):
            raise ExerciseFailure(f"{where} returned {type(got).__name__}; expected a dict")
        got = {tuple(k): v for k, v in got.items()}
        want = _train_chunked(text, n, pattern)
        if got == want:
            continue
        if got == _train(text, n):
            raise ExerciseFailure(
                f"{where}: your merges are those of the whole text as one sequence; a merge may "
                "not cross a chunk boundary: count pairs inside each chunk only"
            )
        for k, (a, b) in enumerate(zip(got.items(), want.items())):
            if a != b:
                raise ExerciseFailure(f"{where}: merge #{k} is {a}; expected {b}")
        raise ExerciseFailure(f"{where}: {len(got)} merges; expected {len(want)}")
    return "no merge crosses a chunk; same merges as the book's trainer"
