"""Which experts does each token use? Data, an ipywidgets explorer, and static figures (chapter 13).

    data = compute_routing(model, tok, "for i in range(10):")
    data.ids.shape                   # (layers, tokens, k): the chosen experts, best first
    ExpertExplorer(model, tok)       # in a notebook: type a prompt, click a token
    plot_expert_grid(data)           # the same views as matplotlib figures (HTML book, nbval)

Everything here comes from the model's own forward pass with a `Recorder` (chapter 6):
`model(tokens, recorder=Recorder("router_logits", "routing"))`. No copy of the forward loop.
The widget is a thin view over `compute_routing`: every number it shows comes from there.

Bounds: one call looks at most `MAX_TOKENS` tokens (the attention of a forward pass grows as
T^2, and the views have one column per token); the text is cut to `MAX_CHARS_PER_TOKEN` characters
per allowed token before it is tokenized, so a huge paste cannot stall the tokenizer either.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch

from ..model.recorder import Recorder

MAX_TOKENS = 1024  # most tokens one compute_routing / trace call processes
MAX_CHARS_PER_TOKEN = 64  # text beyond max_tokens * this many characters is never tokenized

# ----------------------------------------------------------------------------------- data


@dataclass
class Trace:
    logits: torch.Tensor  # (T, V)
    router_logits: list[torch.Tensor]  # per layer (T, E)
    expert_weights: list[torch.Tensor]  # per layer (T, k), softmax over the chosen k
    expert_ids: list[torch.Tensor]  # per layer (T, k), best first
    attn_weights: list[torch.Tensor]  # per layer (H, T, T); the sink's share is 1 - row sum


def _check_tokens(where: str, tokens, max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    if tokens.is_floating_point():
        raise TypeError(f"{where}: tokens must be integer ids; found dtype {tokens.dtype}")
    if tokens.dim() != 1:
        raise ValueError(f"{where}: tokens must have shape (T,); found {tuple(tokens.shape)}")
    if tokens.shape[0] > max_tokens:
        raise ValueError(
            f"{where}: {tokens.shape[0]} tokens; this view processes at most {max_tokens} "
            "(every layer's routing and attention are kept); give a shorter text or cut it"
        )
    return tokens.long()


@torch.no_grad()
def trace(model, tokens, attention: bool = True) -> Trace:
    """One forward pass over `tokens` (T,) recording every layer's routing (and attention weights,
    unless attention=False). At most MAX_TOKENS tokens."""
    tokens = _check_tokens("trace", tokens)
    names = ("router_logits", "routing") + (("attention",) if attention else ())
    rec = Recorder(*names)
    logits = model(tokens, recorder=rec)  # (T, V)
    return Trace(
        logits=logits.float(),
        router_logits=[r.float() for r in rec["router_logits"]],
        expert_weights=[w.float() for _, w in rec["routing"]],
        expert_ids=[i for i, _ in rec["routing"]],
        attn_weights=[a[0, ..., :-1].float() for a in rec["attention"]] if attention else [],
    )


def token_pieces(tokenizer, ids) -> list[str]:
    """Each token's text with whitespace made visible: space ·, newline ↵, tab →."""
    pieces = []
    for b in tokenizer.decode_tokens_bytes(list(ids)):
        s = b.decode("utf-8", errors="replace")
        pieces.append(s.replace(" ", "·").replace("\n", "↵").replace("\t", "→"))
    return pieces


@dataclass
class Routing:
    """Routing of one text through every layer."""

    tokens: list[int]
    pieces: list[str]  # (T,) display strings
    ids: torch.Tensor  # (L, T, k) chosen experts, best first
    weights: torch.Tensor  # (L, T, k) gate weights (softmax over the chosen k)
    probs: torch.Tensor  # (L, T, E) softmax over all E router logits
    entropy: torch.Tensor  # (L, T) entropy of probs, in nats (log E = uniform)
    load: torch.Tensor  # (L, E) share of the T*k assignments each expert got

    @property
    def num_layers(self) -> int:
        return self.ids.shape[0]

    @property
    def num_experts(self) -> int:
        return self.probs.shape[-1]

    def top1(self) -> torch.Tensor:
        """(L, T) the highest-weighted expert of each token in each layer."""
        return self.ids[..., 0]


def compute_routing(model, tokenizer, text: str, max_tokens: int | None = None) -> Routing:
    """Tokenize `text`, run the model, and collect per-layer routing (see `Routing`).

    max_tokens=None refuses a text of more than MAX_TOKENS tokens (with a message saying so);
    max_tokens=n (1 <= n <= MAX_TOKENS) looks at the first n tokens.
    """
    if not isinstance(text, str):
        raise TypeError(f"compute_routing: text must be a str; found {type(text).__name__}")
    limit = MAX_TOKENS if max_tokens is None else max_tokens
    if not isinstance(limit, int) or not 1 <= limit <= MAX_TOKENS:
        raise ValueError(
            f"compute_routing: max_tokens must be an int in [1, {MAX_TOKENS}]; found {max_tokens!r}"
        )
    tokens = tokenizer.encode_ordinary(text[: limit * MAX_CHARS_PER_TOKEN])
    if max_tokens is None and (len(tokens) > limit or len(text) > limit * MAX_CHARS_PER_TOKEN):
        raise ValueError(
            f"compute_routing: the text is longer than {MAX_TOKENS} tokens ({len(text)} "
            f"characters); pass max_tokens=N (at most {MAX_TOKENS}) to look at its first N tokens"
        )
    tokens = tokens[:limit]
    if not tokens:
        raise ValueError("compute_routing: the text has no tokens; type at least one character")
    return routing_from_tokens(model, tokenizer, tokens)


def routing_from_tokens(model, tokenizer, tokens) -> Routing:
    tr = trace(model, tokens, attention=False)  # routing only: no (H, T, T) per layer
    logits = torch.stack(tr.router_logits)  # (L, T, E)
    probs = torch.softmax(logits, dim=-1)
    entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1)  # (L, T)
    ids = torch.stack(tr.expert_ids)  # (L, T, k)
    E = logits.shape[-1]
    load = torch.stack([torch.bincount(i.reshape(-1), minlength=E) for i in ids]).float()
    load = load / ids[0].numel()
    return Routing(
        tokens=list(map(int, tokens)),
        pieces=token_pieces(tokenizer, tokens),
        ids=ids,
        weights=torch.stack(tr.expert_weights),
        probs=probs,
        entropy=entropy,
        load=load,
    )


def detail_rows(data: Routing, t: int) -> list[dict]:
    """For token t: one row per layer with its top-k experts, gate weights and router entropy."""
    if not 0 <= t < len(data.tokens):
        raise IndexError(f"detail_rows: token index {t} out of range [0, {len(data.tokens)})")
    return [
        {
            "layer": layer,
            "experts": data.ids[layer, t].tolist(),
            "weights": [round(w, 4) for w in data.weights[layer, t].tolist()],
            "entropy": round(float(data.entropy[layer, t]), 4),
        }
        for layer in range(data.num_layers)
    ]


def expert_colors(num_experts: int) -> list[str]:
    """One distinct hex colour per expert (matplotlib's tab10/tab20)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if num_experts <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(cmap(e % cmap.N)) for e in range(num_experts)]


# ------------------------------------------------------------------------------- widget


class ExpertExplorer:
    """Type a prompt; see tokens x layers coloured by each token's top-1 expert.

    Click a token (top row) or any cell of its column to see, per layer, its top-k experts and
    gate weights. Below: expert load per layer and the router's entropy. Widgets carry CSS
    classes (gptoss-prompt, gptoss-token, gptoss-cell, gptoss-detail, gptoss-load) so a browser
    test can find them. Display it by putting it last in a cell, or `display(explorer.widget)`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt: str = "def add(a, b):\n    return a + b\n",
        max_tokens: int = 48,
    ):
        import ipywidgets as w

        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
            raise ValueError(
                f"ExpertExplorer: max_tokens must be an int in [1, {MAX_TOKENS}]; found {max_tokens!r}"
            )

        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.colors = expert_colors(model.config.num_experts)
        self.data: Routing | None = None
        self.selected = 0
        self.prompt = w.Text(
            value=prompt,
            description="prompt",
            continuous_update=False,
            layout=w.Layout(width="95%"),
        )
        self.prompt.add_class("gptoss-prompt")
        self.grid = w.GridBox(layout=w.Layout(grid_gap="2px"))
        self.grid.add_class("gptoss-grid")
        self.detail = w.HTML()
        self.detail.add_class("gptoss-detail")
        self.load_view = w.HTML()
        self.load_view.add_class("gptoss-load")
        self.message = w.HTML()
        self.token_buttons: list = []
        self.cells: list[list] = []  # [layer][token]
        self.prompt.observe(self._on_prompt, names="value")
        legend = " ".join(
            f'<span style="background:{c};padding:0 6px;border-radius:3px">{e}</span>'
            for e, c in enumerate(self.colors)
        )
        self.widget = w.VBox(
            [
                self.prompt,
                self.message,
                w.HTML(f"<b>top-1 expert per token and layer</b> &nbsp; experts: {legend}"),
                self.grid,
                w.HBox([self.detail, self.load_view]),
            ]
        )
        self.widget.add_class("gptoss-explorer")
        self.update(prompt)

    # -- behaviour ---------------------------------------------------------------------
    def _on_prompt(self, change) -> None:
        self.update(change["new"])

    def update(self, text: str) -> None:
        """Recompute routing for `text` and rebuild every view."""
        if not text:
            self.message.value = "<i>type a prompt</i>"
            return
        cut = self.max_tokens * MAX_CHARS_PER_TOKEN  # never tokenize an unbounded paste
        tokens = self.tokenizer.encode_ordinary(text[:cut])
        note = ""
        if len(text) > cut:
            note = f"<i>showing the first {self.max_tokens} tokens of {len(text)} characters</i>"
        elif len(tokens) > self.max_tokens:
            note = f"<i>showing the first {self.max_tokens} of {len(tokens)} tokens</i>"
        tokens = tokens[: self.max_tokens]
        self.data = routing_from_tokens(self.model, self.tokenizer, tokens)
        self.message.value = note
        self._build_grid()
        self.select(0)
        self.load_view.value = self._load_html()

    def select(self, t: int) -> None:
        """Show token t's experts and gate weights per layer in the detail panel."""
        self.selected = t
        for i, b in enumerate(self.token_buttons):
            b.button_style = "info" if i == t else ""
        self.detail.value = self._detail_html(t)

    # -- views ---------------------------------------------------------------------------
    def _build_grid(self) -> None:
        import ipywidgets as w

        d = self.data
        T, L = len(d.tokens), d.num_layers
        cell = w.Layout(width="auto", height="24px", padding="0 2px", margin="0")
        self.token_buttons = []
        children = [w.HTML("<b>token</b>")]
        for t, piece in enumerate(d.pieces):
            b = w.Button(description=piece, tooltip=f"token {t}: id {d.tokens[t]}", layout=cell)
            b.add_class("gptoss-token")
            b.on_click(lambda _b, t=t: self.select(t))
            self.token_buttons.append(b)
            children.append(b)
        self.cells = []
        top1 = d.top1()
        for layer in range(L):
            children.append(w.HTML(f"layer {layer}"))
            row = []
            for t in range(T):
                e = int(top1[layer, t])
                b = w.Button(
                    description=str(e),
                    tooltip=f"layer {layer}, token {t}: experts {d.ids[layer, t].tolist()}",
                    layout=cell,
                )
                b.style.button_color = self.colors[e]
                b.add_class("gptoss-cell")
                b.on_click(lambda _b, t=t: self.select(t))
                row.append(b)
                children.append(b)
            self.cells.append(row)
        self.grid.layout.grid_template_columns = f"70px repeat({T}, max-content)"
        self.grid.children = children

    def _detail_html(self, t: int) -> str:
        d = self.data
        piece = html.escape(d.pieces[t])
        rows = []
        for r in detail_rows(d, t):
            chips = " ".join(
                f'<span style="background:{self.colors[e]};padding:0 5px;border-radius:3px">'
                f"{e}</span>&nbsp;{wt:.3f}"
                for e, wt in zip(r["experts"], r["weights"])
            )
            rows.append(
                f"<tr><td>layer {r['layer']}</td><td>{chips}</td><td>{r['entropy']:.3f}</td></tr>"
            )
        return (
            f"<b>token {t}: <code>{piece}</code> (id {d.tokens[t]})</b>"
            "<table><tr><th>layer</th><th>experts: gate weight</th><th>router entropy</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def _load_html(self) -> str:
        d = self.data
        E = d.num_experts
        rows = []
        for layer in range(d.num_layers):
            bars = "".join(
                f'<div title="expert {e}: {float(d.load[layer, e]):.3f}" style="display:inline-block;'
                f"width:12px;height:{max(1, int(120 * float(d.load[layer, e])))}px;"
                f'background:{self.colors[e]};margin-right:1px;vertical-align:bottom"></div>'
                for e in range(E)
            )
            mean_h = float(d.entropy[layer].mean())
            rows.append(
                f"<tr><td>layer {layer}</td><td style='vertical-align:bottom'>{bars}</td>"
                f"<td>{mean_h:.3f}</td></tr>"
            )
        return (
            f"<b>expert load (share of tokens x top-{d.ids.shape[-1]}; uniform = {1 / E:.3f})</b>"
            "<table><tr><th></th><th>experts 0..E-1</th><th>mean entropy "
            f"(max ln E = {torch.log(torch.tensor(float(E))):.3f})</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ------------------------------------------------------------------------ static figures


def plot_expert_grid(data: Routing, ax=None, max_tokens: int = 40):
    """Tokens x layers coloured by top-1 expert, the expert number written in each cell."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    T = min(len(data.tokens), max_tokens)
    E = data.num_experts
    top1 = data.top1()[:, :T].numpy()  # (L, T)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.35 * T), 0.5 * data.num_layers + 1.2))
    ax.imshow(top1, cmap=ListedColormap(expert_colors(E)), vmin=-0.5, vmax=E - 0.5, aspect="auto")
    for layer in range(top1.shape[0]):
        for t in range(T):
            ax.text(t, layer, str(top1[layer, t]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(T), data.pieces[:T], rotation=90, fontsize=8, family="monospace")
    ax.set_yticks(range(data.num_layers), [f"layer {i}" for i in range(data.num_layers)])
    ax.set_title("top-1 expert of each token in each layer")
    return ax.figure


def plot_expert_load(data_or_load, axes=None):
    """One bar chart per layer: share of the top-k assignments each expert received."""
    import matplotlib.pyplot as plt

    load = data_or_load.load if isinstance(data_or_load, Routing) else torch.as_tensor(data_or_load)
    L, E = load.shape
    if axes is None:
        _, axes = plt.subplots(1, L, figsize=(2.2 * L, 2.4), sharey=True, squeeze=False)
        axes = axes[0]
    colors = expert_colors(E)
    for layer, ax in enumerate(axes):
        ax.bar(range(E), load[layer].numpy(), color=colors)
        ax.axhline(1 / E, color="gray", ls="--", lw=1)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xticks(range(E))
        ax.set_xlabel("expert", fontsize=8)
    axes[0].set_ylabel("share of assignments")
    return axes[0].figure


def plot_router_entropy(data: Routing, ax=None, max_tokens: int = 40):
    """Router entropy (nats) per token, one line per layer; ln E is a uniform router."""
    import matplotlib.pyplot as plt

    T = min(len(data.tokens), max_tokens)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.3 * T), 3))
    for layer in range(data.num_layers):
        ax.plot(range(T), data.entropy[layer, :T].numpy(), "o-", ms=3, label=f"layer {layer}")
    ax.axhline(float(torch.log(torch.tensor(float(data.num_experts)))), color="gray", ls="--")
    ax.set_xticks(range(T), data.pieces[:T], rotation=90, fontsize=8, family="monospace")
    ax.set_ylabel("router entropy (nats)")
    ax.legend(fontsize=7, ncol=data.num_layers)
    return ax.figure


__all__ = [
    "MAX_TOKENS",
    "ExpertExplorer",
    "Routing",
    "Trace",
    "compute_routing",
    "detail_rows",
    "expert_colors",
    "plot_expert_grid",
    "plot_expert_load",
    "plot_router_entropy",
    "routing_from_tokens",
    "token_pieces",
    "trace",
]
