"""How much attention goes to the sink? Per head and layer, as numbers, a widget and a figure
(chapter 13).

Each gpt-oss head has a learned sink logit that joins the softmax as an extra column (chapter 5).
The weight a query puts on the sink is 1 minus the sum of its attention weights on real keys:

    sink_share[l, h, t] = 1 - sum_s p[l, h, t, s]

    s = sink_weights(model, tok, "import os\\n")   # (layers, heads, tokens)
    plot_sink_weights(s)                            # heat map of the mean over tokens
    SinkViewer(model, tok)                          # in a notebook
"""

from __future__ import annotations

import html

import torch

from ..model.recorder import Recorder
from .explorer import MAX_CHARS_PER_TOKEN, _check_tokens, token_pieces

MAX_SINK_TOKENS = 256  # attention is (layers, heads, T, T): 256 tokens of 20b is 400 MB


@torch.no_grad()
def sink_weights_from_tokens(model, tokens) -> torch.Tensor:
    """(L, H, T) share of each query's attention that went to the sink (at most 256 tokens)."""
    tokens = _check_tokens("sink_weights", tokens, MAX_SINK_TOKENS)
    rec = Recorder("attention")
    model(tokens, recorder=rec)
    return torch.stack([w[0, ..., -1].float() for w in rec["attention"]])  # the sink column


def sink_weights(model, tokenizer, text: str) -> torch.Tensor:
    """Tokenize `text` and return the sink share (L, H, T) of every layer, head and query."""
    tokens = tokenizer.encode_ordinary(text[: MAX_SINK_TOKENS * MAX_CHARS_PER_TOKEN])
    if not tokens:
        raise ValueError("sink_weights: the text has no tokens; give at least one character")
    return sink_weights_from_tokens(model, tokens)


def plot_sink_weights(sink: torch.Tensor, ax=None, title: str | None = None):
    """Heat map of the mean sink share over queries: layers x heads, values written in."""
    import matplotlib.pyplot as plt

    mean = sink.float().mean(-1).numpy()  # (L, H)
    L, H = mean.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.6 * H, 0.5 + 0.5 * L))
    im = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for layer in range(L):
        for h in range(H):
            v = mean[layer, h]
            ax.text(
                h,
                layer,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v < 0.6 else "black",
            )
    ax.set_xticks(range(H), [f"head {h}" for h in range(H)])
    ax.set_yticks(range(L), [f"layer {i}" for i in range(L)])
    ax.set_title(title or "mean attention weight on the sink")
    ax.figure.colorbar(im, ax=ax, fraction=0.05)
    return ax.figure


def _cell(v: float) -> str:
    # white (0) to dark blue (1)
    c = int(255 * (1 - v))
    fg = "white" if v > 0.5 else "black"
    return f'<td style="background:rgb({c},{c},255);color:{fg};padding:2px 6px">{v:.2f}</td>'


class SinkViewer:
    """Type a prompt; see the mean sink weight per (layer, head), and per query token for one
    chosen layer. CSS classes: gptoss-sink-prompt, gptoss-sink-table, gptoss-sink-tokens."""

    def __init__(self, model, tokenizer, prompt: str = "import os\nprint(os.getcwd())\n"):
        import ipywidgets as w

        self.model = model
        self.tokenizer = tokenizer
        self.sink: torch.Tensor | None = None
        self.pieces: list[str] = []
        self.prompt = w.Text(
            value=prompt,
            description="prompt",
            continuous_update=False,
            layout=w.Layout(width="95%"),
        )
        self.prompt.add_class("gptoss-sink-prompt")
        L = model.config.num_hidden_layers
        self.layer = w.Dropdown(options=list(range(L)), value=0, description="layer")
        self.table = w.HTML()
        self.table.add_class("gptoss-sink-table")
        self.per_token = w.HTML()
        self.per_token.add_class("gptoss-sink-tokens")
        self.prompt.observe(lambda ch: self.update(ch["new"]), names="value")
        self.layer.observe(lambda ch: self._show_tokens(), names="value")
        self.widget = w.VBox([self.prompt, self.table, self.layer, self.per_token])
        self.update(prompt)

    def update(self, text: str) -> None:
        if not text:
            return
        tokens = self.tokenizer.encode_ordinary(text[: 64 * MAX_CHARS_PER_TOKEN])[:64]
        self.sink = sink_weights_from_tokens(self.model, tokens)
        self.pieces = token_pieces(self.tokenizer, tokens)
        mean = self.sink.mean(-1)  # (L, H)
        head = "".join(f"<th>head {h}</th>" for h in range(mean.shape[1]))
        rows = "".join(
            f"<tr><td>layer {layer}</td>" + "".join(_cell(float(v)) for v in mean[layer]) + "</tr>"
            for layer in range(mean.shape[0])
        )
        self.table.value = (
            "<b>mean weight on the sink</b><table><tr><th></th>"
            + head
            + "</tr>"
            + rows
            + "</table>"
        )
        self._show_tokens()

    def _show_tokens(self) -> None:
        s = self.sink[self.layer.value]  # (H, T)
        head = "".join(f"<th><code>{html.escape(p)}</code></th>" for p in self.pieces)
        rows = "".join(
            f"<tr><td>head {h}</td>" + "".join(_cell(float(v)) for v in s[h]) + "</tr>"
            for h in range(s.shape[0])
        )
        self.per_token.value = (
            f"<b>layer {self.layer.value}: sink weight of each query token</b>"
            "<div style='overflow-x:auto'><table><tr><th></th>"
            + head
            + "</tr>"
            + rows
            + "</table></div>"
        )

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


__all__ = ["SinkViewer", "plot_sink_weights", "sink_weights", "sink_weights_from_tokens"]
