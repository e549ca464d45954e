"""Plotly figures of training runs for the book: histories in, ``go.Figure`` out.

A *history* is a list of dicts, one per log point, with keys

    epoch, train_loss, test_error, test_error_se (0 or None allowed), hessian_trace (None allowed)

Several histories of the same setting (seeds) may be passed as a list; they are drawn as a mean
line with a shaded band. Every builder here is pure (no kernel, no widgets, no I/O), so it works
in a plain Python session and in tests.

This module is the one import for chapters: it re-exports the figures that compare numbers
(:mod:`sharpness_lib.comparison_figures`: scatter, rescaling, strip), the figures of one net's
weights (:mod:`sharpness_lib.network_figures`), Markdown tables
(:mod:`sharpness_lib.tables`), captions (:mod:`sharpness_lib.captions`) and the renderer
(:mod:`sharpness_lib.renderer`).

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

# Re-exported (see the module docstring): chapters import every figure, table, caption and
# the renderer from here.
from .captions import caption
from .captions import format_value as _fmt
from .comparison_figures import rescaling_figure, scatter_figure, strip_figure
from .figure_style import DEFAULT_MAX_POINTS, METRICS, _f32, _rgba, color_for
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


def _band_edges(histories, key, x, y, lo, hi, idx):
    """The band's (lower, upper) edges on the downsampled grid ``idx``: the seeds' spread,
    or for a single run's test error ±2 SE of its estimate; (None, None) for no band."""
    if lo is not None:
        return lo[idx], hi[idx]
    if key == "test_error":
        se = _series(histories[0], "test_error_se", log=False)
        if se[0].size and np.any(se[1] > 0):
            se_y = np.interp(x, se[0], se[1])
            return np.clip(y - 2 * se_y, 0, None), y + 2 * se_y
    return None, None


def _band_trace(x, lo, hi, label: str, key: str, color: str, visible: bool):
    """The band as one closed polygon (x forward along hi, back along lo): no
    fill='tonexty' ordering pitfalls when lines and bands of several labels interleave."""
    return go.Scatter(
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
    )


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
    lo, hi = _band_edges(histories, key, x, y, lo, hi, idx)
    added = 0
    if lo is not None:
        fig.add_trace(
            _band_trace(x, lo, hi, label, key, color, visible), row=row, col=col
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


def _add_slider_traces(
    fig, runs_by_value, param_name, metrics, active, band, max_points
):
    """Every value's traces (only ``active``'s visible); returns, per trace, the index of
    the value it belongs to. A label keeps one colour across values."""
    owner: list[int] = []
    labels: dict[str, str] = {}
    for v_idx, value in enumerate(runs_by_value):
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
    return owner


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
    owner = _add_slider_traces(
        fig, runs_by_value, param_name, metrics, active, band, max_points
    )
    steps = [
        {
            "method": "restyle",
            "args": [{"visible": [o == v_idx for o in owner]}],
            "label": _fmt(value),
        }
        for v_idx, value in enumerate(values)
    ]
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
