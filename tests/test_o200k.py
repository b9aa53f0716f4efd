"""o200k.py: the real vocabulary offline, SPEC.md's special-token ids, both engines agree with
tiktoken's own o200k_harmony definition, and a clear error when no source exists."""

import gzip
import hashlib

import pytest
import tiktoken

from gptoss_edu.tokenizer import o200k
from gptoss_edu.tokenizer.o200k import find_o200k_file, o200k_harmony

# SPEC.md's table, typed by hand
SPEC_IDS = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|call|>": 200012,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
}
SHIPPED_GZ = o200k._shipped_path()


@pytest.fixture(scope="module", params=["tiktoken", "python"])
def tok(request):
    return o200k_harmony(engine=request.param)


def test_special_token_ids_match_spec(tok):
    for name, i in SPEC_IDS.items():
        assert tok.token_id(name) == i
        assert tok.encode(name, allowed_special="all") == [i]
        assert tok.decode([i]) == name
    assert tok.n_vocab == 201088
    assert tok.name == "o200k_harmony"
    # every other id 200000..201087 is <|reserved_N|>
    named = set(SPEC_IDS.values())
    for i in (200000, 200001, 200004, 200009, 200011, 200013, 200500, 201087):
        assert i not in named and tok.token_id(f"<|reserved_{i}|>") == i


def test_hello_world(tok):
    assert tok.encode("hello world") == [24912, 2375]  # openai/harmony's test value


@pytest.fixture(scope="module")
def tiktoken_own(tmp_path_factory):
    """tiktoken's own o200k_harmony, its cache seeded with the shipped copy (no download)."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    key = hashlib.sha1(o200k.O200K_URL.encode()).hexdigest()
    (cache / key).write_bytes(gzip.decompress(SHIPPED_GZ.read_bytes()))
    mp = pytest.MonkeyPatch()
    mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    try:
        yield tiktoken.get_encoding("o200k_harmony")
    finally:
        mp.undo()


def test_same_specials_and_ids_as_tiktokens_own_definition(tok, tiktoken_own):
    assert tok.special_tokens == tiktoken_own._special_tokens
    text = "Olá 世界 🙂 <|start|>user<|message|>x = 1_000\n\n  y<|end|>"
    ids = tiktoken_own.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special="all") == ids
    assert tok.decode(ids) == text
    for i in (199998, 200018, 200013, 201087):
        assert tok.decode([i]) == tiktoken_own.decode([i])


def test_sources_in_order(tmp_path, monkeypatch):
    raw = gzip.decompress(SHIPPED_GZ.read_bytes())
    monkeypatch.delenv(o200k.ENV_VAR, raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    # 3. only the copy shipped as package data
    assert find_o200k_file()[1].startswith("copy shipped with gptoss-edu")
    # 2. tiktoken's cache wins over it
    (cache / hashlib.sha1(o200k.O200K_URL.encode()).hexdigest()).write_bytes(raw)
    assert find_o200k_file()[1].startswith("tiktoken cache")
    # 1. an explicit file wins over both, plain or gzip
    plain = tmp_path / "o200k_base.tiktoken"
    plain.write_bytes(raw)
    data, src = find_o200k_file(plain)
    assert (
        src.startswith("explicit file") and hashlib.sha256(data).hexdigest() == o200k.O200K_SHA256
    )
    monkeypatch.setenv(o200k.ENV_VAR, str(SHIPPED_GZ))
    assert find_o200k_file()[1].startswith("explicit file")


def test_wrong_explicit_file_raises(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"aGVsbG8= 0\n")
    with pytest.raises(ValueError, match="sha256"):
        find_o200k_file(bad)


def test_error_names_all_three_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(o200k.ENV_VAR, raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(
        o200k, "_shipped_path", lambda: tmp_path / "not-shipped" / "o200k_base.tiktoken.gz"
    )
    with pytest.raises(FileNotFoundError) as e:
        o200k_harmony(path=tmp_path / "nope.tiktoken")
    msg = str(e.value)
    for part in (
        "explicit file",
        "nope.tiktoken",
        "tiktoken cache",
        "empty-cache",
        "copy shipped with gptoss-edu",
        "not-shipped",
        "--force-reinstall",
    ):
        assert part in msg
    with pytest.raises(ValueError, match="engine"):
        o200k_harmony(engine="rust")
