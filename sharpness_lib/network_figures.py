"""Figures of one network's weights: column norms and neuron weights (Figure 2b), and where
the neurons of a memorizing net fire (Figure 3).  Re-exported by ``sharpness_lib.plotting``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .captions import format_value as _fmt
from .figure_style import PALETTE, _f32, _rgba, _to_numpy, color_for

__all__ = ["column_norm_figure", "memorization_regions_figure", "neuron_weights_figure"]


def column_norm_figure(
    W1: Any, *, highlight: Sequence[int] = (0, 1), title: str | None = None
) -> go.Figure:
    """Bar chart of the column norms ||W1[:, k]|| of the first-layer weight (Figure 2b).

    ``W1`` has shape (width m, input dim d) (torch ``nn.Linear`` convention). Bars are indexed by
    input coordinate k = 1..d; the label-relevant coordinates ``highlight`` (0-based; default
    x1, x2) are coloured differently. In the paper, after 1-SAM on 2-MLP-Sim-BN these two columns
    have norm ≈ 42.5 and all others ≤ 5.7.
    """
    W = _to_numpy(W1)
    if W.ndim != 2:
        raise ValueError(f"W1 must be a 2-D (width, d) array, got shape {W.shape}")
    norms = np.linalg.norm(W, axis=0)
    d = norms.size
    colors = [PALETTE[1] if k in set(highlight) else PALETTE[7] for k in range(d)]
    fig = go.Figure(
        go.Bar(
            x=np.arange(1, d + 1),
            y=_f32(norms),
            marker_color=colors,
            hovertemplate="column %{x}: norm %{y:.3g}<extra></extra>",
            name="column norm",
        )
    )
    fig.update_layout(
        title=title or "Column norms of the first-layer weight W1",
        xaxis_title="input coordinate k",
        yaxis_title="||W1[:, k]||",
        template="plotly_white",
        height=340,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        showlegend=False,
    )
    fig.update_xaxes(dtick=1 if d <= 40 else None)
    return fig


def neuron_weights_figure(
    W1: Any, W2: Any, k: int = 4, *, b1: Any | None = None, title: str | None = None
) -> go.Figure:
    """Heatmap of the first-layer weights of the k most important neurons (Figure 2b).

    Importance of neuron j is |W2_j| · ||W1_j|| (its output weight times its input-weight norm).
    Rows are the selected neurons (largest first), columns the input coordinates 1..d, plus a
    ``bias`` column when ``b1`` is given. After 1-SAM on Sim-BN the top four rows read ±x1 ± x2:
    two large entries in columns 1-2 with the four sign patterns, near zero elsewhere.
    """
    W = _to_numpy(W1)
    a = _to_numpy(W2).reshape(-1)
    if W.ndim != 2:
        raise ValueError(f"W1 must be a 2-D (width, d) array, got shape {W.shape}")
    m, d = W.shape
    if a.size != m:
        raise ValueError(
            f"W2 must have width {m} entries (one per neuron), got {a.size}"
        )
    if not 1 <= k <= m:
        raise ValueError(f"k must be between 1 and the width {m}, got {k}")
    score = np.abs(a) * np.linalg.norm(W, axis=1)
    top = np.argsort(-score, kind="stable")[:k]
    z = W[top]
    cols = [str(i) for i in range(1, d + 1)]
    if b1 is not None:
        b = _to_numpy(b1).reshape(-1)
        if b.size != m:
            raise ValueError(f"b1 must have width {m} entries, got {b.size}")
        z = np.column_stack([z, b[top]])
        cols.append("bias")
    rows = [f"neuron {j} (W2={a[j]:+.2g})" for j in top]
    zmax = float(np.abs(z).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=_f32(z),
            x=cols,
            y=rows,
            colorscale="RdBu",
            zmid=0,
            zmin=-zmax,
            zmax=zmax,
            colorbar={"title": {"text": "weight"}},
            hovertemplate="%{y}<br>input %{x}: %{z:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title
        or f"First-layer weights of the {k} largest neurons (|W2_j|·||W1_j||)",
        xaxis_title="input coordinate",
        template="plotly_white",
        height=120 + 40 * k,
        margin={"l": 160, "r": 20, "t": 60, "b": 50},
    )
    fig.update_yaxes(autorange="reversed")  # largest neuron on top
    fig.update_xaxes(type="category")
    return fig


# ----------------------------------------------------------------------------- Figure 3
def _disk_cap(a: np.ndarray, b: float, samples: int = 96) -> np.ndarray | None:
    """Polygon of {z : |z| <= 1, a.z + b >= 0} (a circular segment), or None if empty."""
    na = float(np.linalg.norm(a))
    if na == 0:
        return (
            None
            if b < 0
            else np.column_stack(
                [np.cos(t := np.linspace(0, 2 * np.pi, samples)), np.sin(t)]
            )
        )
    c = -b / na  # the chord sits at distance c from the centre along a / |a|
    if c >= 1:
        return None
    half = np.pi if c <= -1 else float(np.arccos(c))
    phi = float(np.arctan2(a[1], a[0]))
    t = np.linspace(phi - half, phi + half, samples)
    return np.column_stack([np.cos(t), np.sin(t)])


def _first_layer(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(model, Sequence) and len(model) == 3:
        W1, b1, W2 = model
    else:
        W1, b1, W2 = model.W1, model.b1, model.W2
    W1, b1, W2 = _to_numpy(W1), _to_numpy(b1).reshape(-1), _to_numpy(W2).reshape(-1)
    if (
        W1.ndim != 2
        or W1.shape[1] != 2
        or b1.size != W1.shape[0]
        or W2.size != W1.shape[0]
    ):
        raise ValueError(
            "each model must be a 2-layer net on 2-D inputs: W1 (m, 2), b1 (m,), "
            f"W2 (m,); got shapes {W1.shape}, {b1.shape}, {W2.shape}"
        )
    return W1, b1, W2


def _add_margin_traces(fig, owner, v_idx, eps, model, circle, visible, title):
    """Figure 3, one slider step: the active region of every neuron and the arcs of the circle
    where the output is non-zero (``owner`` gets the step index of each trace); returns the
    step's title."""
    W1, b1, W2 = _first_layer(model)
    for j in range(W1.shape[0]):
        poly = _disk_cap(W1[j], float(b1[j]))
        if poly is None:
            continue  # never active on the disk
        colour = color_for(j)
        fig.add_trace(
            go.Scatter(
                x=_f32(np.append(poly[:, 0], poly[0, 0])),
                y=_f32(np.append(poly[:, 1], poly[0, 1])),
                fill="toself",
                fillcolor=_rgba(colour, 0.22),
                mode="lines",
                line={"color": colour, "width": 1},
                name=f"neuron {j + 1} active",
                legendgroup="regions",
                showlegend=False,
                visible=visible,
                hovertemplate=f"neuron {j + 1} active (W2 = {W2[j]:+.3g})<extra></extra>",
            )
        )
        owner.append(v_idx)
    f = np.maximum(circle @ W1.T + b1, 0) @ W2
    nonzero = f != 0
    arc = np.where(nonzero[:, None], circle, np.nan)
    fig.add_trace(
        go.Scatter(
            x=_f32(np.append(arc[:, 0], arc[0, 0])),
            y=_f32(np.append(arc[:, 1], arc[0, 1])),
            mode="lines",
            line={"color": "black", "width": 4},
            connectgaps=False,
            name="output f ≠ 0 on the circle",
            showlegend=True,
            visible=visible,
            hoverinfo="skip",
        )
    )
    owner.append(v_idx)
    zero_frac = 1.0 - float(nonzero.mean())
    return (
        (title + "<br>" if title else "")
        + f"margin ε = {_fmt(eps)}: output exactly 0 on {100 * zero_frac:.1f}% "
        "of the circle"
    )


def _add_training_points(fig: go.Figure, owner: list[int], X, y) -> None:
    """The training points, one marker per label (shown at every slider step)."""
    for lab, colour, symbol in ((1, PALETTE[1], "circle"), (-1, PALETTE[0], "square")):
        sel = y * lab > 0
        if sel.any():
            fig.add_trace(
                go.Scatter(
                    x=_f32(X[sel, 0]),
                    y=_f32(X[sel, 1]),
                    mode="markers",
                    marker={
                        "color": colour,
                        "size": 11,
                        "symbol": symbol,
                        "line": {"color": "white", "width": 1.5},
                    },
                    name=f"training point, y = {lab:+d}",
                    hovertemplate="(%{x:.2f}, %{y:.2f})<extra></extra>",
                )
            )
            owner.append(-1)


def _margin_slider_layout(fig, owner, margins, titles, active, extent, height) -> None:
    """The slider over margins (step i shows the traces owned by -1 or i, and title i) and
    equal-scale axes over [-extent, extent]."""
    steps = [
        {
            "method": "update",
            "label": _fmt(eps),
            "args": [
                {"visible": [o in (-1, v_idx) for o in owner]},
                {"title.text": titles[v_idx]},
            ],
        }
        for v_idx, eps in enumerate(margins)
    ]
    fig.update_layout(
        title={"text": titles[active]},
        height=height,
        template="plotly_white",
        sliders=[
            {
                "active": active,
                "currentvalue": {"prefix": "margin ε = "},
                "pad": {"t": 40},
                "steps": steps,
            }
        ],
        margin={"l": 40, "r": 20, "t": 70, "b": 40},
        legend={"yanchor": "top", "y": 1.0, "x": 1.02},
        hovermode="closest",
    )
    fig.update_xaxes(
        range=[-extent, extent], zeroline=False, title_text="x[1]", constrain="domain"
    )
    fig.update_yaxes(
        range=[-extent, extent],
        zeroline=False,
        scaleanchor="x",
        scaleratio=1,
        title_text="x[2]",
    )


def memorization_regions_figure(
    points: Any,
    labels: Any,
    models_by_margin: Mapping[float, Any],
    *,
    title: str | None = None,
    active: int = 0,
    extent: float = 1.25,
    circle_samples: int = 1440,
    height: int = 560,
) -> go.Figure:
    """Figure 3 of Wen, Li & Ma (2023): where the neurons of a memorizing 2-MLP-Bias fire.

    ``points`` (n, 2) are training inputs (the paper's picture: points on the unit circle),
    ``labels`` their ±1 labels, and ``models_by_margin`` maps a margin ε to a 2-layer ReLU net
    with bias on 2-D inputs -- an object with ``W1`` (m, 2), ``b1`` (m,), ``W2`` (m,) (e.g.
    ``sharpness_lib.memorizing_solution(x, y, margin=ε)``) or a tuple ``(W1, b1, W2)``.

    A slider switches between margins (precomputed, no kernel needed). Each step shades, in one
    colour per neuron, the part of the unit disk where that neuron is active
    ({z : W1_j·z + b1_j > 0}, a circular segment), draws in black the arcs of the unit circle
    on which the network's output is non-zero, and reports in the title the fraction of the
    circle on which the output is exactly 0 (there every prediction counts as an error). Axes
    span [-extent, extent] with equal scales.
    """
    X = _to_numpy(points)
    y = _to_numpy(labels).reshape(-1)
    if X.ndim != 2 or X.shape[1] != 2 or y.size != X.shape[0]:
        raise ValueError(
            f"points must be (n, 2) and labels (n,); got {X.shape} and {y.shape}"
        )
    if not isinstance(models_by_margin, Mapping) or not models_by_margin:
        raise ValueError("models_by_margin must be a non-empty dict margin -> model")
    margins = list(models_by_margin)
    if not 0 <= active < len(margins):
        raise ValueError(f"active must be in [0, {len(margins) - 1}], got {active}")
    circle_samples = int(circle_samples)
    if circle_samples < 8:
        raise ValueError(f"circle_samples must be >= 8, got {circle_samples}")

    theta = np.linspace(0, 2 * np.pi, circle_samples, endpoint=False)
    circle = np.column_stack([np.cos(theta), np.sin(theta)])
    fig = go.Figure()
    # owner[t]: the slider step (margin index) trace t belongs to, -1 for every step
    owner: list[int] = []
    fig.add_trace(
        go.Scatter(
            x=_f32(np.append(circle[:, 0], 1.0)),
            y=_f32(np.append(circle[:, 1], 0.0)),
            mode="lines",
            line={"color": PALETTE[7], "width": 1, "dash": "dot"},
            name="unit circle",
            hoverinfo="skip",
        )
    )
    owner.append(-1)
    titles = [
        _add_margin_traces(
            fig,
            owner,
            v_idx,
            eps,
            models_by_margin[eps],
            circle,
            v_idx == active,
            title,
        )
        for v_idx, eps in enumerate(margins)
    ]
    _add_training_points(fig, owner, X, y)
    _margin_slider_layout(fig, owner, margins, titles, active, extent, height)
    return fig
