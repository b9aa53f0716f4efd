"""Pictures of gpt-oss: the architecture diagram (chapter 0), and the widgets and figures that
show which experts each token activates and how much attention goes to the sinks (chapter 13).

The widgets need ipywidgets; the `plot_*` functions only matplotlib. Submodules other than the
diagram load on first use.
"""

from __future__ import annotations

import importlib

from .diagram import draw_model

_LAZY = {
    "ExpertExplorer": "explorer",
    "Routing": "explorer",
    "compute_routing": "explorer",
    "detail_rows": "explorer",
    "plot_expert_grid": "explorer",
    "plot_expert_load": "explorer",
    "plot_router_entropy": "explorer",
    "trace": "explorer",
    "SinkViewer": "sinks",
    "plot_sink_weights": "sinks",
    "sink_weights": "sinks",
}

__all__ = ["draw_model", *sorted(_LAZY)]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gptoss_edu.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
