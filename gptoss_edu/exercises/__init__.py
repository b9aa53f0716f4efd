"""Checkers for the exercises in exercises/NN_topic.ipynb.

Each `check_*(fn)` calls the reader's function on small cases, compares it with the package's
own version, prints one clear line (what passed, or what is wrong: shape, dtype, a missing
factor, ...) and returns True or False. A checker never raises: an unfinished exercise
(`raise NotImplementedError`) gets a friendly "not done yet" line, not a traceback.

    import gptoss_edu as ge
    ge.exercises.check_rmsnorm(my_rmsnorm)

The checkers live one module per chapter (`ch03_norm.py`, ...) and are all imported here by name
(tests/test_public_api.py checks that every chapter module is, and that no two checkers share a name).
"""

from ._common import Checker, ExerciseFailure, run_check
from .ch01_tokens import (  # chapter 01
    check_decode,
    check_encode,
    check_merge,
    check_pair_counts,
    check_split_numbers,
    check_train,
    check_train_chunked,
)
from .ch02_harmony import (  # chapter 02
    check_chat_turn,
    check_kept_messages,
    check_parse_reply,
    check_render_message,
    check_stop_tokens,
    check_system_message,
    check_tool_call,
)
from .ch03_norm import (  # chapter 03
    check_embedding_lookup,
    check_my_rmsnorm,
    check_norm_parameters,
    check_pre_norm,
    check_rmsnorm,
    check_rmsnorm_bf16,
)
from .ch04_rope import (  # chapter 04
    check_apply_rotary,
    check_my_rotary_embedding,
    check_rope_cos_sin,
    check_rope_inv_freq,
    check_yarn_bounds,
    check_yarn_inv_freq,
)
from .ch05_attention import (  # chapter 05
    check_attention_with_sink,
    check_causal_attention,
    check_gqa_attention,
    check_kv_cache_bytes,
    check_my_attention_block,
    check_my_kv_cache,
    check_sliding_window_mask,
)
from .ch06_moe import (  # chapter 06
    check_active_parameters,
    check_expert,
    check_moe_layer,
    check_my_mlp_block,
    check_router,
    check_swiglu,
)
from .ch07_model import (  # chapter 07
    check_block_forward,
    check_checkpoint_bytes,
    check_layer_types,
    check_model_forward,
    check_my_gptoss,
    check_total_parameters,
)
from .ch08_mxfp4 import (  # chapter 08
    check_decode_e2m1,
    check_decode_scale,
    check_dequantize_mxfp4,
    check_int4_block,
    check_mxfp4_bytes,
    check_quantize_block,
    check_unpack_nibbles,
)
from .ch09_routing import (  # chapter 09
    check_counting_sort_numba,
    check_exclusive_prefix_sum,
    check_histogram,
    check_inverse_permutation,
    check_parallel_histogram,
    check_route,
    check_stable_scatter,
    check_topk_softmax,
)
from .ch10_matmul import (  # chapter 10
    check_arithmetic_intensity,
    check_effective_gbs,
    check_mxfp4_gemv,
    check_packed_bytes,
    check_roofline_point,
    check_roofline_seconds,
)
from .ch11_generation import (  # chapter 11
    check_greedy_generate,
    check_my_generate,
    check_stream_pieces,
    check_temperature,
    check_top_k,
    check_top_p,
)
from .ch12_checkpoints import (  # chapter 12
    check_hf_key,
    check_loaded_bytes,
    check_read_header,
    check_read_tensor,
    check_validate_header,
)
from .ch13_inside import (  # chapter 13
    check_expert_load,
    check_first_choice,
    check_mutual_information,
    check_router_entropy,
    check_sink_share,
    check_token_kinds,
)
from .ch14_training import (  # chapter 14
    check_bias_balancing,
    check_load_balancing_loss,
    check_lr_schedule,
    check_next_token_batch,
    check_router_z_loss,
    check_unigram_loss,
)
from .ch15_posttrain import (  # chapter 15
    check_add_scratchpad,
    check_effort_format,
    check_loss_mask,
    check_score_reply,
)
from .ch16_finetune import (  # chapter 16
    check_empty_analysis_share,
    check_lora_parameters,
    check_new_skill,
    check_wilson_interval,
)
from .ch17_distributed import (  # chapter 17
    check_all_to_all,
    check_owner,
    check_rank_imbalance,
    check_split_sizes,
    check_wire_bytes,
)
from .my_gptoss import (  # your own gpt-oss, one module per chapter (see my_gptoss.py)
    enable_my_gptoss,
    save_module,
    set_student_dir,
    student_dir,
    student_module,
)

__all__ = [
    "Checker",
    "ExerciseFailure",
    "enable_my_gptoss",
    "run_check",
    "save_module",
    "set_student_dir",
    "student_dir",
    "student_module",
    "check_pair_counts",
    "check_merge",
    "check_train",
    "check_encode",
    "check_decode",
    "check_split_numbers",
    "check_train_chunked",
    "check_render_message",
    "check_system_message",
    "check_tool_call",
    "check_kept_messages",
    "check_parse_reply",
    "check_stop_tokens",
    "check_chat_turn",
    "check_embedding_lookup",
    "check_rmsnorm",
    "check_rmsnorm_bf16",
    "check_pre_norm",
    "check_norm_parameters",
    "check_my_rmsnorm",
    "check_rope_inv_freq",
    "check_apply_rotary",
    "check_yarn_bounds",
    "check_yarn_inv_freq",
    "check_rope_cos_sin",
    "check_my_rotary_embedding",
    "check_causal_attention",
    "check_sliding_window_mask",
    "check_attention_with_sink",
    "check_gqa_attention",
    "check_kv_cache_bytes",
    "check_my_attention_block",
    "check_my_kv_cache",
    "check_router",
    "check_swiglu",
    "check_expert",
    "check_moe_layer",
    "check_active_parameters",
    "check_my_mlp_block",
    "check_block_forward",
    "check_model_forward",
    "check_layer_types",
    "check_total_parameters",
    "check_checkpoint_bytes",
    "check_my_gptoss",
    "check_decode_e2m1",
    "check_decode_scale",
    "check_unpack_nibbles",
    "check_dequantize_mxfp4",
    "check_quantize_block",
    "check_mxfp4_bytes",
    "check_int4_block",
    "check_topk_softmax",
    "check_histogram",
    "check_exclusive_prefix_sum",
    "check_stable_scatter",
    "check_inverse_permutation",
    "check_route",
    "check_parallel_histogram",
    "check_counting_sort_numba",
    "check_mxfp4_gemv",
    "check_packed_bytes",
    "check_arithmetic_intensity",
    "check_roofline_seconds",
    "check_effective_gbs",
    "check_roofline_point",
    "check_temperature",
    "check_top_k",
    "check_top_p",
    "check_greedy_generate",
    "check_stream_pieces",
    "check_my_generate",
    "check_read_header",
    "check_read_tensor",
    "check_hf_key",
    "check_loaded_bytes",
    "check_validate_header",
    "check_router_entropy",
    "check_expert_load",
    "check_first_choice",
    "check_sink_share",
    "check_mutual_information",
    "check_token_kinds",
    "check_lr_schedule",
    "check_next_token_batch",
    "check_load_balancing_loss",
    "check_router_z_loss",
    "check_unigram_loss",
    "check_bias_balancing",
    "check_add_scratchpad",
    "check_loss_mask",
    "check_score_reply",
    "check_effort_format",
    "check_lora_parameters",
    "check_wilson_interval",
    "check_empty_analysis_share",
    "check_new_skill",
    "check_owner",
    "check_split_sizes",
    "check_all_to_all",
    "check_wire_bytes",
    "check_rank_imbalance",
]
