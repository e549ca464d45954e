"""Figures that compare numbers rather than draw curves over training: one quantity against
another (Lemma 4.1, Lemma 3.1), the trace along a rescaling family (minimum sharpness), and
one point per run of a study (strip).  Re-exported by ``sharpness_lib.plotting``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figure_style import METRICS, PALETTE, _f32, _to_numpy, color_for

__all__ = ["rescaling_figure", "scatter_figure", "strip_figure"]


def _xy_layout(
    fig: go.Figure,
    x_title: str,
    y_title: str,
    title: str | None,
    height: int,
    log: bool,
) -> None:
    """The layout of a single-panel x-y figure, log-log when ``log``."""
    fig.update_layout(
        title=title,
        height=height,
        template="plotly_white",
        xaxis_title=x_title,
        yaxis_title=y_title,
        margin={"l": 60, "r": 20, "t": 60 if title else 30, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )
    if log:
        fig.update_xaxes(type="log", exponentformat="power")
        fig.update_yaxes(type="log", exponentformat="power")


def scatter_figure(
    groups: Mapping[str, tuple[Any, Any]],
    x_title: str,
    y_title: str,
    *,
    diagonal: bool = False,
    log: bool = False,
    hover: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
    height: int = 420,
) -> go.Figure:
    """Scatter of one quantity against another, one colour per group (Lemma 4.1, Lemma 3.1).

    Used by the Setup chapter (exact Tr ∇²L of random interpolating 2-MLP-Bias nets against
    the Lemma 4.1 lower bound (2/n) Σ 2||x'_i|| |y_i|) and by Scenario I (Tr ∇²L against the
    path norm Σ_j ||W1_j|| |W2_j| of Lemma 3.1). ``groups`` maps a label to ``(x, y)`` arrays;
    ``diagonal=True`` adds the line y = x over the range of the x values (points on or above it
    satisfy y >= x); ``log=True`` uses log axes; ``hover`` maps a label to one text per point.
    """
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty dict label -> (x, y)")
    fig = go.Figure()
    lo, hi = math.inf, -math.inf
    for i, (label, xy) in enumerate(groups.items()):
        x, y = (_to_numpy(v).reshape(-1) for v in xy)
        if x.size != y.size:
            raise ValueError(
                f"group {label!r}: x has {x.size} points but y has {y.size}"
            )
        xs = x[np.isfinite(x) & ((x > 0) | (not log))]
        if xs.size:
            lo, hi = min(lo, float(xs.min())), max(hi, float(xs.max()))
        text = list((hover or {}).get(label, [])) or None
        fig.add_trace(
            go.Scatter(
                x=_f32(x),
                y=_f32(y),
                mode="markers",
                name=str(label),
                text=text,
                marker={"color": color_for(i), "size": 8, "opacity": 0.8},
                hovertemplate=(
                    f"{label}<br>%{{x:.4g}}, %{{y:.4g}}"
                    + ("<br>%{text}" if text else "")
                    + "<extra></extra>"
                ),
            )
        )
    if diagonal and math.isfinite(lo):
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="y = x",
                line={"color": PALETTE[7], "dash": "dash", "width": 1.5},
                hoverinfo="skip",
            )
        )
    _xy_layout(fig, x_title, y_title, title, height, log)
    return fig


def rescaling_figure(
    scales: Any,
    traces: Mapping[str, Any],
    *,
    minima: Mapping[str, float] | None = None,
    x_title: str = "rescaling factor α",
    title: str | None = None,
    height: int = 400,
) -> go.Figure:
    """Tr ∇²L along a family of function-preserving rescalings (log-log), with the minima.

    ``traces`` maps a label (e.g. "layer-wise, α") to the traces at ``scales``; ``minima`` maps
    a label to the minimum sharpness over the whole group, drawn as a dashed horizontal line.
    The network's outputs are the same at every point of a curve (Dinh et al. 2017's argument
    against the raw trace; the minimum over the group is Ibayashi et al. 2021's fix).
    """
    x = _to_numpy(scales).reshape(-1)
    if x.size < 2 or not np.all(x > 0):
        raise ValueError("scales must hold at least two positive numbers.")
    if not isinstance(traces, Mapping) or not traces:
        raise ValueError(
            "traces must be a non-empty dict label -> values at the scales."
        )
    fig = go.Figure()
    for i, (label, ys) in enumerate(traces.items()):
        y = _to_numpy(ys).reshape(-1)
        if y.size != x.size:
            raise ValueError(
                f"curve {label!r} has {y.size} values for {x.size} scales."
            )
        fig.add_trace(
            go.Scatter(
                x=_f32(x),
                y=_f32(y),
                mode="lines",
                name=str(label),
                line={"color": color_for(i), "width": 2.5},
                hovertemplate=f"{label}<br>α = %{{x:.3g}}<br>Tr = %{{y:.4g}}"
                "<extra></extra>",
            )
        )
    for j, (label, value) in enumerate((minima or {}).items()):
        fig.add_trace(
            go.Scatter(
                x=[float(x.min()), float(x.max())],
                y=[value, value],
                mode="lines",
                name=f"{label}: {value:.4g}",
                line={
                    "color": color_for(len(traces) + j),
                    "dash": "dash",
                    "width": 1.5,
                },
                hoverinfo="skip",
            )
        )
    _xy_layout(fig, x_title, "Tr ∇²L", title, height, log=True)
    return fig


# ----------------------------------------------------------------------------- strip
def _strip_titles(facets: list, metrics: list[str], names: Mapping[str, str]) -> list:
    """Panel titles row by row: "<facet>: <metric>" (just the metric without facets)."""
    return [
        f"{names.get(str(f), f)}: {names.get(m, METRICS.get(m, (m,))[0])}"
        if f is not None
        else names.get(m, METRICS.get(m, (m,))[0])
        for f in facets
        for m in metrics
    ]


def _strip_points(group: Sequence[Mapping], x: str, xs: list, m: str, offset, width):
    """One colour's points in one panel, and its mean bars: ((px, py), (mx, my)).

    ``group`` holds the panel's runs of that colour; the points of x value ``xs[i]`` sit
    around ``i + offset``, the mean bar (None-separated segments) across them.
    """
    px, py, mx, my = [], [], [], []
    for xi, xv in enumerate(xs):
        vals = [
            float(r[m])
            for r in group
            if r[x] == xv and r.get(m) is not None and math.isfinite(float(r[m]))
        ]
        centre = xi + offset
        # a deterministic spread so coincident points stay visible
        offs = np.linspace(-0.25, 0.25, len(vals)) * width if len(vals) > 1 else [0.0]
        px += [centre + o for o in offs[: len(vals)]]
        py += vals
        if vals:
            mx += [centre - 0.35 * width, centre + 0.35 * width, None]
            mean = float(np.mean(vals))
            my += [mean, mean, None]
    return (px, py), (mx, my)


def _add_strip_traces(fig, points, means, label, colour_index, showlegend, row, col):
    """The runs of one colour in one panel as markers, and their group means as bars."""
    fig.add_trace(
        go.Scatter(
            x=points[0],
            y=points[1],
            mode="markers",
            name=label,
            legendgroup=label,
            showlegend=showlegend,
            marker={"color": color_for(colour_index), "size": 7, "opacity": 0.75},
            hovertemplate=f"{label}<br>%{{y:.4g}}<extra></extra>",
        ),
        row=row,
        col=col,
    )
    fig.add_trace(
        go.Scatter(
            x=means[0],
            y=means[1],
            mode="lines",
            showlegend=False,
            hoverinfo="skip",
            line={"color": "#111111", "width": 2},
        ),
        row=row,
        col=col,
    )


def strip_figure(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    metrics: Sequence[str],
    *,
    color: str | None = None,
    facet: str | None = None,
    labels: Mapping[str, str] | None = None,
    log: Sequence[str] = (),
    title: str | None = None,
    height_per_row: int = 260,
) -> go.Figure:
    """One point per run, grouped along x (e.g. the base optimizer), one column per metric.

    ``color`` splits each x group (e.g. SAM vs the base optimizer alone; offset side by side),
    ``facet`` gives one row of panels per value (e.g. the architecture). A short black bar marks
    each group's mean, so the spread over seeds is visible next to the average. Metrics in
    ``log`` get a log axis. ``labels`` renames metric keys / values in titles and legends.
    """
    if not rows:
        raise ValueError("rows must hold at least one run.")
    metrics = list(metrics)
    names = dict(labels or {})
    xs = list(dict.fromkeys(r[x] for r in rows))
    colors = list(dict.fromkeys(r[color] for r in rows)) if color else [None]
    facets = list(dict.fromkeys(r[facet] for r in rows)) if facet else [None]
    fig = make_subplots(
        rows=len(facets),
        cols=len(metrics),
        subplot_titles=_strip_titles(facets, metrics, names),
        horizontal_spacing=0.07,
        vertical_spacing=0.12 if len(facets) > 1 else 0,
    )
    width = 0.7 / len(colors)
    for fi, fv in enumerate(facets):
        for mi, m in enumerate(metrics):
            for ci, cv in enumerate(colors):
                group = [
                    r
                    for r in rows
                    if (color is None or r[color] == cv)
                    and (facet is None or r[facet] == fv)
                ]
                offset = (ci - (len(colors) - 1) / 2) * width
                points, means = _strip_points(group, x, xs, m, offset, width)
                label = names.get(str(cv), str(cv)) if cv is not None else m
                first = fi == 0 and mi == 0
                _add_strip_traces(fig, points, means, label, ci, first, fi + 1, mi + 1)
            fig.update_xaxes(
                tickvals=list(range(len(xs))),
                ticktext=[names.get(str(v), str(v)) for v in xs],
                row=fi + 1,
                col=mi + 1,
            )
            if m in log:
                fig.update_yaxes(
                    type="log", exponentformat="power", row=fi + 1, col=mi + 1
                )
    fig.update_layout(
        title=title,
        height=80 + height_per_row * len(facets),
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 70 if title else 40, "b": 40},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    )
    return fig
