"""One way to look inside the model: a `Recorder` passed to `forward` (chapters 6, 7 and 13).

The model's forward pass always returns logits. To see what happens inside, hand it a recorder
that says what it wants kept; each layer records into it as it runs:

    rec = Recorder("attention", "router_logits", "routing")
    logits = model(tokens, recorder=rec)
    rec["router_logits"]    # list, one per layer in layer order: (T, E), or (B*T, E) batched
    rec["routing"]          # list per layer of (experts (T, k) int64, weights (T, k) float32)
    rec["attention"]        # list per layer of (B, heads, T, S + 1) attention weights (chapter 5)

What can be recorded (and by whom):

    "attention"       AttentionBlock: softmax weights over the keys and, as the LAST
                      column, the sink's share (each row sums to 1)
    "router_logits"   MLPBlock: the router's scores for every expert, before top-k
    "routing"         MLPBlock: the chosen experts, best first, and their softmax weights

Recorded tensors are detached (no autograd graph is kept) unless `Recorder(..., detach=False)`;
training uses that to put a loss on the router logits (chapter 14). A layer that is not asked
for a name skips the work of producing it (`rec.wants(name)`), so an empty recorder costs
nothing and the model's own forward pass is the only forward pass there is.
"""

from __future__ import annotations

import torch

RECORDABLE = ("attention", "router_logits", "routing")


class Recorder:
    """Keeps named per-layer values of one forward pass. See the module docstring."""

    def __init__(self, *names: str, detach: bool = True):
        for name in names:
            if name not in RECORDABLE:
                raise ValueError(
                    f"Recorder: cannot record {name!r}; choose from {', '.join(RECORDABLE)}"
                )
        self.detach = detach
        self._values: dict[str, dict[int, object]] = {name: {} for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._values)

    def wants(self, name: str) -> bool:
        """True if this recorder keeps `name` (layers skip the work otherwise)."""
        return name in self._values

    def record(self, name: str, layer: int, value) -> None:
        """Keep `value` (a tensor or a tuple of tensors) as layer `layer`'s `name`."""
        if name not in self._values:
            return  # not asked for: nothing to keep
        if self.detach:
            value = _detach(value)
        self._values[name][int(layer)] = value

    def __getitem__(self, name: str) -> list:
        """The values recorded under `name`, one per layer, in layer order."""
        if name not in self._values:
            raise KeyError(
                f"Recorder: {name!r} was not asked for; this recorder keeps "
                f"{', '.join(self._values) or 'nothing'} (create it as Recorder({name!r}, ...))"
            )
        layers = self._values[name]
        return [layers[i] for i in sorted(layers)]

    def clear(self) -> None:
        """Forget everything recorded (keep what is wanted), e.g. before the next forward pass."""
        for layers in self._values.values():
            layers.clear()

    def __repr__(self) -> str:
        kept = ", ".join(f"{n}: {len(v)} layers" for n, v in self._values.items())
        return f"Recorder({kept})"


def _detach(value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):  # routing: (experts, weights)
        return tuple(_detach(v) for v in value)
    return value
