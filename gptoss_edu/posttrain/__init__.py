"""Post-training the tiny gpt-oss: arithmetic conversations at three reasoning efforts and the
supervised fine-tuning loss on what the model writes (chapter 15).

    data.py   seeded harmony conversations for integer arithmetic, train/held-out splits
    sft.py    render_with_mask (1 on generated tokens), make_batch, sft_loss, sft_step,
              split_by_length, sft_step_parts (a batch run as parts of similar length)
    reasoner.py  the recipe of the shipped reasoner: digit_tokenizer, SFTConfig, sft,
              save_reasoner and `python -m gptoss_edu posttrain`
    standin.py  ScriptedModel: a stand-in model replaying known replies (tests, chapter 16)
    diagnose.py the loss of a worked answer by the role of each token; can a model copy?
    lora.py   LoRA with the MXFP4 experts frozen and packed, and the common recipes (chapter 16;
              needs the `posttrain` extra: peft)
    forgetting.py  a new skill without analysis, and what it does to the reasoning (chapter 16)

The calculator tool and the agent loop are in gptoss_edu/tools.py; the evaluation harness that
measures accuracy per effort is gptoss_edu/evaluate.py (chapter 16).
"""

from gptoss_edu.posttrain.data import (
    CALCULATOR,
    EFFORTS,
    OPS,
    RANGES,
    TOOL_RANGE,
    Problem,
    analysis_text,
    conversation,
    examples,
    heldout_problems,
    split_problems,
)
from gptoss_edu.posttrain.reasoner import SFTConfig, digit_tokenizer, save_reasoner, sft
from gptoss_edu.posttrain.sft import (
    make_batch,
    render_with_mask,
    sft_loss,
    sft_step,
    sft_step_parts,
    split_by_length,
)
from gptoss_edu.posttrain.standin import ScriptedModel

__all__ = [
    "CALCULATOR",
    "EFFORTS",
    "OPS",
    "RANGES",
    "TOOL_RANGE",
    "Problem",
    "SFTConfig",
    "ScriptedModel",
    "analysis_text",
    "conversation",
    "digit_tokenizer",
    "examples",
    "heldout_problems",
    "make_batch",
    "render_with_mask",
    "save_reasoner",
    "sft",
    "sft_loss",
    "sft_step",
    "sft_step_parts",
    "split_by_length",
    "split_problems",
]
