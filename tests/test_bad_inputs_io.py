"""Every bad I/O, config and command-line input the project handles (issue 12), one test each.

A reviewer's list: each test names the input a careless user or a hostile file gives, and checks
the error names the thing, the expected and the found value (never a traceback, a crash, a
silent fallback or a slow failure). Each of these failed on the code before issue 12.

Sections: safetensors files, index files, config vs weights, NaN/Inf weights, config.json fields
(both dialects), training state, the model + tokenizer loader, the command line.
"""

import json
import os
import re

import pytest
import torch
from independent import hf_config_dict

import gptoss_edu as ge
from gptoss_edu.__main__ import main
from gptoss_edu.checkpoint import CheckpointError, find_checkpoint, load_model_and_tokenizer
from gptoss_edu.checkpoint.safetensors import MAX_HEADER_BYTES, read_header
from gptoss_edu.tiny import tiny_path


def header_file(path, header: dict, data: bytes = b"", length: int | None = None):
    raw = json.dumps(header).encode()
    path.write_bytes((len(raw) if length is None else length).to_bytes(8, "little") + raw + data)
    return path


def rewrite_header(path, change):
    """Apply change(header dict) to a safetensors file's header, keeping its data bytes."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    change(header)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


# ------------------------------------------------------------------------- safetensors files
def test_header_length_of_4_gib_is_refused_before_reading(tmp_path):
    f = tmp_path / "big.safetensors"
    with open(f, "wb") as fh:  # a sparse 5 GB file: the old reader read 4 GiB into memory
        fh.write((4 * 2**30).to_bytes(8, "little"))
        fh.truncate(5 * 10**9)
    with pytest.raises(
        CheckpointError, match=f"exceeds the format's limit of {MAX_HEADER_BYTES:,}"
    ):
        read_header(f)


def test_json_nested_200k_deep_is_a_clear_error_not_recursion(tmp_path):
    f = tmp_path / "deep.safetensors"
    raw = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    f.write_bytes(len(raw).to_bytes(8, "little") + raw)
    with pytest.raises(CheckpointError, match="nested deeper than 4"):
        read_header(f)


def test_overlapping_data_offsets_are_refused(tmp_path):
    h = {
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
    }
    with pytest.raises(CheckpointError, match=r"b \(bytes 2\.\.6\) overlaps a"):
        read_header(header_file(tmp_path / "x.safetensors", h, bytes(6)))


def test_gap_between_tensors_is_refused(tmp_path):
    h = {
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]},
    }
    with pytest.raises(CheckpointError, match="leaves a gap after a"):
        read_header(header_file(tmp_path / "x.safetensors", h, bytes(8)))


def test_bytes_no_tensor_describes_are_refused(tmp_path):
    h = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}
    with pytest.raises(CheckpointError, match="4 bytes after the last tensor"):
        read_header(header_file(tmp_path / "x.safetensors", h, bytes(8)))


def test_unknown_dtype_and_bad_shape_named(tmp_path):
    h = {"a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}
    with pytest.raises(CheckpointError, match=r"'a'.*dtype must be one of"):
        read_header(header_file(tmp_path / "x.safetensors", h, bytes(4)))
    h = {"a": {"dtype": "U8", "shape": [True, 4], "data_offsets": [0, 4]}}
    with pytest.raises(CheckpointError, match="shape must be a list of non-negative integers"):
        read_header(header_file(tmp_path / "y.safetensors", h, bytes(4)))


def test_metadata_that_is_not_strings_is_refused(tmp_path):
    h = {"__metadata__": {"format": ["pt"]}}
    with pytest.raises(CheckpointError, match="__metadata__ must map strings to strings"):
        read_header(header_file(tmp_path / "x.safetensors", h))


# ------------------------------------------------------------------------- index files
@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "a\\..\\b"])
def test_index_naming_files_outside_the_checkpoint_is_refused(hf_ckpt, name):
    path, _, _ = hf_ckpt
    index = path / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    key = next(iter(data["weight_map"]))
    data["weight_map"][key] = name
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="plain names inside the checkpoint directory"):
        find_checkpoint(path)


@pytest.mark.parametrize(
    "index, message",
    [
        ([1, 2], "must be a JSON object with a 'weight_map'; found list"),
        ({"weight_map": ["a", "b"]}, "'weight_map' must be an object"),
        ({"weight_map": {"k": 3}}, r"must map tensor names \(str\) to file names \(str\)"),
    ],
)
def test_index_of_the_wrong_shape_is_a_clear_error(hf_ckpt, index, message):
    path, _, _ = hf_ckpt
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=message):
        find_checkpoint(path)


def test_index_that_puts_a_key_in_the_wrong_shard_is_refused(hf_ckpt):
    path, _, _ = hf_ckpt
    index = path / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    shards = sorted(set(data["weight_map"].values()))
    key = next(k for k, v in data["weight_map"].items() if v == shards[0])
    data["weight_map"][key] = shards[1]
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=f"says {key} is in {shards[1]}, but it is in"):
        find_checkpoint(path)


# ------------------------------------------------------------------------- config vs weights
def test_a_million_layers_in_config_with_four_in_the_file_fails_fast(original_ckpt):
    path, cfg, _ = original_ckpt
    (path / "config.json").write_text(json.dumps(dict(cfg, num_hidden_layers=1_000_000)))
    with pytest.raises(ValueError, match="num_hidden_layers = 1,000,000 is beyond any gpt-oss"):
        ge.load_checkpoint(path)
    # a plausible but wrong count is caught by the headers, before any spec is built
    (path / "config.json").write_text(json.dumps(dict(cfg, num_hidden_layers=4000)))
    n = cfg["num_hidden_layers"]
    with pytest.raises(CheckpointError, match=f"num_hidden_layers is 4000.*hold layers 0..{n - 1}"):
        ge.load_checkpoint(path)


def test_hf_config_with_a_billion_layers_builds_no_list(hf_ckpt):
    path, cfg, _ = hf_ckpt
    d = hf_config_dict(cfg)
    for n in (10**9, 1e9):  # an int beyond any gpt-oss; a float (JSON's 1e9)
        (path / "config.json").write_text(json.dumps(dict(d, num_hidden_layers=n)))
        with pytest.raises(ValueError, match="num_hidden_layers"):
            ge.checkpoint.read_config(path)


# ------------------------------------------------------------------------- NaN / Inf weights
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_bf16_weight_is_named_and_can_be_allowed(tmp_path, bad):
    from independent import random_config, random_original_tensors, write_original

    cfg = random_config(4)
    t = random_original_tensors(cfg, 4)
    t["block.1.attn.qkv.weight"][3, 5] = bad
    path = write_original(tmp_path / "m", cfg, t)
    with pytest.raises(CheckpointError, match=r"block\.1\.attn\.qkv\.weight holds 1 non-finite"):
        ge.load_checkpoint(path)
    with pytest.warns(UserWarning, match=r"\(3, 5\).*allow_nonfinite=True"):
        model = ge.load_checkpoint(path, allow_nonfinite=True)
    assert not torch.isfinite(model.block[1].attn.qkv.weight).all()


def test_nonfinite_in_hf_layout_names_the_files_key(tmp_path):
    from independent import random_config, random_original_tensors, write_hf_sharded

    cfg = random_config(5)
    t = random_original_tensors(cfg, 5)
    t["block.0.mlp.gate.weight"][0, 0] = float("nan")
    path = write_hf_sharded(tmp_path / "h2", cfg, t)
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.mlp\.router\.weight"):
        ge.load_checkpoint(path)


# ------------------------------------------------------------------------- config.json fields
def base_config(dialect):
    return ge.ModelConfig.tiny().to_dict(dialect)


@pytest.mark.parametrize("dialect", ["openai", "hf"])
@pytest.mark.parametrize(
    "change, message",
    [
        ({"rope_theta": 1}, "rope_theta must be > 1"),
        ({"rms_norm_eps": "1e-5"}, r"rms_norm_eps must be a number; found '1e-5' \(str\)"),
        ({"num_attention_heads": 0}, "num_attention_heads must be positive"),
        ({"num_hidden_layers": True}, r"num_hidden_layers must be an integer; found True"),
        ({"hidden_size": -128}, "hidden_size must be positive"),
        ({"sliding_window": 12.0}, r"sliding_window must be an integer; found 12\.0"),
        ({"swiglu_limit": float("nan")}, "swiglu_limit must be a positive finite number"),
        ({"rope_theta": "1e5"}, "rope_theta must be a number"),
    ],
)
def test_config_field_errors_name_the_field(tmp_path, dialect, change, message):
    d = base_config(dialect)
    if dialect == "hf" and "num_experts" in change:
        change = {"num_local_experts": change["num_experts"]}
    f = tmp_path / "config.json"
    f.write_text(json.dumps(dict(d, **change)))
    with pytest.raises(ValueError, match=message) as e:
        ge.ModelConfig.from_json(f)
    assert str(e.value).startswith(str(f))


def test_hf_heads_zero_without_head_dim_is_not_zerodivision(tmp_path):
    d = base_config("hf")
    del d["head_dim"]
    d["num_attention_heads"] = 0
    with pytest.raises(ValueError, match="num_attention_heads must be a positive integer"):
        ge.ModelConfig.from_dict(d)


def test_hf_rope_scaling_as_a_string_is_a_clear_error():
    with pytest.raises(ValueError, match="rope_scaling must be an object"):
        ge.ModelConfig.from_dict(dict(base_config("hf"), rope_scaling="yarn"))


def test_config_json_nested_deep_or_not_utf8(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not valid JSON"):
        ge.ModelConfig.from_json(f)
    f.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        ge.ModelConfig.from_json(f)


def test_layer_types_of_the_wrong_length_is_named():
    d = dict(base_config("hf"), layer_types=["sliding_attention"])
    with pytest.raises(ValueError, match="layer_types must be a list of num_hidden_layers = 4"):
        ge.ModelConfig.from_dict(d)


# ------------------------------------------------------------------------- training state
@pytest.fixture
def saved_state(tmp_path):
    from gptoss_edu.train import History, TrainConfig, make_optimizer, save_state

    model = ge.GptOss(ge.ModelConfig.tiny().replace(num_hidden_layers=2, vocab_size=300))
    opt = make_optimizer(model, TrainConfig())
    save_state(tmp_path / "state", model, opt, 7, History(), TrainConfig())
    return tmp_path / "state", model, opt


def test_truncated_state_json_names_the_file(saved_state):
    from gptoss_edu.train import load_state

    path, model, opt = saved_state
    js = path / "state.json"
    js.write_text(js.read_text()[:40])
    with pytest.raises(ValueError, match=r"state\.json: not valid JSON"):
        load_state(path, model, opt)


def test_corrupt_state_safetensors_is_a_clear_error(saved_state):
    from gptoss_edu.train import load_state

    path, model, opt = saved_state
    st = path / "state.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"state\.safetensors: truncated safetensors file"):
        load_state(path, model, opt)


def test_state_files_from_two_saves_are_refused(saved_state):
    from gptoss_edu.train import load_state

    path, model, opt = saved_state
    js = path / "state.json"
    meta = json.loads(js.read_text())
    js.write_text(json.dumps(dict(meta, step=9)))  # weights of step 7, counter of step 9
    with pytest.raises(ValueError, match="at step 9 but state.safetensors at step '7'"):
        load_state(path, model, opt)


def test_resume_with_damaged_state_exits_2_without_traceback(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "state").mkdir(parents=True)
    (out / "state" / "state.json").write_text("{")
    (out / "state" / "state.safetensors").write_bytes(b"\0" * 16)
    text = tmp_path / "t.txt"
    text.write_text("def f(x):\n    return x\n" * 200)
    tok = str(tiny_path() / "tokenizer.tiktoken")
    argv = ["train", "--out", str(out), "--resume", "--text", str(text), "--tokenizer", tok]
    argv += ["--layers", "1", "--steps", "1", "--seq-len", "16", "--batch-size", "2"]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: load_state" in err and "Traceback" not in err


def test_resume_without_state_is_refused_before_any_work(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("x")  # far too little to train a tokenizer: the state check must come first
    argv = ["train", "--out", str(tmp_path / "o"), "--resume", "--text", str(text)]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: train --resume: no training state in" in err


def test_files_from_that_does_not_exist_is_named(tmp_path, capsys):
    argv = ["train", "--out", str(tmp_path / "o"), "--files-from", str(tmp_path / "nope.txt")]
    assert main(argv) == 2
    assert f"--files-from {tmp_path / 'nope.txt'} does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------- model + tokenizer
def test_generate_uses_the_checkpoints_own_tokenizer(tiny_copy):
    model, tok = load_model_and_tokenizer(tiny_copy)
    assert tok.n_vocab == model.config.vocab_size == 4096  # the tiny BPE, not o200k


def test_checkpoint_without_tokenizer_and_small_vocab_is_refused(tiny_copy):
    (tiny_copy / "tokenizer.tiktoken").unlink()
    with pytest.raises(ValueError, match="o200k_harmony.*vocab_size is 4096"):
        load_model_and_tokenizer(tiny_copy)


def test_generate_cli_with_checkpoint_prints_tiny_tokens(tiny_copy, capsys):
    args = ["generate", "--checkpoint", str(tiny_copy), "--prompt", "def ", "--seed", "0"]
    assert main([*args, "--max-new-tokens", "8", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    # the same greedy tokens, decoded by the tiny model's own BPE, computed without the CLI
    tok = ge.tokenizer.BPETokenizer.load(tiny_copy / "tokenizer.tiktoken")
    model = ge.load_checkpoint(tiny_copy, dtype=torch.bfloat16)
    new = ge.generate(model, tok.encode("def "), max_new_tokens=8, temperature=0.0)
    assert out == "def " + tok.decode(new) + "\n"


# ------------------------------------------------------------------------- the command line
def exit_code(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return e.value.code, err


@pytest.mark.parametrize(
    "option", ["--steps", "--eval-every", "--batch-size", "--threads", "--seq-len"]
)
def test_train_zero_counts_exit_2(tmp_path, capsys, option):
    code, err = exit_code(capsys, ["train", "--out", str(tmp_path / "o"), option, "0"])
    assert code == 2 and f"{option}: expected an integer >= 1; found 0" in err


def test_train_out_that_is_a_file_exits_2(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = exit_code(capsys, ["train", "--out", str(f)])
    assert code == 2 and "is a file; give a directory" in err


def test_train_text_with_zero_files_exits_2(tmp_path, capsys):
    code, err = exit_code(capsys, ["train", "--out", str(tmp_path / "o"), "--text"])
    assert code == 2 and "--text: expected at least one argument" in err


def test_info_on_a_bad_index_exits_2(hf_ckpt, capsys):
    path, _, _ = hf_ckpt
    (path / "model.safetensors.index.json").write_text("[]")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "weight_map" in err


def test_chat_negative_max_new_tokens_is_refused_before_loading(capsys, monkeypatch):
    import gptoss_edu.checkpoint

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(gptoss_edu.checkpoint, "load_model_and_tokenizer", no_loading)
    code, err = exit_code(capsys, ["chat", "--tiny", "--max-new-tokens", "-1"])
    assert code == 2 and "--max-new-tokens: expected an integer >= 0; found -1" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-new-tokens", "-1"], "expected an integer >= 0"),
        (["--temperature", "nan"], "expected a finite number >= 0"),
        (["--top-p", "0"], r"expected a number in \(0, 1\]"),
        (["--checkpoint", "/nonexistent/dir"], "does not exist"),
    ],
)
def test_generate_bad_arguments_exit_2(capsys, args, message):
    code, err = exit_code(capsys, ["generate", "--prompt", "x", *args])
    assert code == 2 and "error:" in err
    assert re.search(message, err)


def test_bench_unknown_name_exits_2(capsys):
    assert main(["bench", "nope"]) == 2
    assert "no benchmark 'nope'; expected one of:" in capsys.readouterr().err


def test_train_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--steps", "--batch-size", "--lr", "--eval-every", "--threads", "--seed"):
        assert option in text
    assert "(default: 1000)" in text and "(default: 0.003)" in text and "(default: 2)" in text


def test_saved_checkpoint_has_normal_modes(tmp_path):
    old = os.umask(0o022)
    try:
        path = ge.checkpoint.write_synthetic(tmp_path / "c", ge.ModelConfig.tiny())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755  # was 0700 (mkdtemp)


def test_public_names_still_import():
    from gptoss_edu.checkpoint import (  # noqa: F401  everything public before the package split
        OPENAI_KEYS,
        CheckpointError,
        CheckpointFiles,
        _hf_names,
        find_checkpoint,
        hf_spec,
        load_checkpoint,
        original_spec,
        read_config,
        save_checkpoint,
        spec_shape_out,
        write_synthetic,
    )

    assert ge.load_checkpoint is load_checkpoint and ge.save_checkpoint is save_checkpoint
    assert issubclass(CheckpointError, ValueError)
