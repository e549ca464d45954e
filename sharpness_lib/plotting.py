"""Plotly figures for the book: data in, ``plotly.graph_objects.Figure`` out.

A *history* is a list of dicts, one per log point, with keys

    epoch, train_loss, test_error, test_error_se (0 or None allowed), hessian_trace (None allowed)

Several histories of the same setting (seeds) may be passed as a list; they are drawn as a mean
line with a shaded band. Every builder here is pure (no kernel, no widgets, no I/O), so it works
in a plain Python session and in tests; only :func:`use_book_renderer` touches IPython.

Static book pages must stay small and work offline: figures are emitted as HTML *without*
plotly.js (the book serves one copy, see ``book/_ext/offline_assets.py``), traces are
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

__all__ = [
    "METRICS",
    "RENDERER_NAME",
    "caption",
    "color_for",
    "column_norm_figure",
    "figure_mimebundle",
    "history_figure",
    "in_book_build",
    "memorization_regions_figure",
    "neuron_weights_figure",
    "rescaling_figure",
    "scatter_figure",
    "slider_figure",
    "strip_figure",
    "use_book_renderer",
]

RENDERER_NAME = "sharpness_book"

# metric key -> (panel title, log-y?)
METRICS: dict[str, tuple[str, bool]] = {
    "train_loss": ("Training loss", True),
    "test_error": ("Test error (0-1)", False),
    "hessian_trace": ("Sharpness Tr ∇²L", True),
    "min_sharpness": ("Minimum sharpness", True),
    "test_mse": ("Test squared error", True),
}

# Plotly's default qualitative palette, fixed here so colours do not depend on the template.
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)

DEFAULT_MAX_POINTS = 250  # a panel is ~250 px wide: more points only add page weight


# ----------------------------------------------------------------------------- renderer
# Set (to "1") by the book's Sphinx extension (book/_ext/offline_assets.py) in the
# jupyter-book process; kernels it starts inherit it.
BUILD_ENV_VAR = "SHARPNESS_BOOK_BUILD"
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def in_book_build() -> bool:
    """True while a chapter is being executed by ``jupyter-book build``."""
    import os

    return os.environ.get(BUILD_ENV_VAR) == "1"


def figure_mimebundle(fig) -> dict:
    """The MIME bundle the book shows for ``fig`` (used by the renderer and the UI panel).

    * During the book build: ``text/html`` without plotly.js and without a MathJax CDN tag; the
      book loads one local ``plotly.min.js`` on pages that have a figure. (myst-nb cannot render
      plotly's own MIME type, and the stock HTML renderers either inline 4.8 MB of plotly.js per
      figure page or load it from a CDN.)
    * In a live kernel (JupyterLab, Notebook 7, VS Code): plotly's JSON MIME type only, which
      those frontends render natively; HTML without plotly.js would be blank there. Sending
      both is not an option: myst-nb warns about the JSON type, which fails ``-W`` builds.
    """
    import json

    import plotly.io as pio

    fig_dict = fig if isinstance(fig, dict) else fig.to_dict()
    if in_book_build():
        layout = fig_dict.get("layout", {})
        html = pio.to_html(
            fig_dict,
            config=_PLOTLY_CONFIG,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=layout.get("height") or 450,
            validate=False,
        )
        return {"text/html": html}
    fig_json = json.loads(pio.to_json(fig_dict, validate=False))
    fig_json["config"] = dict(_PLOTLY_CONFIG)
    return {"application/vnd.plotly.v1+json": fig_json}


def use_book_renderer() -> str:
    """Register the book's plotly renderer and make it the default inside IPython.

    Call it in the hidden first cell (tag ``remove-cell``) of every chapter. Figures then show
    as :func:`figure_mimebundle` describes: offline-ready HTML in the built book, plotly's native
    MIME type in a live session.

    Outside IPython (plain ``python``) the renderer is registered but the default is left
    alone, so ``fig.show()`` keeps working as before. Returns the active default renderer name.
    """
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class BookRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return figure_mimebundle(fig_dict)

    pio.renderers[RENDERER_NAME] = BookRenderer()
    try:
        from IPython import get_ipython  # the only IPython import in this module
    except ImportError:  # pragma: no cover - IPython ships with the book's requirements
        return pio.renderers.default
    if get_ipython() is not None:
        pio.renderers.default = RENDERER_NAME
    return pio.renderers.default


# ----------------------------------------------------------------------------- helpers
def color_for(index: int) -> str:
    """Palette colour number ``index`` (cycled)."""
    return PALETTE[index % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _is_history(obj: Any) -> bool:
    """A history is a (possibly empty) sequence of dicts."""
    return isinstance(obj, Sequence) and not isinstance(obj, str) and (
        len(obj) == 0 or isinstance(obj[0], Mapping)
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


def _series(history: Sequence[Mapping], key: str, log: bool) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one metric, dropping None / non-finite (and <= 0 on log axes)."""
    pts = [(float(r["epoch"]), float(r[key])) for r in history if _finite(r.get(key), log)]
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


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


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
            lo, hi = np.clip(y - 2 * se_y, 0, None), y + 2 * se_y  # on the downsampled grid
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
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {bad or metrics}")
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
        raise ValueError("runs must be a non-empty dict label -> history (or list of histories)")
    fig = make_subplots(
        rows=1, cols=len(metrics), subplot_titles=[METRICS[m][0] for m in metrics],
        horizontal_spacing=0.08,
    )
    for i, (label, hist) in enumerate(runs.items()):
        histories = _as_seed_list(hist)
        color = (colors or {}).get(label, color_for(i))
        first = True
        for col, key in enumerate(metrics, start=1):
            n = _add_run_traces(
                fig, str(label), histories, key, row=1, col=col, color=color,
                showlegend=first, band=band, max_points=max_points,
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
        rows=1, cols=len(metrics), subplot_titles=[METRICS[m][0] for m in metrics],
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
                    fig, str(label), histories, m, row=1, col=col, color=color,
                    showlegend=first, visible=(v_idx == active), band=band,
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
    fig.update_layout(legend={"y": 1.12, "yanchor": "bottom", "x": 0})  # slider sits below
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


def _fmt(v: Any) -> str:
    """Compact number formatting for captions and slider labels (100000 -> 1e5)."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if abs(v) >= 10_000:
            mant, exp = f"{v:e}".split("e")
            mant = mant.rstrip("0").rstrip(".")
            return f"{mant}e{int(exp)}"
        return str(v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


# Display names and order for caption(); unknown keys follow in their own order.
_CAPTION_KEYS = {
    "arch": "architecture", "architecture": "architecture", "width": "width m",
    "bias": "bias", "norm": "normalization", "normalization": "normalization",
    "activation": "activation", "algorithm": "algorithm", "algo": "algorithm",
    "optimizer": "base optimizer", "batch_size": "batch", "schedule": "schedule",
    "lr": "lr η", "rho": "ρ", "weight_decay": "weight decay", "wd": "weight decay",
    "init_scale": "init scale", "epochs": "epochs",
    "d": "d", "n": "n", "seed": "seed", "seeds": "seeds",
}


def caption(config: Any, *, seeds: Sequence[int] | None = None, label: str | None = None,
            html: bool = False) -> str:
    """A one-line summary of a run's hyperparameters, to print next to its figure.

    Returns Markdown (``**lr η** 0.01 · **ρ** 0.05 · …``; display it with
    ``IPython.display.Markdown``) or, with ``html=True``, the same as an HTML ``<p>``.
    Keys with value ``None`` are skipped; lists (schedules) are joined with ``→``.
    """
    if hasattr(config, "summary"):  # a TrainConfig: only the settings that matter
        config = config.summary()
    if seeds is not None:  # several seeds of one config: list them instead of the one seed
        config = {k: v for k, v in config.items() if k != "seed"}
        config["seeds"] = ", ".join(map(str, seeds))
    order = list(dict.fromkeys([k for k in _CAPTION_KEYS if k in config] + list(config)))
    parts = []
    for k in order:
        v = config[k]
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            val = " → ".join(_fmt(x) for x in v)
        else:
            val = _fmt(v)
        name = _CAPTION_KEYS.get(k, str(k).replace("_", " "))
        parts.append(f"<b>{name}</b> {val}" if html else f"**{name}** {val}")
    body = " · ".join(parts)
    if label:
        body = f"<b>{label}</b>: {body}" if html else f"**{label}**: {body}"
    return f'<p class="run-caption">{body}</p>' if html else body


def _to_numpy(a: Any) -> np.ndarray:
    """numpy view of a numpy array, nested list or torch tensor (no torch import needed)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)


def column_norm_figure(W1: Any, *, highlight: Sequence[int] = (0, 1), title: str | None = None) -> go.Figure:
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
        raise ValueError(f"W2 must have width {m} entries (one per neuron), got {a.size}")
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
        title=title or f"First-layer weights of the {k} largest neurons (|W2_j|·||W1_j||)",
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
        return None if b < 0 else np.column_stack([np.cos(t := np.linspace(0, 2 * np.pi, samples)),
                                                   np.sin(t)])
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
    if W1.ndim != 2 or W1.shape[1] != 2 or b1.size != W1.shape[0] or W2.size != W1.shape[0]:
        raise ValueError("each model must be a 2-layer net on 2-D inputs: W1 (m, 2), b1 (m,), "
                         f"W2 (m,); got shapes {W1.shape}, {b1.shape}, {W2.shape}")
    return W1, b1, W2


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
        raise ValueError(f"points must be (n, 2) and labels (n,); got {X.shape} and {y.shape}")
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
    owner: list[int] = []
    fig.add_trace(go.Scatter(
        x=_f32(np.append(circle[:, 0], 1.0)), y=_f32(np.append(circle[:, 1], 0.0)),
        mode="lines", line={"color": PALETTE[7], "width": 1, "dash": "dot"},
        name="unit circle", hoverinfo="skip"))
    owner.append(-1)
    titles = []
    for v_idx, eps in enumerate(margins):
        W1, b1, W2 = _first_layer(models_by_margin[eps])
        for j in range(W1.shape[0]):
            poly = _disk_cap(W1[j], float(b1[j]))
            if poly is None:
                continue  # never active on the disk
            colour = color_for(j)
            fig.add_trace(go.Scatter(
                x=_f32(np.append(poly[:, 0], poly[0, 0])), y=_f32(np.append(poly[:, 1], poly[0, 1])),
                fill="toself", fillcolor=_rgba(colour, 0.22), mode="lines",
                line={"color": colour, "width": 1}, name=f"neuron {j + 1} active",
                legendgroup="regions", showlegend=False, visible=(v_idx == active),
                hovertemplate=f"neuron {j + 1} active (W2 = {W2[j]:+.3g})<extra></extra>"))
            owner.append(v_idx)
        f = np.maximum(circle @ W1.T + b1, 0) @ W2
        nonzero = f != 0
        arc = np.where(nonzero[:, None], circle, np.nan)
        fig.add_trace(go.Scatter(
            x=_f32(np.append(arc[:, 0], arc[0, 0])), y=_f32(np.append(arc[:, 1], arc[0, 1])),
            mode="lines", line={"color": "black", "width": 4}, connectgaps=False,
            name="output f ≠ 0 on the circle", showlegend=True, visible=(v_idx == active),
            hoverinfo="skip"))
        owner.append(v_idx)
        zero_frac = 1.0 - float(nonzero.mean())
        titles.append((title + "<br>" if title else "")
                      + f"margin ε = {_fmt(eps)}: output exactly 0 on {100 * zero_frac:.1f}% "
                      "of the circle")
    for lab, colour, symbol in ((1, PALETTE[1], "circle"), (-1, PALETTE[0], "square")):
        sel = y * lab > 0
        if sel.any():
            fig.add_trace(go.Scatter(
                x=_f32(X[sel, 0]), y=_f32(X[sel, 1]), mode="markers",
                marker={"color": colour, "size": 11, "symbol": symbol,
                        "line": {"color": "white", "width": 1.5}},
                name=f"training point, y = {lab:+d}",
                hovertemplate="(%{x:.2f}, %{y:.2f})<extra></extra>"))
            owner.append(-1)
    steps = [{"method": "update", "label": _fmt(eps),
              "args": [{"visible": [o in (-1, v_idx) for o in owner]}, {"title.text": titles[v_idx]}]}
             for v_idx, eps in enumerate(margins)]
    fig.update_layout(
        title={"text": titles[active]}, height=height, template="plotly_white",
        sliders=[{"active": active, "currentvalue": {"prefix": "margin ε = "},
                  "pad": {"t": 40}, "steps": steps}],
        margin={"l": 40, "r": 20, "t": 70, "b": 40},
        legend={"yanchor": "top", "y": 1.0, "x": 1.02},
        hovermode="closest",
    )
    fig.update_xaxes(range=[-extent, extent], zeroline=False, title_text="x[1]",
                     constrain="domain")
    fig.update_yaxes(range=[-extent, extent], zeroline=False, scaleanchor="x", scaleratio=1,
                     title_text="x[2]")
    return fig


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
            raise ValueError(f"group {label!r}: x has {x.size} points but y has {y.size}")
        xs = x[np.isfinite(x) & ((x > 0) | (not log))]
        if xs.size:
            lo, hi = min(lo, float(xs.min())), max(hi, float(xs.max()))
        text = list((hover or {}).get(label, [])) or None
        fig.add_trace(go.Scatter(
            x=_f32(x), y=_f32(y), mode="markers", name=str(label), text=text,
            marker={"color": color_for(i), "size": 8, "opacity": 0.8},
            hovertemplate=(f"{label}<br>%{{x:.4g}}, %{{y:.4g}}"
                           + ("<br>%{text}" if text else "") + "<extra></extra>"),
        ))
    if diagonal and math.isfinite(lo):
        fig.add_trace(go.Scatter(
            x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
            line={"color": PALETTE[7], "dash": "dash", "width": 1.5}, hoverinfo="skip",
        ))
    fig.update_layout(
        title=title, height=height, template="plotly_white", xaxis_title=x_title,
        yaxis_title=y_title, margin={"l": 60, "r": 20, "t": 60 if title else 30, "b": 50},
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
        raise ValueError("traces must be a non-empty dict label -> values at the scales.")
    fig = go.Figure()
    for i, (label, ys) in enumerate(traces.items()):
        y = _to_numpy(ys).reshape(-1)
        if y.size != x.size:
            raise ValueError(f"curve {label!r} has {y.size} values for {x.size} scales.")
        fig.add_trace(go.Scatter(x=_f32(x), y=_f32(y), mode="lines", name=str(label),
                                 line={"color": color_for(i), "width": 2.5},
                                 hovertemplate=f"{label}<br>α = %{{x:.3g}}<br>Tr = %{{y:.4g}}"
                                               "<extra></extra>"))
    for j, (label, value) in enumerate((minima or {}).items()):
        fig.add_trace(go.Scatter(x=[float(x.min()), float(x.max())], y=[value, value],
                                 mode="lines", name=f"{label}: {value:.4g}",
                                 line={"color": color_for(len(traces) + j), "dash": "dash",
                                       "width": 1.5}, hoverinfo="skip"))
    fig.update_layout(title=title, height=height, template="plotly_white",
                      xaxis_title=x_title, yaxis_title="Tr ∇²L",
                      margin={"l": 60, "r": 20, "t": 60 if title else 30, "b": 50},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0})
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
    titles = [f"{names.get(str(f), f)}: {names.get(m, METRICS.get(m, (m,))[0])}" if f is not None
              else names.get(m, METRICS.get(m, (m,))[0]) for f in facets for m in metrics]
    fig = make_subplots(rows=len(facets), cols=len(metrics), subplot_titles=titles,
                        horizontal_spacing=0.07, vertical_spacing=0.12 if len(facets) > 1 else 0)
    width = 0.7 / len(colors)
    for fi, fv in enumerate(facets):
        for mi, m in enumerate(metrics):
            for ci, cv in enumerate(colors):
                px, py, mx, my = [], [], [], []
                for xi, xv in enumerate(xs):
                    vals = [float(r[m]) for r in rows
                            if r[x] == xv and (color is None or r[color] == cv)
                            and (facet is None or r[facet] == fv)
                            and r.get(m) is not None and math.isfinite(float(r[m]))]
                    centre = xi + (ci - (len(colors) - 1) / 2) * width
                    # a deterministic spread so coincident points stay visible
                    offs = np.linspace(-0.25, 0.25, len(vals)) * width if len(vals) > 1 else [0.0]
                    px += [centre + o for o in offs[:len(vals)]]
                    py += vals
                    if vals:
                        mx += [centre - 0.35 * width, centre + 0.35 * width, None]
                        mean = float(np.mean(vals))
                        my += [mean, mean, None]
                label = names.get(str(cv), str(cv)) if cv is not None else m
                first = fi == 0 and mi == 0
                fig.add_trace(go.Scatter(
                    x=px, y=py, mode="markers", name=label, legendgroup=label, showlegend=first,
                    marker={"color": color_for(ci), "size": 7, "opacity": 0.75},
                    hovertemplate=f"{label}<br>%{{y:.4g}}<extra></extra>"),
                    row=fi + 1, col=mi + 1)
                fig.add_trace(go.Scatter(
                    x=mx, y=my, mode="lines", showlegend=False, hoverinfo="skip",
                    line={"color": "#111111", "width": 2}), row=fi + 1, col=mi + 1)
            fig.update_xaxes(tickvals=list(range(len(xs))),
                             ticktext=[names.get(str(v), str(v)) for v in xs],
                             row=fi + 1, col=mi + 1)
            if m in log:
                fig.update_yaxes(type="log", exponentformat="power", row=fi + 1, col=mi + 1)
    fig.update_layout(title=title, height=80 + height_per_row * len(facets),
                      template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 70 if title else 40, "b": 40},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


class MarkdownTable:
    """Rows (dicts with the same keys) shown as a Markdown table in a notebook or the book.

    Displays through ``_repr_markdown_``, so no IPython import is needed; ``str()`` gives the
    Markdown text. Floats are rounded to ``digits`` significant digits.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], digits: int = 4):
        if not rows:
            raise ValueError("a table needs at least one row.")
        self.rows, self.digits = [dict(r) for r in rows], digits

    def _cell(self, v: Any) -> str:
        text = f"{v:.{self.digits}g}" if isinstance(v, (float, np.floating)) else str(v)
        return text.replace("|", "\\|")

    def __str__(self) -> str:
        head = list(self.rows[0])
        lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(self._cell(r.get(k, "")) for k in head) + " |"
                  for r in self.rows]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return str(self)


def markdown_table(rows: Sequence[Mapping[str, Any]], digits: int = 4) -> MarkdownTable:
    """Rows of results as a Markdown table (what the chapters print next to their figures)."""
    return MarkdownTable(rows, digits)
