"""TRAINING.md's tokenizer section says what the shipped tokenizer's files say (issue 11: it once
listed `<|start|>` as 4081 where the JSON says 4083). The expected values are read here
independently of tools/training_record.py: from the JSON, and from the tokenizer as
`load_tiny_tokenizer()` builds it, which encodes each special token to its id."""

import base64
import json
import re
import sys
from pathlib import Path

import pytest

from gptoss_edu.tiny import TINY_DIR, load_tiny_tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import training_record  # noqa: E402

ROW = re.compile(r"^\| (\d+) \| (.+) \|$")


def table_in_training_md() -> dict[str, int]:
    text = (TINY_DIR / "TRAINING.md").read_text()
    section = text.split(training_record.BEGIN, 1)[1].split(training_record.END, 1)[0]
    table = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            for name in re.findall(r"`([^`]+)`", m.group(2)):
                table[name.replace("\\|", "|")] = int(m.group(1))
    return table


def test_special_token_table_matches_the_json_and_the_tokenizer():
    table = table_in_training_md()
    meta = json.loads((TINY_DIR / "tokenizer.tiktoken.json").read_text())
    assert table == meta["special_tokens"]
    tok = load_tiny_tokenizer()
    for name in ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"):
        assert tok.encode(name, allowed_special="all") == [table[name]], name
    assert table["<|start|>"] == 4083  # the id TRAINING.md once got wrong (it said 4081)


def test_counts_in_training_md_match_the_ranks_file():
    lines = (TINY_DIR / "tokenizer.tiktoken").read_text().split()
    tokens = [base64.b64decode(t) for t in lines[0::2]]
    single = sum(len(t) == 1 for t in tokens)
    assert single == 256  # every byte value is a token of a byte-level BPE
    text = (TINY_DIR / "TRAINING.md").read_text()
    assert f"{len(tokens):,} byte-level BPE ranks" in text
    assert f"the {single} single bytes and {len(tokens) - single:,} merges" in text


def test_training_md_is_current():
    assert training_record.main(["--check"]) == 0


def test_a_wrong_id_is_caught(tmp_path):
    text = (TINY_DIR / "TRAINING.md").read_text().replace("| 4083 |", "| 4081 |", 1)
    fresh = training_record.updated(
        text, training_record.render_section(training_record.tokenizer_facts())
    )
    assert fresh != text and "| 4083 | `<\\|start\\|>` |" in fresh


def test_missing_markers_are_named():
    with pytest.raises(ValueError, match="lacks the markers"):
        training_record.updated("no markers here", "x")
