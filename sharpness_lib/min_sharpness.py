"""Minimum sharpness: Tr nabla^2 L minimized over the function-preserving rescalings.

Ibayashi, Hamaguchi & Imaizumi (2021), "Minimum sharpness: scale-invariant
parameter-robustness of neural networks" (arXiv:2106.12612), define the sharpness of a
network as the infimum of Tr nabla^2 L over the rescalings of its parameters that leave
the network function unchanged (e.g. a ReLU neuron's input weights times a, its output
weight divided by a). The infimum no longer depends on which representative of the
function we are handed, which answers Dinh et al.'s (2017) objection to sharpness.

Why it is cheap here (checked numerically in ``tests/test_min_sharpness.py``):

* ReLU nets without normalization: f is linear in every single weight, so the diagonal of
  nabla^2 f vanishes a.e. and Tr nabla^2 L = (1/n) sum_i l''_i ||grad_theta f(x_i)||^2
  exactly. Under a rescaling theta_p -> s_p theta_p with f unchanged, df/dtheta_p
  becomes (df/dtheta_p) / s_p, so each weight's squared-gradient sum G_p is multiplied by
  1 / s_p^2, a monomial in the scales:

  - 2 layers, per neuron: Tr(a) = sum_j A_j / a_j^2 + B_j a_j^2 with
    A_j = (1/n) sum_i l''_i 1[z_ij > 0] W2_j^2 ||x'_i||^2 and
    B_j = (1/n) sum_i l''_i relu(z_ij)^2 -> min sum_j 2 sqrt(A_j B_j) at
    a_j = (A_j / B_j)^(1/4) (not attained if exactly one of A_j, B_j is 0);
  - one scale per layer, c_1 ... c_D with product 1: Tr = sum_l T_l / c_l^2 ->
    D (prod_l T_l)^(1/D) by AM-GM (D = 2: 2 sqrt(A B));
  - depth D, per neuron: with log-scales u, Tr(u) = sum_edges G_e exp(2 (u_tail - u_head))
    is convex (a matrix-balancing problem); minimized by Newton's method. Its infimum is
    attained iff every weight with G_e > 0 lies on a cycle of the graph in which the
    inputs and the output are one node (edges between strongly connected components can be
    sent to 0 by shifting the components apart, the others cannot).

* 2-MLP-Sim-BN: f is invariant to (W1_j, b1_j) -> a_j (W1_j, b1_j) alone, so that block's
  whole contribution C_j = (1/n) sum_i [l''_i ||d f_i/d w_j||^2 + l'_i Tr d^2 f_i/d w_j^2]
  scales as 1/a_j^2 (f is 0-homogeneous in w_j, its Hessian -2-homogeneous). At an
  interpolating point l' = 0 and C_j >= 0, so the infimum drops it (not attained). Away from
  interpolation C_j can be negative, and then the infimum is -inf (a_j -> 0). The pair
  (gamma_j, W2_j) -> (b gamma_j, W2_j / b) adds Z_j (gamma_j^2 b^2 + W2_j^2 / b^2) with
  Z_j = (1/n) sum_i l''_i z_ij^2 -> 2 Z_j |gamma_j W2_j|.
* 2-MLP-Sim-LN: only the joint scale of (W1, b1) is a symmetry (||h|| mixes neurons), and
  only while every nonzero ||h_i|| stays >= eps. The (W1, b1) block scales as 1/a^2 and is
  dropped; what remains is the W2 block (1/n) sum_i l''_i ||h_i / max(||h_i||, eps)||^2,
  i.e. (1/n) sum_i l''_i over the points with h_i != 0: 2 for the squared loss, whatever
  the weights. Every interpolating Sim-LN network has the same minimum sharpness. Away from
  interpolation the (W1, b1) block can be negative; the minimum then sits at the smallest
  admissible scale (min_i ||h_i|| = eps) and is of order -1/eps^2.
* 2-MLP-BN / 2-MLP-LN (standard normalization, if present): (gamma_j, beta_j) <-> W2_j is an
  exact per-neuron symmetry (closed form as above); the (W1, b1) scaling is one only up to
  eps, and becomes exact as the scale grows, where that block's trace tends to 0; its
  trace at the given point is kept instead when it is negative.
* Softplus networks are not positively homogeneous: no rescaling preserves them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._balance import NEWTON_MAX_ITER, NEWTON_TOL, _balance
from ._validation import LOSSES, check_choice, check_float
from .losses import loss_derivatives
from .models import MLPBias
from .rescaling import (
    GROUPS,
    RELU_ARCHS,
    SUPPORTED_ARCHS,
    _arch,
    _relu_layers,
    _shape,
    rescale,
)
from .sharpness import _with_one, hessian_trace

__all__ = [
    "GROUPS",
    "NEWTON_MAX_ITER",
    "NEWTON_TOL",
    "SUPPORTED_ARCHS",
    "MinSharpness",
    "minimum_sharpness",
    "path_norm",
    "rescale",
]

ZERO_TOL = 1e-12  # a block trace below ZERO_TOL * (sum of |terms|) counts as 0


@dataclass(frozen=True, eq=False)
class MinSharpness:
    """Result of :func:`minimum_sharpness`.

    ``value``: inf of Tr nabla^2 L over the group (may be -inf for Sim-BN off interpolation);
    ``trace``: Tr nabla^2 L at the given parameters; ``scales``: the minimizing rescaling in
    the layout of :func:`rescale` for ``group`` (when not attained: the minimizer of the
    part that is attained); ``direction``: log-scale direction such that
    ``rescale(model, scales * exp(t * direction), group)`` has trace -> value as t -> inf
    (zeros when attained); ``method``: "closed form" or "numerical".
    """

    value: float
    trace: float
    scales: torch.Tensor
    attained: bool
    method: str
    note: str
    group: str
    direction: torch.Tensor


# ---------------------------------------------------------------- helpers
def _check_data(model, x, y, loss, label_smoothing):
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != model.d:
        raise ValueError(
            f"x must be a tensor of shape (n, {model.d}); got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}."
        )
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0],):
        raise ValueError(
            f"y must be a tensor of shape ({x.shape[0]},); got "
            f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}."
        )
    check_choice("loss", loss, LOSSES)
    check_float("label_smoothing", label_smoothing, 0.0, 1.0)
    dt = model.W1.dtype
    return x.to(dt), y.to(dt)


def _pair(A: torch.Tensor, B: torch.Tensor):
    """inf over a > 0 of A / a^2 + B a^2, elementwise (A, B >= 0).

    Returns (value, argmin a, log-direction, attained): 2 sqrt(AB) at a = (A/B)^(1/4) when
    both are positive; if only A > 0 the infimum 0 needs a -> inf (direction +1), if only
    B > 0 it needs a -> 0 (direction -1).
    """
    both = (A > 0) & (B > 0)
    value = 2 * torch.sqrt(A * B)
    a = torch.where(
        both, (torch.where(both, A, 1.0) / torch.where(both, B, 1.0)) ** 0.25, 1.0
    )
    direction = (A > 0).to(A.dtype) * (B == 0) - (B > 0).to(A.dtype) * (A == 0)
    return value, a, direction, bool((direction == 0).all())


def _relu_grad_squares(model, x, d2):
    """G_l[i, j] = (1/n) sum_s l''_s (d f(x_s) / d W_l[i, j])^2 for every layer l.

    Layer 1 includes b1 as a last column; the output layer is a (1, m) row. sum_l G_l.sum()
    equals Tr nabla^2 L (ReLU: Tr nabla^2 f = 0 a.e.). Gradients are rank one per sample:
    dW_l = delta_l a_{l-1}^T.
    """
    acts = model.activations(x) if isinstance(model, MLPBias) else [model.hidden(x)]
    inputs = [_with_one(x) if model.b1 is not None else x] + acts[:-1]
    layers = _relu_layers(model)
    w = (d2 / x.shape[0])[:, None]
    G = [None] * len(layers)
    G[-1] = (w * acts[-1].square()).sum(0)[None, :]
    delta = model.W2 * (acts[-1] > 0)
    for k in range(len(layers) - 2, -1, -1):
        G[k] = (w * delta.square()).T @ inputs[k].square()
        if k > 0:
            delta = (delta @ layers[k][0]) * (inputs[k] > 0)
    return G


def _layer_closed_form(T: torch.Tensor):
    """inf of sum_l T_l / c_l^2 over prod c_l = 1: D (prod T_l)^(1/D) (AM-GM).

    Attained when all T_l > 0 (at c_l^2 = T_l / (prod T)^(1/D)) or all are 0; otherwise the
    infimum is 0, approached by growing the layers with T_l > 0 and shrinking the others.
    """
    D = T.numel()
    pos = T > 0
    if bool(pos.all()):
        t = torch.exp(T.log().mean())
        return float(D * t), torch.sqrt(T / t), torch.zeros_like(T), True
    direction = torch.where(pos, 1.0, -float(pos.sum()) / float((~pos).sum())).to(
        T.dtype
    )
    if not bool(pos.any()):
        direction = torch.zeros_like(T)
    return 0.0, torch.ones_like(T), direction, not bool(pos.any())


# ---------------------------------------------------------------- normalized nets
def _simbn_parts(model, x, d1, d2):
    """Per-neuron (C_j, Z_j) for 2-MLP-Sim-BN, the terms of sharpness._simbn_terms kept apart.

    Tr = sum_j [C_j + Z_j (gamma_j^2 + W2_j^2)]: C_j is the (W1_j, b1_j) block (both the
    l'' and the l' term), Z_j = (1/n) sum_i l''_i z_ij^2.
    """
    ref = model.x_ref if model.x_ref is not None else x
    W = torch.cat([model.W1, model.b1[:, None]], 1)
    xr, xe = _with_one(ref), _with_one(x)
    hr = torch.relu(xr @ W.T)
    n_ref = xr.shape[0]
    q = hr.square().sum(0)
    alive = (q > 0).to(x.dtype)
    qs = torch.where(q > 0, q, torch.ones_like(q))
    Mw = xr.T @ hr
    Mw2 = Mw.square().sum(0)
    trM = ((hr > 0).to(x.dtype) * xr.square().sum(1, keepdim=True)).sum(0)
    ze = xe @ W.T
    act = (ze > 0).to(x.dtype)
    h = torch.relu(ze)
    xMw = xe @ Mw
    sq = xe.square().sum(1, keepdim=True)
    z = math.sqrt(n_ref) * h / qs.sqrt()
    c = model.gamma * model.W2
    dz2 = n_ref * (act * sq / qs - 2 * h * xMw / qs**2 + h.square() * Mw2 / qs**3)
    lapz = math.sqrt(n_ref) * (
        -2 * act * xMw / qs**1.5 - h * trM / qs**1.5 + 3 * h * Mw2 / qs**2.5
    )
    C2 = (d2[:, None] * c.square() * dz2 * alive).mean(0)
    C1 = (d1[:, None] * c * lapz * alive).mean(0)
    Z = (d2[:, None] * z.square() * alive).mean(0)
    # rounding level of C: a neuron active on one reference point has grad z = 0 exactly,
    # and its C comes out as +-1e-17, whose sign must not decide between 0 and -inf
    tol = ZERO_TOL * float(
        (C2.abs() + C1.abs() + Z * (model.gamma**2 + model.W2**2)).sum()
    )
    C = C2 + C1
    return torch.where(C.abs() <= tol, torch.zeros_like(C), C), Z


def _normalized_hidden(model, x):
    """h_hat of 2-MLP-BN / 2-MLP-LN at x (before gamma, beta)."""
    h = torch.relu(model.preactivation(x))
    if model.arch == "bn":
        mu, var = model.statistics(x)
    else:
        mu = h.mean(1, keepdim=True)
        var = (h - mu).square().mean(1, keepdim=True)
    return (h - mu) / torch.sqrt(var + model.eps)


# ---------------------------------------------------------------- public
def minimum_sharpness(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    group: str = "neuron",
    loss: str = "mse",
    label_smoothing: float = 0.0,
) -> MinSharpness:
    """inf of Tr nabla^2 L over the rescalings of ``group`` (Ibayashi et al. 2021).

    ``group="neuron"``: the finest symmetry (per hidden neuron; for Sim-LN, which has
    none, the joint (W1, b1) scale, reported as group "layer"); ``group="layer"``: one
    scale per layer (layouts in :func:`rescale`). Exact closed forms except for MLP-Bias of
    depth >= 3 per neuron (Newton on a convex problem). See the module docstring.
    """
    arch = _arch(model)
    check_choice("group", group, GROUPS)
    x, y = _check_data(model, x, y, loss, label_smoothing)
    if arch == "sln":
        group = "layer"
    _shape(model, arch, group)
    with torch.no_grad():
        f = model(x)
        d1, d2 = loss_derivatives(f, y, loss, label_smoothing)
        trace = hessian_trace(model, x, y, loss, label_smoothing)
        if arch in RELU_ARCHS:
            return _min_relu(model, x, d2, group, trace)
        if arch == "sbn":
            return _min_sbn(model, x, d1, d2, group, trace)
        if arch == "sln":
            return _min_sln(model, x, d2, trace)
        return _min_bn_ln(model, x, d2, group, trace)


def _result(value, trace, scales, attained, method, note, group, direction):
    return MinSharpness(
        float(value),
        float(trace),
        scales.to(torch.float64),
        bool(attained),
        method,
        note,
        group,
        torch.as_tensor(direction, dtype=torch.float64),
    )


def _min_relu(model, x, d2, group, trace):
    G = _relu_grad_squares(model, x, d2)
    D = len(G)
    if group == "layer":
        T = torch.stack([g.sum() for g in G])
        value, c, direction, attained = _layer_closed_form(T)
        return _result(
            value,
            trace,
            c,
            attained,
            "closed form",
            f"inf of sum_l T_l / c_l^2 over prod c_l = 1: D (prod T_l)^(1/D), "
            f"T = {[round(float(t), 6) for t in T]}",
            group,
            direction,
        )
    if D == 2:
        A, B = G[0].sum(1), G[1][0]
        vals, a, direction, attained = _pair(A, B)
        note = "per neuron 2 sqrt(A_j B_j) at a_j = (A_j/B_j)^(1/4)"
        if not attained:
            note += (
                f"; {int((direction != 0).sum())} neuron(s) with exactly one of A_j, B_j"
                " zero: infimum approached, not attained"
            )
        return _result(
            vals.sum(), trace, a, attained, "closed form", note, group, direction
        )
    value, u, direction, attained, it = _balance([g.numpy() for g in G])
    note = (
        f"Newton on the convex log-scale problem, {it} iterations, relative gradient "
        f"<= {NEWTON_TOL:g}"
    )
    if not attained:
        note += (
            "; some weights lie on no cycle of the network graph: infimum not attained"
        )
    return _result(
        value,
        trace,
        torch.from_numpy(np.exp(u)),
        attained,
        "numerical",
        note,
        group,
        torch.from_numpy(direction),
    )


def _min_sbn(model, x, d1, d2, group, trace):
    C, Z = _simbn_parts(model, x, d1, d2)
    g, w2 = model.gamma, model.W2
    if group == "neuron":
        vals, b, bdir, b_att = _pair(Z * w2.square(), Z * g.square())
        wC = C
    else:
        vals, b, bdir, b_att = _pair(
            (Z * w2.square()).sum()[None], (Z * g.square()).sum()[None]
        )
        wC = C.sum()[None]
    # the (W1_j, b1_j) block scales as C_j / a_j^2: 0 as a_j -> inf if C_j > 0, -inf as
    # a_j -> 0 if C_j < 0 (only possible away from interpolation, where l' != 0)
    wdir = torch.sign(wC)
    value = -math.inf if bool((wC < 0).any()) else float(vals.sum())
    scales = torch.stack([torch.ones_like(b), b])
    direction = torch.stack([wdir, bdir])
    attained = b_att and not bool((wC != 0).any())
    note = (
        "(W1, b1) block dropped (Tr part C/a^2 -> 0 as a -> inf); (gamma, W2) pairs "
        "give 2 Z_j |gamma_j W2_j|"
    )
    if value == -math.inf:
        note = (
            "(W1, b1) block has negative Hessian trace C (possible off interpolation): "
            "C/a^2 -> -inf as a -> 0"
        )
    return _result(
        value,
        trace,
        scales if group == "neuron" else scales[:, 0],
        attained,
        "closed form",
        note,
        group,
        direction if group == "neuron" else direction[:, 0],
    )


def _min_sln(model, x, d2, trace):
    h = torch.relu(model.preactivation(x))
    r = h.norm(dim=1)
    N = torch.clamp_min(r, model.eps)
    w2part = float((d2 * (r / N).square()).mean())  # (1/n) sum l''_i ||d f_i / d W2||^2
    C = trace - w2part  # (W1, b1) block, scales as 1/a^2
    if abs(C) <= ZERO_TOL * (abs(trace) + w2part):
        C = 0.0  # rounding, not a negative block
    one = torch.ones(1, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    live = r > 0
    if bool(((r < model.eps) & live).any()):
        # f_i = W2 h_i / eps is then 1-homogeneous in (W1, b1): no rescaling preserves it
        return _result(
            trace,
            trace,
            one,
            True,
            "closed form",
            "some 0 < ||h_i|| < eps: no rescaling preserves f; value = trace",
            "layer",
            zero,
        )
    if C >= 0:
        note = (
            "(W1, b1) block dropped (C/a^2 -> 0 as a -> inf); W2 block (1/n) sum_i "
            "l''_i [h_i != 0]: 2 for the squared loss, whatever the weights"
        )
        return _result(
            w2part,
            trace,
            one,
            C == 0,
            "closed form",
            note,
            "layer",
            one if C > 0 else zero,
        )
    # C < 0: the smallest admissible scale keeps every nonzero ||a h_i|| >= eps
    a_min = model.eps / float(r[live].min()) if bool(live.any()) else 1.0
    return _result(
        w2part + C / a_min**2,
        trace,
        a_min * one,
        True,
        "closed form",
        "(W1, b1) block has negative trace C: minimum at the smallest scale "
        "keeping every ||h_i|| >= eps",
        "layer",
        zero,
    )


def _min_bn_ln(model, x, d2, group, trace):
    hh = _normalized_hidden(model, x)
    g, be, w2 = model.gamma, model.beta, model.W2
    # (gamma_j, beta_j) * b, W2_j / b: gradients d f / d gamma_j = W2_j h_hat,
    # d f / d beta_j = W2_j scale by 1/b, d f / d W2_j = gamma_j h_hat + beta_j by b
    P = (d2[:, None] * w2.square() * (hh.square() + 1)).mean(0)
    Q = (d2[:, None] * (g * hh + be).square()).mean(0)
    if group == "neuron":
        vals, b, bdir, _ = _pair(P, Q)
    else:
        vals, b, bdir, _ = _pair(P.sum()[None], Q.sum()[None])
    C = trace - float((P + Q).sum())  # the (W1, b1) block at the given point
    if abs(C) <= ZERO_TOL * (abs(trace) + float((P + Q).sum())):
        C = 0.0  # rounding, not a negative block
    # eps breaks the (W1, b1) symmetry; as the scale grows it becomes exact and the block's
    # trace -> 0. Keep C instead when it is negative (possible off interpolation).
    value = float(vals.sum()) + min(C, 0.0)
    wdir = torch.ones_like(b) if C > 0 else torch.zeros_like(b)
    scales = torch.stack([torch.ones_like(b), b])
    direction = torch.stack([wdir, bdir])
    note = (
        f"(gamma, beta) <-> W2: 2 sqrt(P_j Q_j); (W1, b1) block (trace {C:.6g}) "
        "dropped in the eps -> 0 limit of its scale symmetry"
        if C > 0
        else "(gamma, beta) <-> W2: 2 sqrt(P_j Q_j); (W1, b1) block kept (trace <= 0)"
    )
    return _result(
        value,
        trace,
        scales if group == "neuron" else scales[:, 0],
        C <= 0 and bool((bdir == 0).all()),
        "closed form",
        note,
        group,
        direction if group == "neuron" else direction[:, 0],
    )


def path_norm(model) -> float:
    """Path norm sum_j ||(W1_j, b1_j)|| |W2_j| of a 2-layer ReLU net (Lemma 3.1; no b1 for nobias).

    Like the per-neuron minimum sharpness MS it is invariant under per-neuron rescaling.
    With A_j, B_j as in the module docstring, kappa = (1/n) sum_i l''_i ||x'_i||^2 and
    w_j = (W1_j, b1_j), Cauchy-Schwarz on B_j and on sqrt(A_j B_j) give, for every
    parameter and any data (tested),

        (2/n) sum_j |W2_j| sum_i l''_i ||x'_i|| relu(w_j . x'_i)  <=  MS  <=  2 kappa PN.

    The left side is the Scenario I chapter's lower bound 4 sqrt(d) sum_j |W2_j|
    mean_i relu(W1_j x_i) (squared loss, hypercube), which thus holds for MS too. On the
    *full* hypercube {-1,1}^d with the squared loss and no bias, mean_i relu(w.x_i)^2 =
    ||w||^2 / 2 by the symmetry x -> -x, so MS = 2 sqrt(d) sum_j sqrt(2 p_j) ||W1_j||
    |W2_j| with p_j the fraction of vertices where neuron j is active: MS <= 2 sqrt(d) PN,
    with equality when no vertex lies on a neuron's hyperplane (p_j = 1/2).
    """
    arch = getattr(model, "arch", None)
    if arch not in ("nobias", "bias"):
        raise ValueError(
            f"path_norm is defined for 2-layer ReLU nets (arch nobias or bias); "
            f"got {arch or type(model).__name__!r}."
        )
    with torch.no_grad():
        W = (
            model.W1
            if model.b1 is None
            else torch.cat([model.W1, model.b1[:, None]], 1)
        )
        return float((W.norm(dim=1) * model.W2.abs()).sum())
