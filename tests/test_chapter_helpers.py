"""Helpers the chapters used to define inline, now in the library (issue 11, item 5)."""

import math

import pytest
import torch

import sharpness_lib as sl
from sharpness_lib.constructions import interpolate_output_layer
from sharpness_lib.models import arch_label, top_neurons
from sharpness_lib.sharpness import lemma31_trace_bound


@pytest.mark.parametrize("arch", ["nobias", "bias", "sbn", "sln", "softplus"])
def test_interpolate_output_layer_fits_and_lemma41_holds(arch):
    data = sl.make_parity_xor(d=5, n=8, seed=0)
    opts = {"x_ref": data.x} if arch == "sbn" else {}
    net = sl.make_model(arch, d=5, width=12, seed=1, **opts)
    w1_before = net.W1.detach().clone()
    assert interpolate_output_layer(net, data.x, data.y) is net
    with torch.no_grad():
        assert float((net(data.x) - data.y).abs().max()) < 1e-9
    assert torch.equal(net.W1.detach(), w1_before)  # only W2 moves
    exact = sl.hessian_trace(net, data.x, data.y)
    assert abs(sl.lemma41_trace(net, data.x) - exact) <= 1e-9 * max(1.0, abs(exact))


def test_interpolate_output_layer_is_min_norm():
    data = sl.make_parity_xor(d=6, n=10, seed=2)
    net = interpolate_output_layer(sl.make_model("bias", 6, 40, seed=0), data.x, data.y)
    feats = torch.relu(data.x @ net.W1.T + net.b1).detach()
    # the min-norm solution lies in the row space of the feature matrix
    coef = torch.linalg.lstsq(feats.T, net.W2.detach()[:, None]).solution
    assert torch.allclose(feats.T @ coef, net.W2.detach()[:, None], atol=1e-10)


def test_interpolate_output_layer_refuses_bad_shapes():
    net = sl.make_model("bias", 5, 12)
    with pytest.raises(ValueError, match="y \\(n,\\)"):
        interpolate_output_layer(net, torch.ones(4, 5), torch.ones(3))


@pytest.mark.parametrize("arch", ["nobias", "bias"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lemma31_bound_below_trace_and_min_sharpness(arch, seed):
    data = sl.make_parity_xor(d=10, n=30, seed=seed)
    net = sl.make_model(arch, 10, 50, seed=seed, init_scale=0.5 + seed)
    bound = lemma31_trace_bound(net, data.x)
    ms = sl.minimum_sharpness(net, data.x, data.y).value
    assert (
        0
        < bound
        <= ms * (1 + 1e-9)
        <= sl.hessian_trace(net, data.x, data.y) * (1 + 1e-9)
    )


def test_lemma31_bound_matches_the_hypercube_formula():
    data = sl.make_parity_xor(d=30, n=100, seed=0)
    m = sl.make_model("nobias", 30, 64, seed=3)
    with torch.no_grad():
        direct = float(
            4 * math.sqrt(30) * (m.W2.abs() * torch.relu(data.x @ m.W1.T).mean(0)).sum()
        )
    assert abs(lemma31_trace_bound(m, data.x) - direct) < 1e-10 * direct


def test_lemma31_bound_is_attained_by_the_memorizing_construction():
    # condition (4) holds for every neuron, so a^2 + b^2 >= 2ab is tight (Theorem 4.1)
    data = sl.make_parity_xor(d=8, n=20, seed=0)
    memo = sl.memorizing_solution(data.x, data.y)
    assert (
        abs(lemma31_trace_bound(memo, data.x) - sl.hessian_trace(memo, data.x, data.y))
        < 1e-9
    )


def test_lemma31_bound_refuses_other_architectures():
    with pytest.raises(ValueError, match="nobias or bias"):
        lemma31_trace_bound(sl.make_model("sln", 5, 8), torch.ones(3, 5))


def test_top_neurons_ranks_by_effective_output_weight():
    net = sl.make_model("sbn", 4, 6, seed=0, x_ref=sl.make_parity_xor(4, 10).x)
    with torch.no_grad():
        net.W1.fill_(1.0)
        net.W2.copy_(torch.tensor([1.0, -5.0, 2.0, 0.1, 3.0, 0.5]))
        net.gamma.copy_(torch.tensor([1.0, 0.1, 1.0, 100.0, 1.0, 1.0]))
    # |gamma W2| = 1, 0.5, 2, 10, 3, 0.5
    assert top_neurons(net, k=3).tolist() == [3, 4, 2]
    plain = sl.make_model("bias", 4, 6, seed=0)
    with torch.no_grad():
        plain.W1.copy_(torch.diag_embed(torch.arange(1.0, 7.0))[:, :4] + 1)
        plain.W2.fill_(1.0)
    score = plain.W1.detach().norm(dim=1)
    assert (
        top_neurons(plain, k=6).tolist()
        == torch.argsort(score, descending=True).tolist()
    )
    with pytest.raises(ValueError, match="k must be"):
        top_neurons(plain, k=7)


def test_arch_label_is_the_one_table():
    assert arch_label("bias") == "2-MLP-Bias" and arch_label("sln") == "2-MLP-Sim-LN"
    with pytest.raises(ValueError, match="arch must be one of"):
        arch_label("resnet")


# ---- the chapters themselves (source only, no execution) ---------------------------------
BOOK = __import__("pathlib").Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))


def _cells(path):
    import json

    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_lines_fit_88_columns(path):
    # wider lines scroll sideways on the page (issue 11)
    long = [
        (i, line)
        for i, c in enumerate(_cells(path))
        if c["cell_type"] == "code"
        for line in "".join(c["source"]).splitlines()
        if len(line) > 88
    ]
    assert not long, f"{path.name}: code lines over 88 characters: {long[:3]}"


@pytest.mark.parametrize(
    "path", CHAPTERS + sorted(BOOK.glob("*.md")), ids=lambda p: p.name
)
def test_chapter_prose_has_no_when_written_results(path):
    # run results in the text come from the build (myst-nb glue), not from an earlier run
    text = path.read_text().lower()
    for phrase in (
        "when this chapter was written",
        "when written",
        "measured when this",
    ):
        assert phrase not in text, f"{path.name} still says {phrase!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solution_code_is_folded_in_jupyterlab(path):
    # the page folds a solution (sphinx-exercise's gated solution-start/-end); JupyterLab
    # does not know the directive, so the solution's code cells carry JupyterLab's own
    # "input collapsed" flag, and a reader on Binder sees the exercise before its answer
    inside, open_cells = False, []
    for i, cell in enumerate(_cells(path)):
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            # one markdown cell may close a solution and open the next: the last one counts
            start, end = source.rfind("solution-start"), source.rfind("solution-end")
            if start >= 0 or end >= 0:
                inside = start > end
        elif inside and not cell["metadata"].get("jupyter", {}).get("source_hidden"):
            open_cells.append(i)
    assert not open_cells, f"{path.name}: solution code cells not folded: {open_cells}"
