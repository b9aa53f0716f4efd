"""The public API still imports and works (issue 12: restructuring must not break users).

Two lists: DESIGN.md's public API, exercised on the tiny config (each call checked against an
independent expectation); and every module-level public name the package had on 2026-11-29,
before the checkpoint/harmony/import restructuring, each of which must still import from the
module it was in.
"""

import importlib
import json

import pytest
import torch

import gptoss_edu as ge

TODAY = {  # module -> its public names on 2026-11-29 (before issue 12's restructuring)
    "gptoss_edu": (
        "GptOss KVCache ModelConfig chat checkpoint config count_parameters exercises generate "
        "harmony kernels load_checkpoint load_tiny model mxfp4 params save_checkpoint tokenizer "
        "train viz"
    ),
    "gptoss_edu.checkpoint": (
        "BF16 CheckpointError CheckpointFiles OPENAI_KEYS U8 find_checkpoint hf_spec "
        "load_checkpoint original_spec read_config save_checkpoint spec_shape_out write_synthetic"
    ),
    "gptoss_edu.config": "MXFP4_BLOCK ModelConfig OPENAI_KEYS",
    "gptoss_edu.conversation": "chat cli",
    "gptoss_edu.exercises": "Checker ExerciseFailure run_check",
    "gptoss_edu.exercises.ch01_tokens": (
        "TRAIN_TEXT check_decode check_encode check_merge check_pair_counts check_split_numbers "
        "check_train"
    ),
    "gptoss_edu.exercises.ch02_harmony": (
        "REPLIES check_kept_messages check_parse_reply check_render_message check_stop_tokens "
        "check_system_message check_tool_call"
    ),
    "gptoss_edu.exercises.ch03_norm": (
        "check_embedding_lookup check_norm_parameters check_pre_norm check_rmsnorm "
        "check_rmsnorm_bf16"
    ),
    "gptoss_edu.exercises.ch04_rope": (
        "check_apply_rotary check_rope_cos_sin check_rope_inv_freq check_yarn_bounds "
        "check_yarn_inv_freq"
    ),
    "gptoss_edu.exercises.ch05_attention": (
        "check_attention_with_sink check_causal_attention check_gqa_attention "
        "check_kv_cache_bytes check_sliding_window_mask"
    ),
    "gptoss_edu.exercises.ch06_moe": "check_active_parameters check_expert check_moe_layer check_router check_swiglu",
    "gptoss_edu.exercises.ch07_model": (
        "check_block_forward check_checkpoint_bytes check_layer_types check_model_forward "
        "check_total_parameters"
    ),
    "gptoss_edu.exercises.ch08_mxfp4": (
        "check_decode_e2m1 check_decode_scale check_dequantize_mxfp4 check_mxfp4_bytes "
        "check_quantize_block check_unpack_nibbles"
    ),
    "gptoss_edu.exercises.ch09_routing": (
        "check_exclusive_prefix_sum check_histogram check_inverse_permutation check_route "
        "check_stable_scatter check_topk_softmax"
    ),
    "gptoss_edu.exercises.ch10_matmul": (
        "check_arithmetic_intensity check_effective_gbs check_mxfp4_gemv check_packed_bytes "
        "check_roofline_seconds"
    ),
    "gptoss_edu.exercises.ch11_generation": "NEG check_greedy_generate check_stream_pieces check_temperature check_top_k check_top_p",
    "gptoss_edu.exercises.ch12_checkpoints": "check_hf_key check_loaded_bytes check_read_header check_read_tensor",
    "gptoss_edu.generation": "generate sample_next stream_text",
    "gptoss_edu.harmony": (
        "CALL CHANNEL CONSTRAIN Conversation DeveloperContent END END_TOKENS FORMAT_TOKENS "
        "MESSAGE MODEL_IDENTITY Message ParseResult REASONING_EFFORTS RETURN ROLES START "
        "STOP_TOKENS STOP_TOKENS_ASSISTANT_ACTIONS Segment StreamParser SystemContent Tool "
        "assistant developer kept_messages parse parse_header render render_developer_content "
        "render_segments render_system_content render_tokens render_tools schema_to_typescript "
        "stop_tokens system tool_call tool_result user"
    ),
    "gptoss_edu.kernels": (
        "BACKENDS MoEWeights Routing available_backends get_backend moe_forward mxfp4_linear "
        "route warmup"
    ),
    "gptoss_edu.kernels.cuda": "build is_available is_built moe_forward mxfp4_linear route",
    "gptoss_edu.kernels.cuda.build": "build is_available is_built moe_forward mxfp4_linear route",
    "gptoss_edu.kernels.numba_cpu": "is_available moe_forward mxfp4_linear route warmup",
    "gptoss_edu.kernels.numba_cuda": "is_available moe_forward mxfp4_linear route",
    "gptoss_edu.kernels.reference": (
        "MoEWeights Routing check_linear_args check_moe_args check_route_args moe_forward "
        "moe_forward_per_token mxfp4_linear route swiglu"
    ),
    "gptoss_edu.model": (
        "AttentionBlock GptOss KVCache MLPBlock RMSNorm RotaryEmbedding TransformerBlock "
        "apply_rotary sdpa_with_sinks swiglu yarn_inv_freq"
    ),
    "gptoss_edu.model.attention": "AttentionBlock KVCache attention_mask sdpa_with_sinks",
    "gptoss_edu.model.moe": "EXPERT_MODES MLPBlock MXFP4Weight swiglu",
    "gptoss_edu.model.norm": "RMSNorm",
    "gptoss_edu.model.rope": "RotaryEmbedding apply_rotary yarn_inv_freq",
    "gptoss_edu.model.transformer": "GptOss TransformerBlock",
    "gptoss_edu.mxfp4": (
        "BLOCK_SIZE BYTES_PER_BLOCK FP4_VALUES MXFP4Tensor SCALE_BIAS SCALE_NAN ZERO_BLOCK_SCALE "
        "dequantize quantize scale_table unpack_codes"
    ),
    "gptoss_edu.params": (
        "ParameterCount count_parameters format_bytes format_count kv_cache_bytes "
        "kv_cache_bytes_per_token"
    ),
    "gptoss_edu.tiny": "TINY_DIR TOKENIZER_FILE load_tiny load_tiny_tokenizer tiny_path",
    "gptoss_edu.tokenizer": (
        "BPETokenizer O200K_PATTERN TiktokenTokenizer Tokenizer bpe_merge find_o200k_file harmony "
        "harmony_special_tokens load_o200k_ranks o200k_harmony tiktoken_encoding train_bpe"
    ),
    "gptoss_edu.tokenizer.bpe": "BPETokenizer O200K_PATTERN Tokenizer bpe_merge load_rank_file parse_rank_file train_bpe",
    "gptoss_edu.tokenizer.harmony": (
        "CALL CHANNEL CONSTRAIN Conversation DeveloperContent END END_TOKENS FORMAT_TOKENS "
        "MESSAGE MODEL_IDENTITY Message ParseResult REASONING_EFFORTS RETURN ROLES START "
        "STOP_TOKENS STOP_TOKENS_ASSISTANT_ACTIONS Segment StreamParser SystemContent Tool "
        "assistant developer kept_messages parse parse_header render render_developer_content "
        "render_segments render_system_content render_tokens render_tools schema_to_typescript "
        "stop_tokens system tool_call tool_result user"
    ),
    "gptoss_edu.tokenizer.o200k": (
        "ENV_VAR N_VOCAB O200K_N_RANKS O200K_SHA256 O200K_URL TiktokenTokenizer find_o200k_file "
        "harmony_special_tokens load_o200k_ranks o200k_harmony tiktoken_encoding"
    ),
    "gptoss_edu.train": (
        "HELDOUT_EVERY HELDOUT_OFFSET History RouterTap TrainConfig build_parser cli compute_loss "
        "corpus_sha256 encode_documents eval_windows evaluate expert_load get_batch "
        "harmony_specials_for load_balancing_loss load_state make_optimizer ngram_baselines "
        "plot_losses read_documents router_z_loss save_state split_heldout stdlib_corpus_files "
        "train train_tokenizer"
    ),
    "gptoss_edu.viz": "draw_model",
    "gptoss_edu.viz.diagram": "PARTS draw_model",
    "gptoss_edu.viz.explorer": (
        "ExpertExplorer Routing Trace compute_routing detail_rows expert_colors plot_expert_grid "
        "plot_expert_load plot_router_entropy routing_from_tokens token_pieces trace"
    ),
    "gptoss_edu.viz.sinks": "SinkViewer plot_sink_weights sink_weights sink_weights_from_tokens",
}


@pytest.mark.parametrize("module", sorted(TODAY))
def test_todays_public_names_still_import(module):
    mod = importlib.import_module(module)
    missing = [name for name in TODAY[module].split() if not hasattr(mod, name)]
    assert not missing, f"{module} lost public names: {missing}"


def test_package_attributes_are_the_modules_and_functions():
    # plain imports: ge.X is the object defined in its module ("go to definition" works)
    from gptoss_edu.checkpoint import load_checkpoint, save_checkpoint
    from gptoss_edu.config import ModelConfig
    from gptoss_edu.model.transformer import GptOss

    assert ge.GptOss is GptOss and ge.ModelConfig is ModelConfig
    assert ge.load_checkpoint is load_checkpoint and ge.save_checkpoint is save_checkpoint
    for name in ("harmony", "kernels", "tokenizer", "mxfp4", "viz", "train", "exercises"):
        assert getattr(ge, name) is importlib.import_module(f"gptoss_edu.{name}"), name
    assert not hasattr(ge, "_LAZY") and "__getattr__" not in vars(ge)
    assert set(ge.__all__) >= set(TODAY["gptoss_edu"].split())


def test_import_is_light():
    # numba, tiktoken, transformers, matplotlib and ipywidgets load inside the functions that
    # need them, never on `import gptoss_edu` (checked in a fresh interpreter)
    import subprocess
    import sys

    code = (
        "import sys, gptoss_edu\n"
        "heavy = ['numba', 'tiktoken', 'transformers', 'matplotlib', 'ipywidgets']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- DESIGN.md's public API, on the tiny config -----------------------------------------


def test_model_config_constructors(tmp_path):
    cfg20, cfg120 = ge.ModelConfig.gpt_oss_20b(), ge.ModelConfig.gpt_oss_120b()
    assert (cfg20.num_hidden_layers, cfg20.num_experts) == (24, 32)  # SPEC.md
    assert (cfg120.num_hidden_layers, cfg120.num_experts) == (36, 128)
    tiny = ge.ModelConfig.tiny()
    tiny.to_json(tmp_path / "config.json")
    assert ge.ModelConfig.from_json(tmp_path / "config.json") == tiny
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == (
        tiny.num_hidden_layers
    )


@pytest.mark.slow  # save + load in two layouts: a few seconds idle
def test_model_forward_shapes_generate_and_checkpoint_roundtrip(tmp_path):
    cfg = ge.ModelConfig.tiny()
    torch.manual_seed(0)
    model = ge.GptOss(cfg).eval()
    assert isinstance(model, torch.nn.Module)
    tokens = torch.tensor([1, 2, 3])
    with torch.no_grad():
        logits = model(tokens)
        batched = model(tokens[None].repeat(2, 1))
    assert logits.shape == (3, cfg.vocab_size) and batched.shape == (2, 3, cfg.vocab_size)
    torch.testing.assert_close(batched[0], logits)

    out = ge.generate(model, [1, 2, 3], max_new_tokens=4, temperature=0.0)
    assert isinstance(out, list) and len(out) == 4 and all(isinstance(t, int) for t in out)
    # greedy: the first new token is the argmax of the last position's logits
    assert out[0] == int(logits[-1].float().argmax())

    loaded = {}
    for layout in ("original", "hf"):
        path = ge.save_checkpoint(model, tmp_path / layout, layout=layout)
        loaded[layout] = ge.load_checkpoint(path, dtype=torch.float32, backend="torch")
    with torch.no_grad():  # experts were quantized to MXFP4 on saving: close, not equal
        again = loaded["original"](tokens).float()
    torch.testing.assert_close(again, logits.float(), atol=0.1, rtol=0.05)
    a, b = loaded["original"].state_dict(), loaded["hf"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # layouts agree
    assert ge.count_parameters(ge.ModelConfig.gpt_oss_20b()).total == 20_914_757_184  # SPEC.md


def test_mxfp4_quantize_dequantize_and_kernels():
    w = torch.tensor([[0.5, -1.0, 6.0, 0.0] * 8])  # (1, 32): exactly representable in E2M1
    blocks, scales = ge.mxfp4.quantize(w)
    torch.testing.assert_close(ge.mxfp4.dequantize(blocks, scales, torch.float32), w)
    x = torch.ones(2, 32)
    y = ge.kernels.mxfp4_linear(x, blocks, scales, torch.tensor([1.0]), backend="torch")
    torch.testing.assert_close(y, torch.full((2, 1), 5.5 * 8 + 1.0))  # sum of one row + bias
    r = ge.kernels.route(torch.tensor([[0.0, 2.0, 1.0]]), k=2, backend="torch")
    assert r.experts.tolist() == [[1, 2]] and r.offsets.tolist() == [0, 0, 1, 2]


def test_tokenizer_and_harmony():
    tok = ge.tokenizer.o200k_harmony()
    assert tok.encode("hello world") == [24912, 2375]  # SPEC.md / tiktoken
    py = ge.tokenizer.o200k_harmony(engine="python")
    assert py.encode("hello world") == [24912, 2375]
    messages = [ge.harmony.user("Hi")]
    text = ge.harmony.render(messages)
    assert text == "<|start|>user<|message|>Hi<|end|><|start|>assistant"
    assert ge.harmony.parse(text).messages == messages


def test_load_tiny():
    model, tok = ge.load_tiny()
    assert isinstance(model, ge.GptOss)
    assert tok.decode(tok.encode("hello")) == "hello"


def test_every_exercise_checker_is_imported_by_name():
    """gptoss_edu.exercises imports each chapter's checkers explicitly (no globals() injection):
    a new chapter module, or a new checker in one, must be added there; no two share a name."""
    import importlib
    import pkgutil

    import gptoss_edu.exercises as ex

    seen: dict[str, str] = {}
    for info in pkgutil.iter_modules(ex.__path__):
        if not info.name.startswith("ch"):
            continue
        module = importlib.import_module(f"gptoss_edu.exercises.{info.name}")
        for name in module.__all__:
            assert name not in seen, f"{name} is defined in {seen[name]} and {info.name}"
            seen[name] = info.name
            assert getattr(ex, name, None) is getattr(module, name), (
                f"gptoss_edu.exercises does not import {name} from {info.name}"
            )
            assert name in ex.__all__
