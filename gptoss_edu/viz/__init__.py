"""Pictures of gpt-oss: the architecture diagram (chapter 0), and the widgets and figures that
show which experts each token activates and how much attention goes to the sinks (chapter 13).

The widgets need ipywidgets and the `plot_*` functions matplotlib; both are imported inside the
functions that use them, so importing this package stays light.
"""

from __future__ import annotations

from .diagram import draw_model
from .explorer import (
    ExpertExplorer,
    Routing,
    compute_routing,
    detail_rows,
    plot_expert_grid,
    plot_expert_load,
    plot_router_entropy,
    trace,
)
from .sinks import SinkViewer, plot_sink_weights, sink_weights

__all__ = [
    "ExpertExplorer",
    "Routing",
    "SinkViewer",
    "compute_routing",
    "detail_rows",
    "draw_model",
    "plot_expert_grid",
    "plot_expert_load",
    "plot_router_entropy",
    "plot_sink_weights",
    "sink_weights",
    "trace",
]
