"""Tests for sharpness_lib.plotting: trace structure, bands, slider steps, renderer output."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from sharpness_lib import plotting as P


def make_history(n=30, every=10, seed=0, trace_every=1, stop_at=None):
    """Deterministic history; hessian_trace only every `trace_every` points, None otherwise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        e = i * every
        if stop_at is not None and e >= stop_at:
            break
        out.append(
            {
                "epoch": e,
                "train_loss": float(math.exp(-i / 5) + 1e-3 * rng.random()),
                "test_error": float(0.5 * math.exp(-i / 10) + 0.01 * rng.random()),
                "test_error_se": 0.0,
                "hessian_trace": float(10 + rng.random())
                if i % trace_every == 0
                else None,
            }
        )
    return out


def traces(fig, role=None, label=None, axis=None):
    return [
        t
        for t in fig.data
        if (role is None or t.meta["role"] == role)
        and (label is None or t.meta["label"] == label)
        and (axis is None or t.xaxis == axis)
    ]


# ----------------------------------------------------------------------------- history_figure
def test_history_figure_single_runs_one_line_per_panel_and_legend_once():
    fig = P.history_figure(
        {"GD+WD": make_history(seed=0), "1-SAM": make_history(seed=1)}, title="t"
    )
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 6  # 2 labels x 3 panels, no bands (se == 0, one seed)
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3"}
    for label in ("GD+WD", "1-SAM"):
        lines = traces(fig, "line", label)
        assert len(lines) == 3
        assert sum(bool(t.showlegend) for t in lines) == 1  # one legend entry per label
        assert len({t.line.color for t in lines}) == 1  # same colour in every panel
        assert len({t.legendgroup for t in lines}) == 1
    assert (
        traces(fig, "line", "GD+WD")[0].line.color
        != traces(fig, "line", "1-SAM")[0].line.color
    )
    # loss and trace panels are log-scale, test error linear
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis2.type != "log"
    assert fig.layout.yaxis3.type == "log"
    assert fig.layout.title.text == "t"


def test_history_figure_values_match_input():
    h = make_history(n=12)
    fig = P.history_figure({"run": h})
    loss = traces(fig, "line", "run", "x")[0]
    np.testing.assert_allclose(loss.x, [r["epoch"] for r in h])
    np.testing.assert_allclose(loss.y, [r["train_loss"] for r in h], rtol=1e-6)


def test_multi_seed_draws_mean_line_and_minmax_band():
    seeds = [make_history(seed=s) for s in range(3)]
    fig = P.history_figure({"1-SAM": seeds})
    bands = traces(fig, "band", "1-SAM")
    lines = traces(fig, "line", "1-SAM")
    assert len(bands) == 3 and len(lines) == 3
    loss_line, loss_band = (
        traces(fig, "line", axis="x")[0],
        traces(fig, "band", axis="x")[0],
    )
    table = np.array([[r["train_loss"] for r in h] for h in seeds])
    np.testing.assert_allclose(loss_line.y, table.mean(0), rtol=1e-6)
    assert loss_line.meta["n_seeds"] == 3
    # band polygon: forward along max, back along min
    n = table.shape[1]
    assert loss_band.fill == "toself" and len(loss_band.x) == 2 * n
    np.testing.assert_allclose(loss_band.y[:n], table.max(0), rtol=1e-6)
    np.testing.assert_allclose(loss_band.y[n:], table.min(0)[::-1], rtol=1e-6)
    assert loss_band.showlegend is False
    assert loss_band.legendgroup == loss_line.legendgroup  # toggled together


def test_std_band_stays_positive_on_log_axes():
    seeds = [make_history(seed=s) for s in range(4)]
    seeds[0] = [
        dict(r, train_loss=r["train_loss"] * 100) for r in seeds[0]
    ]  # huge spread
    fig = P.history_figure({"x": seeds}, band="std")
    band = traces(fig, "band", axis="x")[0]
    assert np.all(np.asarray(band.y) > 0)
    with pytest.raises(ValueError, match="band"):
        P.history_figure({"x": seeds}, band="iqr")


def test_seeds_of_different_length_use_available_values():
    full, short = make_history(n=20, seed=0), make_history(n=20, seed=1, stop_at=100)
    fig = P.history_figure({"r": [full, short]})
    line = traces(fig, "line", axis="x")[0]
    assert len(line.x) == 20  # union of epochs
    # after the short (e.g. diverged) seed stops, the mean is the full seed alone
    assert line.y[-1] == pytest.approx(full[-1]["train_loss"], rel=1e-6)


def test_none_and_nonfinite_values_are_dropped():
    h = make_history(n=10, trace_every=3)
    h[4]["train_loss"] = float("inf")
    h[5]["train_loss"] = float("nan")
    fig = P.history_figure({"r": h})
    assert len(traces(fig, "line", axis="x")[0].x) == 8
    tr = traces(fig, "line", axis="x3")[0]
    np.testing.assert_allclose(tr.x, [0, 30, 60, 90])  # only logged traces


def test_all_none_metric_gives_no_trace_and_legend_moves_to_next_panel():
    h = [dict(r, train_loss=None) for r in make_history(n=5)]
    fig = P.history_figure({"r": h})
    assert not traces(fig, axis="x")
    assert traces(fig, "line", axis="x2")[0].showlegend is True


def test_single_run_standard_error_band():
    h = [dict(r, test_error_se=0.02) for r in make_history(n=10)]
    fig = P.history_figure({"r": h})
    band = traces(fig, "band", axis="x2")
    assert len(band) == 1
    y = np.asarray(band[0].y)
    te = np.array([r["test_error"] for r in h])
    np.testing.assert_allclose(y[:10], te + 0.04, rtol=1e-5)


def test_downsampling_limits_points_and_keeps_endpoints():
    h = make_history(n=5000, every=1)
    fig = P.history_figure({"r": h}, max_points=200)
    line = traces(fig, "line", axis="x")[0]
    assert len(line.x) <= 200
    assert line.x[0] == 0 and line.x[-1] == 4999


def test_history_figure_rejects_bad_input():
    with pytest.raises(ValueError):
        P.history_figure({})
    with pytest.raises(TypeError):
        P.history_figure({"r": "not a history"})
    with pytest.raises(ValueError, match="metric"):
        P.history_figure({"r": make_history()}, metrics=["accuracy"])


def test_figure_json_is_small():
    """Static pages: float32 + base64 keeps a 3-run x 3-seed figure well under 100 kB."""
    runs = {
        f"r{i}": [make_history(n=2000, every=1, seed=s) for s in range(3)]
        for i in range(3)
    }
    size = len(pio.to_json(P.history_figure(runs)))
    assert size < 100_000, size
    # a slider over 8 values of the same is still far below the 3 MB page budget
    sweep = {v: runs for v in range(8)}
    size = len(pio.to_json(P.slider_figure(sweep, "w", list(P.METRICS))))
    assert size < 1_000_000, size


# ----------------------------------------------------------------------------- slider_figure
def test_slider_steps_toggle_exactly_one_value():
    runs = {w: make_history(seed=i) for i, w in enumerate([50, 100, 500])}
    fig = P.slider_figure(runs, "width", "test_error")
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["50", "100", "500"]
    assert slider.currentvalue.prefix == "width = "
    assert len(fig.data) == 3  # one line per value, single metric
    for i, step in enumerate(slider.steps):
        vis = step.args[0]["visible"]
        assert len(vis) == len(fig.data)
        assert vis == [j == i for j in range(3)]
    # initially only the active value is visible
    assert [t.visible for t in fig.data] == [True, False, False]


def test_slider_with_seeds_labels_and_several_metrics():
    runs = {
        0.01: {
            "GD+WD": make_history(seed=0),
            "1-SAM": [make_history(seed=s) for s in (1, 2)],
        },
        0.1: {
            "GD+WD": make_history(seed=3),
            "1-SAM": [make_history(seed=s) for s in (4, 5)],
        },
    }
    fig = P.slider_figure(runs, "rho", ["test_error", "hessian_trace"], active=1)
    # per value: GD+WD 2 lines; 1-SAM 2 lines + 2 bands -> 6 traces
    assert len(fig.data) == 12
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 2 and fig.layout.sliders[0].active == 1
    assert sum(steps[0].args[0]["visible"]) == 6 == sum(steps[1].args[0]["visible"])
    assert sum(bool(t.visible) for t in fig.data) == 6
    # a label keeps its colour across slider values
    sam_colors = {
        t.line.color
        for t in fig.data
        if t.meta["label"] == "1-SAM" and t.meta["role"] == "line"
    }
    assert len(sam_colors) == 1
    # fixed y range on the log panel, covering every value's data
    lo, hi = fig.layout.yaxis2.range
    all_tr = [
        r["hessian_trace"]
        for v in runs.values()
        for h in v.values()
        for hh in (h if isinstance(h[0], list) else [h])
        for r in hh
    ]
    assert lo <= math.log10(min(all_tr)) and hi >= math.log10(max(all_tr))


def test_slider_rejects_bad_active_and_metric():
    with pytest.raises(ValueError):
        P.slider_figure({1: make_history()}, "w", "test_error", active=3)
    with pytest.raises(ValueError):
        P.slider_figure({1: make_history()}, "w", "loss")


# ----------------------------------------------------------------------------- caption
def test_caption_orders_formats_and_skips_none():
    cfg = {
        "seed": 0,
        "lr": [0.005, 0.003],
        "width": 500,
        "rho": 0.05,
        "epochs": 100000,
        "weight_decay": None,
        "custom_thing": True,
    }
    md = P.caption(cfg)
    assert (
        md.index("width")
        < md.index("lr")
        < md.index("ρ")
        < md.index("epochs")
        < md.index("seed")
    )
    assert "0.005 → 0.003" in md and "1e5" in md and "weight decay" not in md
    assert "**custom thing** True" in md
    html = P.caption(cfg, html=True)
    assert html.startswith("<p") and "<b>width m</b> 500" in html


# ----------------------------------------------------------------------------- weights
def test_column_norm_figure_values_and_highlight():
    W1 = np.zeros((6, 5))
    W1[:, 0], W1[:, 1], W1[:, 3] = 3.0, 4.0, 1.0
    fig = P.column_norm_figure(W1)
    bar = fig.data[0]
    np.testing.assert_allclose(bar.y, [3 * 6**0.5, 4 * 6**0.5, 0, 6**0.5, 0], rtol=1e-6)
    assert list(bar.x) == [1, 2, 3, 4, 5]
    assert bar.marker.color[0] == bar.marker.color[1] != bar.marker.color[2]
    with pytest.raises(ValueError):
        P.column_norm_figure(np.zeros(5))


def test_column_norm_figure_accepts_torch_tensor():
    torch = pytest.importorskip("torch")
    fig = P.column_norm_figure(torch.ones(4, 3, requires_grad=True))
    np.testing.assert_allclose(fig.data[0].y, [2, 2, 2])


def test_neuron_weights_figure_picks_largest_contributions():
    rng = np.random.default_rng(0)
    W1 = rng.normal(scale=0.01, size=(10, 6))
    W2 = np.full(10, 0.01)
    # neuron 7: big |W2|, neuron 2: big ||W1||, neuron 5: both moderately large
    W2[7], W1[2] = 5.0, W1[2] * 0 + 3.0
    W1[5], W2[5] = 1.0, 1.0
    fig = P.neuron_weights_figure(W1, W2.reshape(1, -1), k=3, b1=np.arange(10.0))
    hm = fig.data[0]
    assert isinstance(hm, go.Heatmap)
    assert [r.split()[1] for r in hm.y] == ["5", "7", "2"]  # scores 2.45, 0.12, 0.07
    assert list(hm.x) == ["1", "2", "3", "4", "5", "6", "bias"]
    np.testing.assert_allclose(np.asarray(hm.z)[0, :6], W1[5], rtol=1e-6)
    assert np.asarray(hm.z)[0, 6] == 5.0  # bias of neuron 5
    assert hm.zmid == 0
    with pytest.raises(ValueError, match="W2"):
        P.neuron_weights_figure(W1, np.ones(3))
    with pytest.raises(ValueError, match="k"):
        P.neuron_weights_figure(W1, W2, k=11)


# ----------------------------------------------------------------------------- renderer
def test_mimebundle_book_build_is_offline_html(monkeypatch):
    from sharpness_lib import renderer

    fig = P.history_figure({"r": make_history()})
    monkeypatch.setenv(renderer.BUILD_ENV_VAR, "1")
    bundle = P.figure_mimebundle(fig)
    assert list(bundle) == ["text/html"]  # myst-nb warns on any other type (fails -W)
    html = bundle["text/html"]
    assert "Plotly.newPlot(" in html  # marker the Sphinx extension looks for
    assert "cdn" not in html.lower() and "<script src" not in html
    assert len(html) < 100_000  # no plotly.js inlined
    monkeypatch.delenv(renderer.BUILD_ENV_VAR)
    live = P.figure_mimebundle(fig)
    assert list(live) == ["application/vnd.plotly.v1+json"]
    assert live["application/vnd.plotly.v1+json"]["data"]


def test_use_book_renderer_is_safe_outside_ipython():
    before = pio.renderers.default
    name = P.use_book_renderer()
    assert P.RENDERER_NAME in pio.renderers
    assert name == before == pio.renderers.default  # default untouched in plain Python
    P.use_book_renderer()  # idempotent


# ----------------------------------------------------------------------------- Figure 3
def _circle_memorizer(k=6, margin=0.1):
    """Hand-built memorizing net on k points of the unit circle (as in Theorem 4.1)."""
    ang = 2 * np.pi * np.arange(k) / k
    X = np.column_stack([np.cos(ang), np.sin(ang)])
    y = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
    W1 = X / margin
    b1 = (margin - 1.0) / margin * np.ones(k)
    return X, y, (W1, b1, y.copy())


def test_memorization_regions_figure_slider_and_zero_fraction():
    X, y, _ = _circle_memorizer()
    models = {e: _circle_memorizer(margin=e)[2] for e in (0.05, 0.5)}
    fig = P.memorization_regions_figure(X, y, models, active=1)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0.05", "0.5"]
    # step 0 shows the static traces (circle, points) and its own regions only
    vis0 = steps[0].args[0]["visible"]
    assert len(vis0) == len(fig.data)
    regions = [t for t in fig.data if t.fill == "toself"]
    assert len(regions) == 2 * 6  # one cap per neuron per margin
    # caps of half-angle arccos(1 - eps): 6 of them cover 6 * 2 * arccos(0.95) / (2 pi)
    frac_nonzero = 6 * 2 * math.acos(0.95) / (2 * math.pi)
    shown = float(steps[0].args[1]["title.text"].split(" on ")[1].split("%")[0])
    assert (
        abs(shown - 100 * (1 - frac_nonzero)) < 0.5
    )  # sampled on 1440 points of the circle
    # at eps = 0.5 the caps (half-angle 60 degrees, 60 degrees apart) overlap: f != 0 except
    # where two neighbours of opposite labels cancel exactly (the midpoints)
    assert float(fig.layout.title.text.split(" on ")[1].split("%")[0]) < 0.5
    assert (
        sum(bool(v) for v in vis0) == 3 + 6 + 1
    )  # circle + 2 label groups + 6 caps + arc
    # every cap lies inside the unit disk
    for t in regions:
        assert np.all(np.hypot(np.asarray(t.x), np.asarray(t.y)) <= 1 + 1e-6)


def test_memorization_regions_figure_accepts_model_objects_and_rejects_bad_input():
    X, y, (W1, b1, W2) = _circle_memorizer()

    class Net:  # any object with W1, b1, W2 attributes (e.g. a library TwoMLPBias)
        pass

    net = Net()
    net.W1, net.b1, net.W2 = W1, b1, W2
    fig = P.memorization_regions_figure(X, y, {0.1: net})
    assert len(fig.layout.sliders[0].steps) == 1
    with pytest.raises(ValueError, match="points"):
        P.memorization_regions_figure(X[:, :1], y, {0.1: net})
    with pytest.raises(ValueError, match="2-D inputs"):
        P.memorization_regions_figure(X, y, {0.1: (np.ones((6, 3)), b1, W2)})
    with pytest.raises(ValueError, match="active"):
        P.memorization_regions_figure(X, y, {0.1: net}, active=2)


def test_scatter_figure_groups_diagonal_and_log():
    fig = P.scatter_figure(
        {"a": ([1.0, 2.0], [3.0, 4.0]), "b": (np.array([5.0]), [6.0])},
        "bound",
        "trace",
        diagonal=True,
        log=True,
        hover={"a": ["p", "q"]},
    )
    assert [t.name for t in fig.data] == ["a", "b", "y = x"]
    assert list(fig.data[2].x) == [1.0, 5.0]  # spans the x values
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert list(fig.data[0].text) == ["p", "q"]
    with pytest.raises(ValueError, match="points"):
        P.scatter_figure({"a": ([1.0, 2.0], [3.0])}, "x", "y")
    with pytest.raises(ValueError, match="non-empty"):
        P.scatter_figure({}, "x", "y")


def test_markdown_table_and_caption_of_config():
    from sharpness_lib import get_preset
    from sharpness_lib.plotting import caption, markdown_table

    t = markdown_table(
        [{"run": "a|b", "err": 0.123456}, {"run": "c", "err": 1e-9}], digits=3
    )
    lines = t._repr_markdown_().splitlines()
    assert lines[0] == "| run | err |" and lines[1] == "|---|---|"
    assert lines[2] == "| a\\|b | 0.123 |" and lines[3] == "| c | 1e-09 |"
    cfg = get_preset("book-fig6b").config
    text = caption(cfg, seeds=(0, 1, 2), label="6b")
    assert (
        text.startswith("**6b**: ")
        and "**seeds** 0, 1, 2" in text
        and "**seed** " not in text
    )
    assert "500 ep @ lr 0.01, rho 0.5" in text and "**project norm** 10" in text
    assert "gamma" not in text and "depth" not in text  # options of other architectures


def _runs():
    return [
        dict(
            optimizer=o,
            algo=a,
            arch=ar,
            seed=s,
            test_error=0.1 * s + (a == "sam1"),
            hessian_trace=1.0 + s,
        )
        for o in ("sgd", "adam")
        for a in ("sam1", "sgd")
        for ar in ("bias", "nobias")
        for s in range(3)
    ]


def test_strip_figure_puts_every_run_in_its_panel_with_the_group_mean():
    rows = _runs()
    fig = P.strip_figure(
        rows,
        "optimizer",
        ["test_error", "hessian_trace"],
        color="algo",
        facet="arch",
        log=["hessian_trace"],
    )
    points = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.y) for t in points) == 2 * len(
        rows
    )  # every run in both metric panels
    # the mean bar of (sgd, sam1, bias) on test error: seeds 0,1,2 -> 1.1
    first_bar = [t for t in fig.data if t.mode == "lines"][0]
    assert first_bar.y[0] == pytest.approx(np.mean([0.1 * s + 1 for s in range(3)]))
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis.type != "log"
    with pytest.raises(ValueError):
        P.strip_figure([], "optimizer", ["test_error"])


def test_rescaling_figure_draws_curves_and_minima():
    fig = P.rescaling_figure([0.1, 1, 10], {"layer": [30, 10, 30]}, minima={"min": 9.0})
    assert len(fig.data) == 2 and list(fig.data[1].y) == [9.0, 9.0]
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="3 scales"):
        P.rescaling_figure([0.1, 1, 10], {"layer": [1, 2]})


# ----------------------------------------------------------------------------- tables
def _gfm_cells(line):
    """Split one GFM table row the way a GFM renderer does: at every unescaped '|'."""
    import re

    parts = re.split(r"(?<!\\)\|", line)
    assert parts[0] == "" and parts[-1] == "", line  # a row starts and ends with a pipe
    return [p.strip() for p in parts[1:-1]]


@pytest.mark.parametrize(
    "text",
    ["max |f(x_i) - y_i|", "||∇f||²", "median |f|", "a\\|b", "two\nlines", "plain"],
)
def test_escape_cell_keeps_one_cell(text):
    from sharpness_lib.tables import escape_cell

    cell = escape_cell(text)
    assert "\n" not in cell and "\r" not in cell
    assert _gfm_cells(f"| {cell} |") == [cell]
    assert cell.replace("\\|", "|") == text.replace("\\|", "|").replace("\n", " ")


def test_markdown_table_escapes_headers_and_cells_alike():
    from sharpness_lib.tables import markdown_table

    rows = [
        {"max |f(x_i) - y_i|": "||∇f||²", "median |f|": 0.5, "n": 3},
        {"max |f(x_i) - y_i|": "a|b", "median |f|": float("nan"), "n": None},
    ]
    lines = str(markdown_table(rows)).splitlines()
    assert len(lines) == 4
    for line in lines[:1] + lines[2:]:
        assert len(_gfm_cells(line)) == 3, line
    assert _gfm_cells(lines[0]) == ["max \\|f(x_i) - y_i\\|", "median \\|f\\|", "n"]
    assert _gfm_cells(lines[2]) == ["\\|\\|∇f\\|\\|²", "0.5", "3"]
    assert _gfm_cells(lines[3]) == ["a\\|b", "nan", "None"]
    with pytest.raises(ValueError, match="at least one row"):
        markdown_table([])


def test_plotting_reexports_tables_captions_renderer():
    from sharpness_lib import captions, renderer, tables

    assert P.markdown_table is tables.markdown_table and "markdown_table" in P.__all__
    assert (
        P.caption is captions.caption
        and P.use_book_renderer is renderer.use_book_renderer
    )
    assert set(P.__all__) <= set(dir(P))
