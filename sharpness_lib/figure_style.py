"""Colours, metric panel titles and small array helpers shared by the figure modules
(``plotting``, ``comparison_figures``, ``network_figures``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DEFAULT_MAX_POINTS", "METRICS", "PALETTE", "color_for"]

# Plotly's default qualitative palette, fixed here so colours do not depend on the template.
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

# metric key -> (panel title, log-y?)
METRICS: dict[str, tuple[str, bool]] = {
    "train_loss": ("Training loss", True),
    "test_error": ("Test error (0-1)", False),
    "hessian_trace": ("Sharpness Tr ∇²L", True),
    "min_sharpness": ("Minimum sharpness", True),
    "test_mse": ("Test squared error", True),
    # memorization diagnostics (sharpness_lib.memorization), logged by stored long runs
    "active_per_train_point": ("Active neurons per training point", True),
    "active_per_fresh_point": ("Active neurons per fresh point", True),
    "points_per_neuron": ("Training points per live neuron", True),
    "median_abs_f_fresh": ("Median |f| on fresh points", False),
}

DEFAULT_MAX_POINTS = 250  # a panel is ~250 px wide: more points only add page weight


def color_for(index: int) -> str:
    """Palette colour number ``index`` (cycled)."""
    return PALETTE[index % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _to_numpy(a: Any) -> np.ndarray:
    """numpy view of a numpy array, nested list or torch tensor (no torch import needed)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)
