"""Plotly figures for the book: data in, ``plotly.graph_objects.Figure`` out.

A *history* is a list of dicts, one per log point, with keys

    epoch, train_loss, test_error, test_error_se (0 or None allowed), hessian_trace (None allowed)

Several histories of the same setting (seeds) may be passed as a list; they are drawn as a mean
line with a shaded band. Every builder here is pure (no kernel, no widgets, no I/O), so it works
in a plain Python session and in tests. Markdown tables live in :mod:`sharpness_lib.tables`,
captions in :mod:`sharpness_lib.captions`, the renderer in :mod:`sharpness_lib.renderer`.

Static book pages must stay small and work offline: figures are emitted as HTML *without*
plotly.js (:mod:`sharpness_lib.renderer`), traces are
downsampled to at most ``max_points`` points and stored as float32 (plotly encodes numpy arrays
as base64), and axis labels avoid LaTeX so MathJax is not needed inside figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Tables, captions and the renderer have their own modules; they are re-exported here so that
# ``from sharpness_lib.plotting import caption, markdown_table, use_book_renderer`` keeps
# working in chapters written before the split.
from .captions import caption
from .captions import format_value as _fmt
from .figure_style import DEFAULT_MAX_POINTS, PALETTE, _f32, _rgba, _to_numpy, color_for
from .network_figures import (
    column_norm_figure,
    memorization_regions_figure,
    neuron_weights_figure,
)
from .renderer import RENDERER_NAME, figure_mimebundle, in_book_build, use_book_renderer
from .tables import MarkdownTable, markdown_table

__all__ = [
    "METRICS",
    "MarkdownTable",
    "RENDERER_NAME",
    "caption",
    "color_for",
    "column_norm_figure",
    "figure_mimebundle",
    "history_figure",
    "in_book_build",
    "markdown_table",
    "memorization_regions_figure",
    "neuron_weights_figure",
    "rescaling_figure",
    "scatter_figure",
    "slider_figure",
    "strip_figure",
    "use_book_renderer",
]

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


def _is_history(obj: Any) -> bool:
    """A history is a (possibly empty) sequence of dicts."""
    return (
        isinstance(obj, Sequence)
        and not isinstance(obj, str)
        and (len(obj) == 0 or isinstance(obj[0], Mapping))
    )


def _as_seed_list(runs: Any) -> list[list[Mapping]]:
    """One history or a list of histories (seeds) -> list of histories."""
    if _is_history(runs):
        return [list(runs)]
    if isinstance(runs, Sequence) and all(_is_history(h) for h in runs):
        return [list(h) for h in runs]
    raise TypeError(
        "expected a history (list of dicts with an 'epoch' key) or a list of such histories, "
        f"got {type(runs).__name__}"
    )


def _finite(v: Any, log: bool) -> bool:
    if v is None:
        return False
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and (f > 0 or not log)


def _series(
    history: Sequence[Mapping], key: str, log: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one metric, dropping None / non-finite (and <= 0 on log axes)."""
    pts = [
        (float(r["epoch"]), float(r[key])) for r in history if _finite(r.get(key), log)
    ]
    if not pts:
        return np.empty(0), np.empty(0)
    arr = np.asarray(pts)
    return arr[:, 0], arr[:, 1]


def _seed_stats(histories, key, log, band):
    """Align seeds on epoch; return x, centre, lower, upper (lower/upper None for one seed).

    Seeds are aligned on the union of their epochs; at each epoch the statistics use the seeds
    that logged a finite value there (a diverged seed simply stops contributing).
    """
    series = [_series(h, key, log) for h in histories]
    series = [s for s in series if s[0].size]
    if not series:
        return None
    if len(series) == 1:
        x, y = series[0]
        return x, y, None, None
    xs = np.unique(np.concatenate([s[0] for s in series]))
    table = np.full((len(series), xs.size), np.nan)
    for i, (x, y) in enumerate(series):
        table[i, np.searchsorted(xs, x)] = y
    # nanmean/nanmin warn on all-NaN columns; those cannot occur (xs is the union of logged
    # epochs) but keep the builders quiet under `-W error`.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if band == "std":
            mean = np.nanmean(table, axis=0)
            std = np.nanstd(table, axis=0)
            lo, hi = mean - std, mean + std
            if log:  # a std band may cross zero; keep it on the log axis
                lo = np.maximum(lo, np.nanmin(table, axis=0))
        elif band == "minmax":
            mean = np.nanmean(table, axis=0)
            lo, hi = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
        else:
            raise ValueError(f"band must be 'minmax' or 'std', got {band!r}")
    return xs, mean, lo, hi


def _downsample(n: int, max_points: int) -> np.ndarray:
    """Indices of at most max_points evenly spaced points, always keeping the last one."""
    if n <= max_points:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return idx


def _add_run_traces(
    fig: go.Figure,
    label: str,
    histories: list[list[Mapping]],
    key: str,
    *,
    row: int,
    col: int,
    color: str,
    showlegend: bool,
    visible: bool = True,
    band: str = "minmax",
    max_points: int = DEFAULT_MAX_POINTS,
    dash: str | None = None,
) -> int:
    """Add the line (and band) of one run label to one panel; return #traces added."""
    log = METRICS[key][1] if key in METRICS else False
    stats = _seed_stats(histories, key, log, band)
    if stats is None:
        return 0
    x, y, lo, hi = stats
    idx = _downsample(x.size, max_points)
    x, y = x[idx], y[idx]
    added = 0
    if lo is None and key == "test_error":
        # Single run: show the sampling uncertainty of the test-error estimate (±2 SE), if any.
        se = _series(histories[0], "test_error_se", log=False)
        if se[0].size and np.any(se[1] > 0):
            se_y = np.interp(x, se[0], se[1])
            lo, hi = (
                np.clip(y - 2 * se_y, 0, None),
                y + 2 * se_y,
            )  # on the downsampled grid
    elif lo is not None:
        lo, hi = lo[idx], hi[idx]
    if lo is not None:
        # Closed polygon (x forward along hi, back along lo): one trace, no fill='tonexty'
        # ordering pitfalls when lines and bands of several labels are interleaved.
        fig.add_trace(
            go.Scatter(
                x=_f32(np.concatenate([x, x[::-1]])),
                y=_f32(np.concatenate([hi, lo[::-1]])),
                fill="toself",
                fillcolor=_rgba(color, 0.18),
                mode="lines",  # without it plotly draws markers while a run has < 20 points
                line={"width": 0},
                hoverinfo="skip",
                name=f"{label} (band)",
                legendgroup=label,
                showlegend=False,
                visible=visible,
                meta={"role": "band", "label": label, "metric": key},
            ),
            row=row,
            col=col,
        )
        added += 1
    n_seeds = len(histories)
    fig.add_trace(
        go.Scatter(
            x=_f32(x),
            y=_f32(y),
            mode="lines",
            line={"color": color, "width": 2, "dash": dash},
            name=label,
            legendgroup=label,
            showlegend=showlegend,
            visible=visible,
            hovertemplate=f"{label}<br>epoch %{{x:.0f}}<br>%{{y:.4g}}"
            + (f" (mean of {n_seeds})" if n_seeds > 1 else "")
            + "<extra></extra>",
            meta={"role": "line", "label": label, "metric": key, "n_seeds": n_seeds},
        ),
        row=row,
        col=col,
    )
    return added + 1


def _style_axes(fig: go.Figure, metrics: Sequence[str]) -> None:
    for i, key in enumerate(metrics, start=1):
        log = METRICS[key][1]
        fig.update_xaxes(title_text="epoch", row=1, col=i)
        if log:
            fig.update_yaxes(type="log", exponentformat="power", row=1, col=i)
        elif key == "test_error":
            fig.update_yaxes(rangemode="tozero", row=1, col=i)


def _base_layout(fig: go.Figure, title: str | None, height: int) -> None:
    fig.update_layout(
        title=title,
        height=height,
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 70 if title else 40, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
        hovermode="closest",
    )


def _check_metrics(metrics) -> list[str]:
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(
            f"metric must be one of {sorted(METRICS)}, got {bad or metrics}"
        )
    return metrics


# ----------------------------------------------------------------------------- builders
def history_figure(
    runs: Mapping[str, Any],
    title: str | None = None,
    *,
    band: str = "minmax",
    colors: Mapping[str, str] | None = None,
    metrics: Sequence[str] = ("train_loss", "test_error", "hessian_trace"),
    max_points: int = DEFAULT_MAX_POINTS,
    height: int = 380,
) -> go.Figure:
    """Training curves side by side: loss (log), test error, Tr Hessian (log).

    Serves Figures 1, 2a, 4, 5, 6 (and the appendix figures) of Wen, Li & Ma (2023).
    ``runs`` maps a label (e.g. ``"GD+WD"``, ``"1-SAM"``) to one history or to a list of
    histories (seeds), the latter drawn as the mean with a min/max (``band="minmax"``) or
    ±1 std (``band="std"``) band. A single history with ``test_error_se > 0`` gets a ±2 SE band
    on the test-error panel. Each label keeps one colour across panels and one legend entry
    (clicking it toggles the label in all panels).
    """
    metrics = _check_metrics(metrics)
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(
            "runs must be a non-empty dict label -> history (or list of histories)"
        )
    fig = make_subplots(
        rows=1,
        cols=len(metrics),
        subplot_titles=[METRICS[m][0] for m in metrics],
        horizontal_spacing=0.08,
    )
    for i, (label, hist) in enumerate(runs.items()):
        histories = _as_seed_list(hist)
        color = (colors or {}).get(label, color_for(i))
        first = True
        for col, key in enumerate(metrics, start=1):
            n = _add_run_traces(
                fig,
                str(label),
                histories,
                key,
                row=1,
                col=col,
                color=color,
                showlegend=first,
                band=band,
                max_points=max_points,
            )
            first = first and n == 0  # legend entry on the first panel that has data
    _style_axes(fig, metrics)
    _base_layout(fig, title, height)
    return fig


def slider_figure(
    runs_by_value: Mapping[Any, Any],
    param_name: str,
    metric: str | Sequence[str] = "test_error",
    *,
    title: str | None = None,
    active: int = 0,
    band: str = "minmax",
    max_points: int = DEFAULT_MAX_POINTS,
    height: int = 420,
) -> go.Figure:
    """Precomputed runs over one parameter, switched by a plotly slider (no kernel needed).

    For the static pages' "explore" boxes (e.g. width or ρ sweeps around Figures 1, 4, 6).
    ``runs_by_value`` maps a parameter value to one history, a list of histories (seeds), or a
    dict label -> history/histories (e.g. ``{"GD+WD": h1, "1-SAM": h2}`` at each value).
    ``metric`` is one metric key or a sequence of them (one panel each). Slider step ``i`` shows
    only the traces of value ``i``; y ranges are fixed across steps so values can be compared.
    """
    metrics = _check_metrics(metric)
    if not isinstance(runs_by_value, Mapping) or not runs_by_value:
        raise ValueError("runs_by_value must be a non-empty dict value -> runs")
    values = list(runs_by_value)
    if not 0 <= active < len(values):
        raise ValueError(f"active must be in [0, {len(values) - 1}], got {active}")

    fig = make_subplots(
        rows=1,
        cols=len(metrics),
        subplot_titles=[METRICS[m][0] for m in metrics],
        horizontal_spacing=0.08,
    )
    owner: list[int] = []  # owner[t] = index of the value trace t belongs to
    labels: dict[str, str] = {}  # consistent colour per label across values
    for v_idx, value in enumerate(values):
        runs = runs_by_value[value]
        if not isinstance(runs, Mapping):
            runs = {f"{param_name} = {_fmt(value)}": runs}
            colour_key = "__single__"
        else:
            colour_key = None
        for label, hist in runs.items():
            key = colour_key or str(label)
            color = labels.setdefault(key, color_for(len(labels)))
            histories = _as_seed_list(hist)
            first = True
            for col, m in enumerate(metrics, start=1):
                n = _add_run_traces(
                    fig,
                    str(label),
                    histories,
                    m,
                    row=1,
                    col=col,
                    color=color,
                    showlegend=first,
                    visible=(v_idx == active),
                    band=band,
                    max_points=max_points,
                )
                owner += [v_idx] * n
                first = first and n == 0

    steps = []
    for v_idx, value in enumerate(values):
        steps.append(
            {
                "method": "restyle",
                "args": [{"visible": [o == v_idx for o in owner]}],
                "label": _fmt(value),
            }
        )
    fig.update_layout(
        sliders=[
            {
                "active": active,
                "currentvalue": {"prefix": f"{param_name} = "},
                "pad": {"t": 60},
                "steps": steps,
            }
        ]
    )
    _style_axes(fig, metrics)
    _fix_ranges(fig, metrics)
    _base_layout(fig, title, height)
    fig.update_layout(
        legend={"y": 1.12, "yanchor": "bottom", "x": 0}
    )  # slider sits below
    return fig


def _fix_ranges(fig: go.Figure, metrics: Sequence[str]) -> None:
    """Fixed x/y ranges over *all* traces (visible or not) so slider steps are comparable."""
    for col, key in enumerate(metrics, start=1):
        xref = "x" if col == 1 else f"x{col}"
        ys, xs = [], []
        for tr in fig.data:
            if tr.xaxis == xref and tr.y is not None and len(tr.y):
                ys.append(np.asarray(tr.y, dtype=float))
                xs.append(np.asarray(tr.x, dtype=float))
        if not ys:
            continue
        y = np.concatenate(ys)
        x = np.concatenate(xs)
        fig.update_xaxes(range=[float(x.min()), float(x.max())], row=1, col=col)
        if METRICS[key][1]:
            y = y[y > 0]
            if y.size:
                lo, hi = np.log10(y.min()), np.log10(y.max())
                pad = 0.05 * max(hi - lo, 1e-3)
                fig.update_yaxes(range=[lo - pad, hi + pad], row=1, col=col)
        else:
            hi = float(y.max())
            fig.update_yaxes(range=[0, max(hi * 1.05, 0.05)], row=1, col=col)


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
    fig.update_layout(
        title=title,
        height=height,
        template="plotly_white",
        xaxis_title=x_title,
        yaxis_title="Tr ∇²L",
        margin={"l": 60, "r": 20, "t": 60 if title else 30, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )
    fig.update_xaxes(type="log", exponentformat="power")
    fig.update_yaxes(type="log", exponentformat="power")
    return fig


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
    titles = [
        f"{names.get(str(f), f)}: {names.get(m, METRICS.get(m, (m,))[0])}"
        if f is not None
        else names.get(m, METRICS.get(m, (m,))[0])
        for f in facets
        for m in metrics
    ]
    fig = make_subplots(
        rows=len(facets),
        cols=len(metrics),
        subplot_titles=titles,
        horizontal_spacing=0.07,
        vertical_spacing=0.12 if len(facets) > 1 else 0,
    )
    width = 0.7 / len(colors)
    for fi, fv in enumerate(facets):
        for mi, m in enumerate(metrics):
            for ci, cv in enumerate(colors):
                px, py, mx, my = [], [], [], []
                for xi, xv in enumerate(xs):
                    vals = [
                        float(r[m])
                        for r in rows
                        if r[x] == xv
                        and (color is None or r[color] == cv)
                        and (facet is None or r[facet] == fv)
                        and r.get(m) is not None
                        and math.isfinite(float(r[m]))
                    ]
                    centre = xi + (ci - (len(colors) - 1) / 2) * width
                    # a deterministic spread so coincident points stay visible
                    offs = (
                        np.linspace(-0.25, 0.25, len(vals)) * width
                        if len(vals) > 1
                        else [0.0]
                    )
                    px += [centre + o for o in offs[: len(vals)]]
                    py += vals
                    if vals:
                        mx += [centre - 0.35 * width, centre + 0.35 * width, None]
                        mean = float(np.mean(vals))
                        my += [mean, mean, None]
                label = names.get(str(cv), str(cv)) if cv is not None else m
                first = fi == 0 and mi == 0
                fig.add_trace(
                    go.Scatter(
                        x=px,
                        y=py,
                        mode="markers",
                        name=label,
                        legendgroup=label,
                        showlegend=first,
                        marker={"color": color_for(ci), "size": 7, "opacity": 0.75},
                        hovertemplate=f"{label}<br>%{{y:.4g}}<extra></extra>",
                    ),
                    row=fi + 1,
                    col=mi + 1,
                )
                fig.add_trace(
                    go.Scatter(
                        x=mx,
                        y=my,
                        mode="lines",
                        showlegend=False,
                        hoverinfo="skip",
                        line={"color": "#111111", "width": 2},
                    ),
                    row=fi + 1,
                    col=mi + 1,
                )
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
