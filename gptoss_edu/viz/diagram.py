"""gpt-oss in one picture, drawn by code (chapter 0; every chapter highlights its own piece).

from gptoss_edu.viz import draw_model
draw_model(ModelConfig.gpt_oss_20b(), highlight="attention")
"""

from __future__ import annotations

from ..config import ModelConfig
from ..params import count_parameters, format_count

# component name -> the boxes it lights up
PARTS = {
    "tokens": ["tokens"],
    "embedding": ["embedding"],
    "norm": ["attn_norm", "mlp_norm", "final_norm"],
    "rope": ["rope"],
    "attention": ["attention", "rope"],
    "moe": ["router", "experts"],
    "unembedding": ["unembedding"],
    "mxfp4": ["experts"],
    "generation": ["tokens", "unembedding"],
}


def draw_model(config: ModelConfig | None = None, highlight: str | None = None, ax=None):
    """Draw the gpt-oss forward pass as boxes and arrows; return the matplotlib Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    config = config or ModelConfig.gpt_oss_20b()
    if highlight is not None and highlight not in PARTS:
        raise ValueError(
            f"draw_model: highlight must be one of {sorted(PARTS)}; found {highlight!r}"
        )
    lit = set(PARTS.get(highlight, []))
    c = config
    p = count_parameters(c)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 8.2))
    else:
        fig = ax.figure
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 13.2)
    ax.axis("off")

    def box(key, x, y, w, h, text, color):
        on = key in lit
        face = "#ffd166" if on else color
        edge = "#d62828" if on else "#444444"
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                w,
                h,
                boxstyle="round,pad=0.05,rounding_size=0.15",
                facecolor=face,
                edgecolor=edge,
                linewidth=2.2 if on else 1.0,
            )
        )
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10, color="#555555"
            )
        )

    box("tokens", 3.5, 0.2, 3, 0.6, f"token ids (vocab {c.vocab_size:,})", "#e9ecef")
    arrow(5, 0.8, 5, 1.1)
    box("embedding", 3, 1.1, 4, 0.7, f"embedding  {c.vocab_size:,} x {c.hidden_size}", "#cde4f7")
    arrow(5, 1.8, 5, 2.3)
    # the repeated block
    ax.add_patch(
        FancyBboxPatch(
            (1.2, 2.3),
            7.6,
            7.7,
            boxstyle="round,pad=0.1",
            facecolor="#f8f9fa",
            edgecolor="#888888",
            linestyle="--",
        )
    )
    ax.text(
        1.35,
        9.75,
        f"x {c.num_hidden_layers} blocks (even: sliding window {c.sliding_window}; odd: full)",
        fontsize=8.5,
        style="italic",
    )
    box("attn_norm", 3.5, 2.6, 3, 0.55, "RMSNorm", "#e2f0d9")
    arrow(5, 3.15, 5, 3.45)
    kv = c.num_key_value_heads
    box(
        "attention",
        2.2,
        3.45,
        5.6,
        1.1,
        f"attention: {c.num_attention_heads} query heads, {kv} KV heads (GQA)\nsinks, head_dim {c.head_dim}",
        "#f7d6cd",
    )
    box("rope", 8.05, 3.65, 1.5, 0.7, "RoPE\n+ YaRN", "#f7d6cd")
    arrow(8.05, 4.0, 7.8, 4.0)
    ax.text(1.45, 4.0, "+", fontsize=16, ha="center", va="center")
    arrow(5, 4.55, 5, 5.0)
    box("mlp_norm", 3.5, 5.0, 3, 0.55, "RMSNorm", "#e2f0d9")
    arrow(5, 5.55, 5, 5.85)
    box(
        "router",
        3.0,
        5.85,
        4,
        0.65,
        f"router: top-{c.experts_per_token} of {c.num_experts}, softmax",
        "#e8dff5",
    )
    arrow(5, 6.5, 5, 6.85)
    n_show = min(c.num_experts, 8)
    width = 6.4 / n_show
    for e in range(n_show):
        chosen = e < c.experts_per_token
        box(
            "experts",
            1.8 + e * width,
            6.85,
            width - 0.12,
            1.3,
            f"E{e}" if n_show == c.num_experts or e < n_show - 1 else "...",
            "#c9b6e4" if chosen else "#efe9f7",
        )
    ax.text(
        5,
        8.45,
        f"experts: clamped SwiGLU MLPs ({c.hidden_size} -> {2 * c.intermediate_size} -> {c.hidden_size}), MXFP4 weights",
        ha="center",
        fontsize=8,
    )
    ax.text(1.45, 7.5, "+", fontsize=16, ha="center", va="center")
    ax.text(
        5,
        9.0,
        f"weighted sum of the {c.experts_per_token} chosen experts",
        ha="center",
        fontsize=8,
        style="italic",
    )
    arrow(5, 10.0, 5, 10.4)
    box("final_norm", 3.5, 10.4, 3, 0.55, "RMSNorm", "#e2f0d9")
    arrow(5, 10.95, 5, 11.25)
    box(
        "unembedding",
        3,
        11.25,
        4,
        0.7,
        f"unembedding  {c.hidden_size} x {c.vocab_size:,}",
        "#cde4f7",
    )
    ax.text(
        5,
        12.5,
        f"total {format_count(p.total)} parameters, {format_count(p.active)} active per token",
        ha="center",
        fontsize=10,
        weight="bold",
    )
    title = "gpt-oss" + (f": {highlight}" if highlight else "")
    ax.set_title(title, fontsize=12)
    return fig
