"""The paper's explicit flattest interpolators, built as ordinary library models.

* :func:`memorizing_solution` -- Theorem 4.1 / Proposition 4.1 (2-MLP-Bias and MLP-Bias
  of depth D): one neuron per training point, active only there; minimal sharpness,
  test error max(1 - n/2^d, 0) on P_xor.
* :func:`generalizing_solution` -- Proposition 4.2 / eq. (5): four neurons
  relu(r(+-x1 +- x2) - r); minimal sharpness, zero test error.
* :func:`memorizing_solution_sln`, :func:`generalizing_solution_sln` -- their
  2-MLP-Sim-LN counterparts (Theorem 5.1, Propositions 5.1 and 5.2).

Note on eq. (5): the paper prints r = (d^2 + 1)^(1/4). Attaining the bound needs
condition (4), W2_k = relu(W1' x')_k / ||x'||, i.e. 1/r = r / sqrt(d + 1), so the right
radius is r = (d + 1)^(1/4) (:func:`eq5_radius`); with the printed value the model still
interpolates and generalizes but its trace is above the bound (see the tests).
"""

from __future__ import annotations

import math

import torch

from ._validation import check_float, check_int, check_tensor
from .models import MLPBias, TwoMLPBias, TwoMLPSimLN, make_model


def eq5_radius(d: int) -> float:
    """The radius r of eq. (5) that attains the lower bound: r^2 = ||x'|| = sqrt(d + 1)."""
    return (d + 1) ** 0.25


def eq5_radius_as_printed(d: int) -> float:
    """The radius printed in the paper, (d^2 + 1)^(1/4); kept to show it misses the bound."""
    return (d**2 + 1) ** 0.25


def _check_training_set(x: torch.Tensor, y: torch.Tensor, depth: int = 2) -> None:
    check_tensor("x", x, 2)
    check_tensor("y", y)
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"x must be (n, d) and y (n,); got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[0] < 1 or x.shape[1] < 2:
        raise ValueError(
            f"the constructions need at least one training point in d >= 2; got "
            f"x of shape {tuple(x.shape)}."
        )
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("x and y must be finite (no NaN or infinity).")
    from .limits import (
        check_construction,
    )  # n x n matrices: refuse up front what cannot fit

    check_construction(x.shape[1], x.shape[0], depth)
    if bool((y == 0).any()):
        raise ValueError("labels must be non-zero for the memorizing construction.")
    norms = x.norm(dim=1)
    if not torch.allclose(norms, norms[0].expand_as(norms)):
        raise ValueError(
            "the memorizing construction here needs inputs of equal norm "
            "(e.g. hypercube points), which are then extreme points."
        )
    if torch.unique(x, dim=0).shape[0] != x.shape[0]:
        raise ValueError("training inputs must be distinct (Definition 4.1).")


def _memorizing_first_layer(x: torch.Tensor, margin: float | None):
    """Rows (w_i / e, (e - w_i.x_i) / e) with w_i = x_i / ||x_i||: w_i.x' is e at x_i and
    negative at every other point of the hypercube (their w_i.x is <= (d-2)/sqrt(d)).
    """
    d = x.shape[1]
    w = x / x.norm(dim=1, keepdim=True)
    if margin is None:
        # half the smallest gap w_i.x_i - max_{j != i} w_i.x_j over the training set; on the
        # hypercube also at most half the gap 2/sqrt(d) to any other vertex, so that every
        # unseen point of the cube lands outside all neurons (Proposition 4.1)
        proj = w @ x.T
        own = proj.diagonal().clone()
        proj.fill_diagonal_(-math.inf)
        gap = (
            float((own - proj.max(dim=1).values).min()) if x.shape[0] > 1 else math.inf
        )
        if bool((x.abs() == 1).all()):
            gap = min(gap, 2 / math.sqrt(d))
        e = gap / 2
    else:
        e = check_float("margin", margin, 0, low_open=True)
    W1 = w / e
    b1 = (e - (w * x).sum(1)) / e
    return W1, b1


def memorizing_solution(
    x: torch.Tensor, y: torch.Tensor, depth: int = 2, margin: float | None = None
) -> TwoMLPBias | MLPBias:
    """Theorem 4.1: a width-n, depth-D MLP-Bias that memorizes (x, y) with minimal sharpness.

    Layer-k activations at x_i are alpha_k e_i (one-hot); the alphas make the D rank-1
    gradient terms equal, which is when the AM-GM bound of
    :func:`~sharpness_lib.sharpness.sharpness_lower_bound` is tight. For D = 2 this is the
    paper's W1 = [sqrt(r_i |y_i|) w_i / e], W2 = [sign(y_i) sqrt(|y_i| / r_i)], r_i = ||x'_i||.
    """
    D = check_int("depth", depth, 2)
    _check_training_set(x, y, D)
    n, d = x.shape
    r = torch.sqrt(x.square().sum(1) + 1)  # ||x'_i||
    t = (r * y.abs() ** (D - 1)) ** (2 / D)  # each layer's gradient term
    step = t.sqrt() / y.abs()  # alpha_{k-1} / alpha_k
    alpha_last = t.sqrt()
    alpha_1 = alpha_last * step ** (D - 2)
    W1, b1 = _memorizing_first_layer(x, margin)
    model = make_model(
        "bias" if D == 2 else "deep_bias",
        d,
        n,
        **({} if D == 2 else {"depth": D}),
        dtype=x.dtype,
    )
    with torch.no_grad():
        model.W1.copy_(alpha_1[:, None] * W1)
        model.b1.copy_(alpha_1 * b1)
        if D > 2:
            for W in model.hidden_layers:
                W.copy_(torch.diag(1 / step))
        model.W2.copy_(y / alpha_last)
    return model


def _four_feature_layer(d: int, width: int, r: float, dtype):
    """Neurons k = 2i + j of eq. (5): r((-1)^i x1 + (-1)^j x2) - r; others zero."""
    W1 = torch.zeros(width, d, dtype=dtype)
    b1 = torch.zeros(width, dtype=dtype)
    sign = torch.zeros(width, dtype=dtype)
    for i in (0, 1):
        for j in (0, 1):
            k = 2 * i + j
            W1[k, 0], W1[k, 1], b1[k] = r * (-1) ** i, r * (-1) ** j, -r
            sign[k] = (-1) ** (i + j)
    return W1, b1, sign


def generalizing_solution(
    d: int, width: int = 4, r: float | None = None, dtype=torch.float64
) -> TwoMLPBias:
    """Proposition 4.2 / eq. (5): four neurons relu(r(+-x1 +- x2) - r), W2 = +-1/r.

    On every hypercube point exactly one neuron is active, with value r, and
    f(x) = x1 x2: zero test error. With r = (d+1)^(1/4) it attains the lower bound.
    """
    d = check_int("d", d, 2)
    width = check_int("width", width, 4)
    r = eq5_radius(d) if r is None else check_float("r", r, 0, low_open=True)
    W1, b1, sign = _four_feature_layer(d, width, r, dtype)
    model = make_model("bias", d, width, dtype=dtype)
    with torch.no_grad():
        model.W1.copy_(W1)
        model.b1.copy_(b1)
        model.W2.copy_(sign / r)
    return model


def memorizing_solution_sln(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float = 1.0,
    margin: float | None = None,
    eps: float = 1e-5,
) -> TwoMLPSimLN:
    """Theorem 5.1 / Proposition 5.1: a width-n memorizing 2-MLP-Sim-LN with minimal sharpness.

    At x_i only neuron i is active, so h/||h|| = e_i and W2_i = y_i gives f(x_i) = y_i
    with a zero first-layer gradient: Tr nabla^2 L = (2/n) sum_i ||e_i||^2 = 2, the bound.
    Elsewhere on the hypercube h = 0 and f = 0.
    """
    _check_training_set(x, y)
    scale = check_float("scale", scale, 0, low_open=True)
    n, d = x.shape
    if scale < eps:
        raise ValueError(
            f"scale must be >= eps = {eps:g} so that ||h|| >= eps on the "
            f"training points; got {scale:g}."
        )
    W1, b1 = _memorizing_first_layer(x, margin)
    model = make_model("sln", d, n, eps=eps, dtype=x.dtype)
    with torch.no_grad():
        model.W1.copy_(scale * W1)
        model.b1.copy_(scale * b1)
        model.W2.copy_(y)
    return model


def generalizing_solution_sln(
    d: int, width: int = 4, r: float = 1.0, eps: float = 1e-5, dtype=torch.float64
) -> TwoMLPSimLN:
    """Proposition 5.2: the four xor features under Sim-LN, W2 = +-1; trace 2, zero error."""
    d = check_int("d", d, 2)
    width = check_int("width", width, 4)
    r = check_float("r", r, 0, low_open=True)
    W1, b1, sign = _four_feature_layer(d, width, r, dtype)
    model = make_model("sln", d, width, eps=eps, dtype=dtype)
    with torch.no_grad():
        model.W1.copy_(W1)
        model.b1.copy_(b1)
        model.W2.copy_(sign)
    return model


def extreme_points(x: torch.Tensor) -> torch.Tensor:
    """Boolean mask: which rows of ``x`` are not convex combinations of the other rows.

    Theorem 4.1's memorizer needs one neuron that fires on x_i alone, i.e. a hyperplane
    separating x_i from the other points: possible exactly when x_i is an extreme point of
    the training set's convex hull. On the hypercube (equal norms) every point is extreme;
    for other data (e.g. Figure 7's ball) this checks it with one linear program per point.
    """
    import numpy as np
    from scipy.optimize import linprog

    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, d) with n >= 2; got {tuple(x.shape)}.")
    pts = x.detach().to(torch.float64).numpy()
    mask = []
    for i in range(len(pts)):
        others = np.delete(pts, i, axis=0)
        # feasible <=> x_i = sum_k w_k x_k with w >= 0, sum w = 1 (inside the others' hull)
        lp = linprog(
            np.zeros(len(others)),
            A_eq=np.vstack([others.T, np.ones(len(others))]),
            b_eq=np.append(pts[i], 1.0),
            bounds=(0, None),
            method="highs",
        )
        mask.append(lp.status == 2)
    return torch.tensor(mask)


def interpolate_output_layer(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> torch.nn.Module:
    """Set ``W2`` (in place) to the min-norm least-squares solution of f(x_i) = y_i.

    Every two-layer model of the library is linear in its output layer, so this is one
    linear solve on the features d f(x_i) / d W2; with at least n linearly independent
    features the model then interpolates (Lemma 4.1 holds with equality). Returns ``model``.
    """
    if not isinstance(getattr(model, "W2", None), torch.Tensor) or model.W2.ndim != 1:
        raise ValueError(
            "interpolate_output_layer needs a two-layer model with an output "
            f"vector W2; got {type(model).__name__}."
        )
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"x must be (n, d) and y (n,); got {tuple(x.shape)} and {tuple(y.shape)}."
        )

    def f_of_w2(w2):
        return torch.func.functional_call(model, {"W2": w2}, (x,))

    features = torch.func.jacrev(f_of_w2)(model.W2.detach())  # (n, m)
    solution = torch.linalg.lstsq(
        features, y[:, None].to(features.dtype), driver="gelsd"
    )
    with torch.no_grad():
        model.W2.copy_(solution.solution[:, 0])
    return model
