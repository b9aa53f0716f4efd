"""The reference card (book/appendix_reference_card.md) says what the code says.

Every table row of the card has a key (first column, in backticks) and one value per model, or one
value for both. Each key is computed here from the package (`ModelConfig`, `count_parameters`,
`kv_cache_bytes`, YaRN, MXFP4, the tokenizer); a number on the card that differs from the code,
a row without a checker or a checker without a row fails. The YaRN numbers are also recomputed
from their formulas with `math` alone, and the E2M1 table from `dequantize`, so that a wrong
formula in the code cannot agree with itself.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

import gptoss_edu as ge
from gptoss_edu.params import kv_cache_bytes, kv_cache_bytes_per_token

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "book" / "appendix_reference_card.md"
MODELS = ("gpt_oss_20b", "gpt_oss_120b")
UNITS = {"GB": 1e9, "GiB": 2**30, "KiB": 2**10}


def _yarn_concentration(cfg):
    from gptoss_edu.model.rope import yarn_inv_freq

    return yarn_inv_freq(cfg)[1]


def _mxfp4_expert_bytes(cfg):
    """Bytes of the expert blocks + scales as stored, from the checkpoint's own key list."""
    from gptoss_edu.checkpoint import original_spec

    return sum(
        math.prod(shape) * dtype.itemsize
        for key, (shape, dtype) in original_spec(cfg).items()
        if key.endswith((".blocks", ".scales"))
    )


PER_MODEL = {  # key -> f(config) -> value
    "num_hidden_layers": lambda c: c.num_hidden_layers,
    "num_experts": lambda c: c.num_experts,
    "experts_per_token": lambda c: c.experts_per_token,
    "hidden_size": lambda c: c.hidden_size,
    "intermediate_size": lambda c: c.intermediate_size,
    "num_attention_heads": lambda c: c.num_attention_heads,
    "num_key_value_heads": lambda c: c.num_key_value_heads,
    "head_dim": lambda c: c.head_dim,
    "q_dim": lambda c: c.q_dim,
    "kv_dim": lambda c: c.kv_dim,
    "qkv_dim": lambda c: c.qkv_dim,
    "vocab_size": lambda c: c.vocab_size,
    "sliding_window": lambda c: c.sliding_window,
    "sliding_layers": lambda c: sum(c.is_sliding(i) for i in range(c.num_hidden_layers)),
    "attention_scale": lambda c: 1 / math.sqrt(c.head_dim),
    "rms_norm_eps": lambda c: c.rms_norm_eps,
    "swiglu_limit": lambda c: c.swiglu_limit,
    "swiglu_alpha": lambda c: c.swiglu_alpha,
    "rope_theta": lambda c: c.rope_theta,
    "rope_scaling_factor": lambda c: c.rope_scaling_factor,
    "rope_ntk_alpha": lambda c: c.rope_ntk_alpha,
    "rope_ntk_beta": lambda c: c.rope_ntk_beta,
    "initial_context_length": lambda c: c.initial_context_length,
    "max_context_length": lambda c: c.max_context_length,
    "yarn_low": lambda c: c.yarn_bounds()[0],
    "yarn_high": lambda c: c.yarn_bounds()[1],
    "yarn_concentration": _yarn_concentration,
    "total_parameters": lambda c: ge.count_parameters(c).total,
    "active_parameters": lambda c: ge.count_parameters(c).active,
    "embedding_parameters": lambda c: ge.count_parameters(c).embedding,
    "attention_parameters": lambda c: ge.count_parameters(c).attention,
    "router_parameters": lambda c: ge.count_parameters(c).router,
    "expert_parameters": lambda c: ge.count_parameters(c).experts,
    "parameters_per_expert": lambda c: (
        ge.count_parameters(c).experts // c.num_hidden_layers // c.num_experts
    ),
    "expert_share_percent": lambda c: (
        100 * ge.count_parameters(c).experts / ge.count_parameters(c).total
    ),
    "checkpoint_bytes": lambda c: ge.count_parameters(c).checkpoint_bytes,
    "mxfp4_expert_bytes": _mxfp4_expert_bytes,
    "bf16_bytes": lambda c: ge.count_parameters(c).bf16_bytes,
    "bits_per_parameter": lambda c: (
        8 * ge.count_parameters(c).checkpoint_bytes / ge.count_parameters(c).total
    ),
    "kv_cache_bytes_per_token": kv_cache_bytes_per_token,
    "kv_cache_bytes_4096": lambda c: kv_cache_bytes(c, 4096),
    "kv_cache_bytes_131072": lambda c: kv_cache_bytes(c, 131072),
    "forward_flops_per_token": lambda c: 2 * ge.count_parameters(c).active,
    "training_flops_per_token": lambda c: 6 * ge.count_parameters(c).active,
    "adamw_state_gib": lambda c: 16 * ge.count_parameters(c).total / 2**30,
}


def _special(name):
    from gptoss_edu.tokenizer.o200k import harmony_special_tokens

    return harmony_special_tokens()[name]


def _stop_tokens(name):
    from gptoss_edu.tokenizer import harmony

    return sorted(getattr(harmony, name))


SHARED = {  # key -> () -> value (or list of values)
    "mxfp4_block_size": lambda: ge.mxfp4.BLOCK_SIZE,
    "mxfp4_bytes_per_block": lambda: ge.mxfp4.BYTES_PER_BLOCK + 1,
    "mxfp4_bits_per_weight": lambda: (ge.mxfp4.BYTES_PER_BLOCK + 1) * 8 / ge.mxfp4.BLOCK_SIZE,
    "e8m0_bias": lambda: ge.mxfp4.SCALE_BIAS,
    "e8m0_nan": lambda: ge.mxfp4.SCALE_NAN,
    "e2m1_values": lambda: list(ge.mxfp4.FP4_VALUES),
    "o200k_n_vocab": lambda: __import__("gptoss_edu.tokenizer.o200k").tokenizer.o200k.N_VOCAB,
    "o200k_bpe_ranks": lambda: (
        __import__("gptoss_edu.tokenizer.o200k").tokenizer.o200k.O200K_N_RANKS
    ),
    "stop_tokens": lambda: _stop_tokens("STOP_TOKENS"),
    "stop_tokens_assistant_actions": lambda: _stop_tokens("STOP_TOKENS_ASSISTANT_ACTIONS"),
}
SPECIAL_ROW = re.compile(r"^<\|\w+\|>$")

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")


def parse_card(text: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """{key: (value cells...)} from every table row whose first cell is a `key`; also problems
    (duplicate keys)."""
    rows, problems = {}, []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        key = cells[0].strip("`").replace("\\|", "|")
        values = tuple(cells[2:-1])  # after the description, before the chapter column
        if key in rows:
            problems.append(f"{key}: two rows")
        rows[key] = values
    return rows, problems


def _decimals(token: str) -> int:
    mantissa = token.split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def compare_number(key: str, cell: str, value) -> list[str]:
    """The cell's first number equals value to the printed precision; so does each
    parenthesised '(x UNIT)'."""
    tokens = NUMBER.findall(cell)
    if not tokens:
        return [f"{key}: no number in {cell!r}"]
    token = tokens[0].replace(",", "")
    card = float(token)
    problems = []
    if "e" in token:  # scientific: compare the printed significant digits
        digits = _decimals(token)
        exp = int(token.split("e")[1])
        ok = abs(card - value) <= 0.5 * 10 ** (exp - digits) * (1 + 1e-9)
    elif "." in token or not float(value).is_integer():
        ok = abs(card - value) <= 0.5 * 10 ** -_decimals(token) * (1 + 1e-9)
    else:
        ok = int(token) == int(value)
    if not ok:
        problems.append(f"{key}: the card says {tokens[0]}, the code gives {value!r}")
    for amount, unit in re.findall(r"(\d[\d,]*\.?\d*) (GB|GiB|KiB)\b", cell):
        shown = float(amount.replace(",", ""))
        d = _decimals(amount)
        if abs(shown - value / UNITS[unit]) > 0.5 * 10**-d * (1 + 1e-9):
            problems.append(
                f"{key}: the card says {amount} {unit}, the code gives "
                f"{value / UNITS[unit]:.{d + 2}f} {unit}"
            )
    return problems


def compare_list(key: str, cell: str, values) -> list[str]:
    shown = [float(t.strip()) for t in cell.split(",")]
    if len(shown) != len(values) or any(
        a != b or math.copysign(1, a) != math.copysign(1, b) for a, b in zip(shown, values)
    ):
        return [f"{key}: the card lists {cell!r}, the code gives {values!r}"]
    return []


def check_card(text: str) -> list[str]:
    rows, problems = parse_card(text)
    configs = {m: getattr(ge.ModelConfig, m)() for m in MODELS}
    for key, cells in rows.items():
        if key in PER_MODEL:
            if len(cells) != 2:
                problems.append(f"{key}: expected a 20b and a 120b column, found {cells!r}")
                continue
            for model, cell in zip(MODELS, cells):
                problems += compare_number(f"{key} ({model})", cell, PER_MODEL[key](configs[model]))
        elif key in SHARED or SPECIAL_ROW.match(key):
            (cell,) = cells
            value = _special(key) if SPECIAL_ROW.match(key) else SHARED[key]()
            if isinstance(value, list):
                problems += compare_list(key, cell, value)
            else:
                problems += compare_number(key, cell, value)
        else:
            problems.append(f"{key}: a row of the card that no check knows; add one to this test")
    for key in [*PER_MODEL, *SHARED]:
        if key not in rows:
            problems.append(f"{key}: checked here but missing from the card")
    return problems


def test_card_matches_the_code():
    text = CARD.read_text()
    rows, _ = parse_card(text)
    assert len(rows) >= 60, f"only {len(rows)} rows parsed: has the table format changed?"
    assert check_card(text) == []


def test_a_changed_number_on_the_card_fails():
    text = CARD.read_text()
    wrong = text.replace("| 20,914,757,184 |", "| 20,914,757,185 |", 1)
    assert wrong != text
    assert any("total_parameters (gpt_oss_20b)" in p for p in check_card(wrong))
    wrong = text.replace("(12.82 GiB)", "(12.83 GiB)").replace("12.82 GiB)", "12.83 GiB)")
    assert any("GiB" in p for p in check_card(wrong))
    wrong = text.replace("| `<\\|start\\|>` | special token id: begins a message | 200006 |",
                         "| `<\\|start\\|>` | special token id: begins a message | 200005 |")  # fmt: skip
    assert wrong != text and any("<|start|>" in p for p in check_card(wrong))


def test_a_changed_config_fails(monkeypatch):
    real = ge.ModelConfig.gpt_oss_20b
    monkeypatch.setattr(
        ge.ModelConfig, "gpt_oss_20b", classmethod(lambda cls: real().replace(sliding_window=256))
    )
    problems = check_card(CARD.read_text())
    assert any(p.startswith("sliding_window (gpt_oss_20b)") for p in problems)
    assert any(p.startswith("kv_cache_bytes_4096 (gpt_oss_20b)") for p in problems)


def test_yarn_numbers_from_their_formulas():
    """Independent of the code: SPEC's formulas with math alone."""
    rows, _ = parse_card(CARD.read_text())
    d_half, theta, ctx, alpha, beta, factor = 32, 150000, 4096, 1, 32, 32
    low = d_half * math.log(ctx / (beta * 2 * math.pi)) / math.log(theta)
    high = d_half * math.log(ctx / (alpha * 2 * math.pi)) / math.log(theta)
    for key, value in (("yarn_low", low), ("yarn_high", high)):
        assert compare_number(key, rows[key][0], value) == []
    assert compare_number("c", rows["yarn_concentration"][0], 0.1 * math.log(factor) + 1) == []


def test_e2m1_values_from_dequantize():
    """The card's table, decoded by the package from every code with scale 2^0."""
    rows, _ = parse_card(CARD.read_text())
    codes = torch.arange(16, dtype=torch.uint8)
    blocks = (codes[0::2] | (codes[1::2] << 4)).reshape(1, 1, 8)
    blocks = torch.cat([blocks, torch.zeros(1, 1, 8, dtype=torch.uint8)], -1)  # one block of 16 B
    scales = torch.full((1, 1), ge.mxfp4.SCALE_BIAS, dtype=torch.uint8)
    decoded = ge.mxfp4.dequantize(blocks, scales, torch.float32)[0, :16].tolist()
    assert compare_list("e2m1_values", rows["e2m1_values"][0], decoded) == []


def test_special_tokens_encode_to_the_card_ids():
    """With the vocabulary available, the real tokenizer encodes each special token to its id."""
    rows, _ = parse_card(CARD.read_text())
    try:
        tok = ge.tokenizer.o200k_harmony()
    except FileNotFoundError as e:  # the vocabulary ships with the package; say why if not
        pytest.skip(f"o200k vocabulary not available: {e}")
    specials = [k for k in rows if SPECIAL_ROW.match(k)]
    assert len(specials) == 10
    for name in specials:
        assert tok.encode(name, allowed_special="all") == [int(rows[name][0])], name
    assert tok.n_vocab == int(rows["o200k_n_vocab"][0].replace(",", ""))
