"""bpe.py: exact against tiktoken on o200k, byte-exact decoding, and training checked by hand
and against a naive full-recount trainer written here."""

from collections import Counter

import pytest
import regex
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe

from gptoss_edu.tokenizer.bpe import O200K_PATTERN, BPETokenizer, bpe_merge, train_bpe
from gptoss_edu.tokenizer.o200k import o200k_harmony, tiktoken_encoding

CORPUS = [
    "Hello, world! This is a test of the tokenizer.",
    "The quick brown fox jumps over the lazy dog. I'm sure they'll say it's fine; we've DONE it.",
    "Olá! Você já comeu pão de queijo? A educação é fundamental para o coração da nação.",
    "机器学习是人工智能的一个分支。我们今天去北京吧！",
    "مرحبا بالعالم. كيف حالك اليوم؟",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "こんにちは、世界。カタカナとひらがな。",
    "def f(x: int) -> int:\n    return x ** 2 + 3 * x - 1  # comment\n\n\nclass A:\n\tpass\n",
    'for (int i = 0; i < n; ++i) { printf("%d\\n", a[i]); }',
    "Numbers: 0 7 42 123 1234 12345678 3.14159 -2.5e-10 1,000,000 2026-11-23",
    "   leading spaces and trailing spaces   ",
    "tabs\t\tand\r\nwindows\r\nnewlines\n\n\n\nmany",
    "                                                   long run",
    "emoji 🙂🚀👨‍👩‍👧‍👦 flags 🇵🇹🇨🇳 and ✨ sparkles",
    "Ünïcödé àccents ñ ß œ Å and combining e\u0301 a\u0300",
    "URLs https://example.com/path?q=1&r=2 and emails a.b@c.io",
    "",
    " ",
    "\n",
    "a",
    "CamelCaseWords and snake_case_words and SCREAMING_CASE",
]
SPECIAL_TEXT = "<|start|>user<|message|>Hi there<|end|><|start|>assistant<|channel|>final<|message|>Olá<|return|>"


@pytest.fixture(scope="module")
def tk():
    return o200k_harmony(engine="tiktoken")


@pytest.fixture(scope="module")
def py():
    return o200k_harmony(engine="python")


def test_bpe_merge_by_hand():
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"aa"] = 256
    ranks[b"ab"] = 257
    ranks[b"aab"] = 258
    # a a a b: lowest-rank pair is "aa" (256), leftmost first -> [aa, a, b]; then "ab" (257) -> [aa, ab]
    # ("aab" = aa+b never appears as an adjacent pair)
    assert bpe_merge(b"aaab", ranks) == [256, 257]
    assert bpe_merge(b"aab", ranks) == [258]  # aa+b -> aab
    assert bpe_merge(b"", ranks) == []
    assert bpe_merge(b"xyz", ranks) == [ord("x"), ord("y"), ord("z")]


def scan_merge(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """The textbook O(n^2) merge, written here as the specification: scan every adjacent pair,
    merge the lowest-ranked one (leftmost among equals), repeat."""
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while True:
        found = [
            (ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks
        ]
        if not found:
            return [ranks[p] for p in parts]
        _, i = min(found)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=40, min_size=0).map(lambda b: bytes(97 + x % 3 for x in b)),
    st.lists(st.binary(min_size=2, max_size=5).map(lambda b: bytes(97 + x % 3 for x in b))),
)
def test_bpe_merge_equals_the_scanning_merge(piece, extra_tokens):
    # random small vocabularies over {a, b, c}: many equal pairs, so the leftmost rule matters
    ranks = {bytes([b]): b for b in range(256)}
    for t in extra_tokens:
        ranks.setdefault(t, len(ranks))
    assert bpe_merge(piece, ranks) == scan_merge(piece, ranks)


class CountingRank(int):
    """An int rank that counts how often it is compared: the work of finding the lowest pair."""

    comparisons = 0

    def _count(op):
        def compare(self, other):
            CountingRank.comparisons += 1
            return op(int(self), int(other))

        return compare

    __lt__ = _count(int.__lt__)
    __le__ = _count(int.__le__)
    __gt__ = _count(int.__gt__)
    __ge__ = _count(int.__ge__)
    __eq__ = _count(int.__eq__)
    __ne__ = _count(int.__ne__)
    __hash__ = int.__hash__


def test_bpe_merge_is_subquadratic_on_a_long_word():
    # A word without spaces is one piece, so nothing bounds n. Vocabulary: bytes + every pair of
    # lowercase letters: about n/2 merges, each of which a scanning merge pays with ~n rank
    # comparisons (quadratic: 16x for 4x the length). Counted, not timed.
    letters = b"abcdefghijklmnopqrstuvwxyz"
    ranks = {bytes([b]): CountingRank(b) for b in range(256)}
    for x in letters:
        for y in letters:
            ranks[bytes([x, y])] = CountingRank(len(ranks))
    rng = __import__("random").Random(0)
    counts = {}
    for n in (500, 2000):
        piece = bytes(rng.choice(letters) for _ in range(n))
        CountingRank.comparisons = 0
        ids = bpe_merge(piece, ranks)
        counts[n] = CountingRank.comparisons
        assert len(ids) < 0.6 * n  # more than 0.4 n merges (two-letter tokens, not aligned)
    growth = counts[2000] / counts[500]
    # n log n: 4 * log(2000)/log(500) = 4.9; n^2: 16
    assert growth < 7, f"rank comparisons grew {growth:.1f}x for 4x the length: {counts}"


@pytest.mark.parametrize("text", CORPUS)
def test_python_engine_matches_tiktoken(tk, py, text):
    want = tk.encoding.encode_ordinary(text)
    assert py.encode_ordinary(text) == want
    assert py.encode(text) == want
    assert py.decode_bytes(want) == text.encode("utf-8")
    assert py.decode(want) == text
    assert py.decode_tokens_bytes(want) == tk.encoding.decode_tokens_bytes(want)


def test_whole_corpus_and_special_tokens(tk, py):
    text = "\n".join(CORPUS) + SPECIAL_TEXT
    want = tk.encoding.encode(text, allowed_special="all")
    assert py.encode(text, allowed_special="all") == want
    assert 200006 in want and want[-1] == 200002
    assert py.decode(want) == text
    subset = {"<|start|>", "<|end|>"}
    assert py.encode(text, allowed_special=subset, disallowed_special=()) == tk.encoding.encode(
        text, allowed_special=subset, disallowed_special=()
    )
    assert py.encode(text, disallowed_special=()) == tk.encoding.encode(text, disallowed_special=())


def test_disallowed_special_raises_like_tiktoken(tk, py):
    for t in (tk, py):
        with pytest.raises(ValueError, match="<\\|start\\|>"):
            t.encode("x <|start|> y")
        with pytest.raises(ValueError):
            t.encode("<|start|><|end|>", allowed_special={"<|start|>"})
        assert t.encode("<|start|>", allowed_special={"<|start|>"}) == [200006]
        assert t.encode("<|start|>", disallowed_special=()) == [27, 91, 5236, 91, 29]


def test_decode_invalid_bytes_and_ids(tk, py):
    # one character split over two tokens decodes to U+FFFD alone, like tiktoken
    ids = tk.encoding.encode("🙂")
    assert py.decode(ids[:1]) == tk.encoding.decode(ids[:1])
    with pytest.raises(ValueError, match="201088"):
        py.decode([201088])
    with pytest.raises(ValueError, match="201088"):
        tk.decode([201088])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=60))
def test_python_engine_matches_tiktoken_on_random_text(tk, py, text):
    want = tk.encoding.encode_ordinary(text)
    assert py.encode_ordinary(text) == want
    assert py.decode_bytes(want) == text.encode("utf-8", errors="surrogatepass")


# ---- training ---------------------------------------------------------------------------


def test_train_by_hand():
    # one pre-token "aaabdaaabac": pairs aa:4, ab:2, ... -> merge aa (256). Then (aa,a) and (a,b)
    # both count 2: the tie goes to the smaller pair (97, 98) = "ab" (257). Then (aa, ab): "aaab".
    tok = train_bpe("aaabdaaabac", vocab_size=259)
    inv = {i: b for b, i in tok.mergeable_ranks.items()}
    assert [inv[256], inv[257], inv[258]] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]


def naive_train(text: str, vocab_size: int) -> dict[bytes, int]:
    """Full recount per merge; same tie rule (largest count, then smallest pair of ids)."""
    chunks = Counter(regex.findall(O200K_PATTERN, text))
    seqs = [(list(c.encode()), n) for c, n in chunks.items()]
    vocab = [bytes([b]) for b in range(256)]
    while len(vocab) < vocab_size:
        counts = Counter()
        for ids, n in seqs:
            for p in zip(ids, ids[1:]):
                counts[p] += n
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merged = vocab[pair[0]] + vocab[pair[1]]
        if merged in vocab:
            new = vocab.index(merged)
        else:
            new = len(vocab)
            vocab.append(merged)
        for k, (ids, n) in enumerate(seqs):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            seqs[k] = (out, n)
    return {b: i for i, b in enumerate(vocab)}


TRAIN_TEXT = (
    "\n".join(CORPUS) * 3
    + " the cat sat on the mat; the cats sat on the mats. aaaa bbbb abab baba 1111 2222 " * 20
)


def test_incremental_training_equals_naive_recount():
    tok = train_bpe(TRAIN_TEXT, vocab_size=520)
    assert tok.mergeable_ranks == naive_train(TRAIN_TEXT, 520)


@pytest.fixture(scope="module")
def trained():
    return train_bpe(
        TRAIN_TEXT, vocab_size=600, special_tokens=["<|start|>", "<|end|>"], name="mine"
    )


def test_trained_tokenizer_agrees_with_tiktoken(trained):
    enc = tiktoken_encoding("mine", trained.mergeable_ranks, trained.special_tokens)
    assert trained.special_tokens == {"<|start|>": 600, "<|end|>": 601}
    for text in CORPUS + [SPECIAL_TEXT]:
        assert trained.encode(text, allowed_special="all") == enc.encode(
            text, allowed_special="all"
        )
        assert trained.decode(trained.encode(text, allowed_special="all")) == text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=80))
def test_trained_tokenizer_agrees_with_tiktoken_random(trained, text):
    enc = tiktoken_encoding("mine", trained.mergeable_ranks, trained.special_tokens)
    assert trained.encode_ordinary(text) == enc.encode_ordinary(text)


def test_save_load_roundtrip(trained, tmp_path):
    path = trained.save(tmp_path / "mine.tiktoken")
    # tiktoken's own reader parses our rank file
    assert load_tiktoken_bpe(str(path)) == trained.mergeable_ranks
    back = BPETokenizer.load(path)
    assert back.mergeable_ranks == trained.mergeable_ranks
    assert back.special_tokens == trained.special_tokens
    assert back.name == "mine" and back.n_vocab == 602 and back.pattern == O200K_PATTERN
    assert back.encode(SPECIAL_TEXT, allowed_special="all") == trained.encode(
        SPECIAL_TEXT, allowed_special="all"
    )
    assert back.token_id("<|end|>") == 601
    with pytest.raises(KeyError, match="<\\|call\\|>"):
        back.token_id("<|call|>")


def test_bad_inputs_raise_clearly(tmp_path):
    with pytest.raises(ValueError, match="256"):
        BPETokenizer({b"a": 0})
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe("abc", vocab_size=10)
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not-a-rank-line\n")
    with pytest.raises(ValueError, match="line 1"):
        BPETokenizer.load(bad)
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "missing.tiktoken")


def test_tiktoken_is_the_real_thing():
    # guard: the tiktoken we compare against is the Rust extension, not something of ours
    assert tiktoken.Encoding.__module__ == "tiktoken.core"
