"""Post-training the tiny gpt-oss: arithmetic conversations at three reasoning efforts and the
supervised fine-tuning loss on what the model writes (chapter 15).

    data.py   seeded harmony conversations for integer arithmetic, train/held-out splits
    sft.py    render_with_mask (1 on generated tokens), make_batch, sft_loss, sft_step
    standin.py  ScriptedModel: a stand-in model replaying known replies (tests, chapter 16)

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
from gptoss_edu.posttrain.sft import make_batch, render_with_mask, sft_loss, sft_step
from gptoss_edu.posttrain.standin import ScriptedModel

__all__ = [
    "CALCULATOR",
    "EFFORTS",
    "OPS",
    "RANGES",
    "TOOL_RANGE",
    "Problem",
    "ScriptedModel",
    "analysis_text",
    "conversation",
    "examples",
    "heldout_problems",
    "make_batch",
    "render_with_mask",
    "sft_loss",
    "sft_step",
    "split_problems",
]
