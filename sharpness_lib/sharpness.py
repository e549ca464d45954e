"""Sharpness as Tr nabla^2 L (Section 2), exact and cheap; Lemma 4.1; Hutchinson.

For a per-sample loss l(f, y) the trace of the Hessian of L = (1/n) sum_i l(f_i, y_i) is

    Tr nabla^2 L = (1/n) sum_i [ l''(f_i) ||grad_theta f_i||^2 + l'(f_i) Tr nabla^2_theta f_i ].

For the paper's architectures both per-sample quantities have closed forms
(:func:`jacobian_terms`), costing O(n m d) -- a dense Hessian at width 512 needs 18 GB.
ReLU networks without normalization have Tr nabla^2 f = 0 almost everywhere (f is
linear in every single weight); softplus, Sim-BN, Sim-LN and the standard BN/LN variants
do not. At an interpolating point l' = 0 and only the first term survives: that is
Lemma 4.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ._validation import LOSSES, ArgumentError, check_choice, check_float, check_tensor
from .losses import loss_derivatives, mean_loss
from .models import (
    SOFTPLUS_THRESHOLD,
    MLPBias,
    TwoLayerNet,
    TwoMLPBN,
    TwoMLPLN,
    TwoMLPSimBN,
    TwoMLPSimLN,
    TwoMLPSoftplus,
)


def _with_one(x: torch.Tensor) -> torch.Tensor:
    """x' = (x, 1): the bias as a weight on a constant feature (Section 4.1)."""
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def _augmented(model: TwoLayerNet, x: torch.Tensor) -> torch.Tensor:
    return _with_one(x) if model.b1 is not None else x


def check_inputs(model: nn.Module, x, y=None) -> None:
    """One-sentence ValueError for inputs the closed forms would silently mis-broadcast: x
    must be (n, d) with n >= 1, d the model's input dimension and the model's dtype; y, if
    given, exactly (n,) (a y of shape (1,), (n, 1) or () would broadcast to a wrong trace)."""
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            f"model must be a torch.nn.Module; got {type(model).__name__}."
        )
    check_tensor("x", x, 2)
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one point; got shape {tuple(x.shape)}.")
    d = getattr(model, "d", None)
    if d is not None and x.shape[1] != d:
        raise ValueError(
            f"x must have shape (n, {d}) for this model (d = {d}); got "
            f"{tuple(x.shape)}."
        )
    p = next(iter(model.parameters()), None)
    if p is not None and x.dtype != p.dtype:
        raise ValueError(
            f"x has dtype {x.dtype} but the model's parameters are {p.dtype}; "
            f"convert one of them (e.g. x.to({p.dtype}))."
        )
    if y is not None:
        check_tensor("y", y)
        if tuple(y.shape) != (x.shape[0],):
            raise ValueError(
                f"y must have shape ({x.shape[0]},), one label per row of x; got "
                f"{tuple(y.shape)}."
            )


@torch.no_grad()
def jacobian_terms(
    model: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(||grad_theta f(x_i)||^2, Tr nabla^2_theta f(x_i))`` in closed form.

    Works for every architecture of :mod:`sharpness_lib.models`; for 2-MLP-Sim-BN and
    2-MLP-BN the derivatives include the dependence of the statistics on the parameters.
    """
    if isinstance(model, TwoMLPSimBN):
        return _simbn_terms(model, x)
    if isinstance(model, TwoMLPBN):
        return _bn_terms(model, x)
    if isinstance(model, TwoMLPLN):
        return _ln_terms(model, x)
    if isinstance(model, TwoMLPSimLN):
        return _simln_terms(model, x)
    if isinstance(model, MLPBias):
        return _deep_terms(model, x)
    if isinstance(model, TwoLayerNet):
        return _elementwise_terms(model, x)
    raise TypeError(
        f"no closed-form trace for {type(model).__name__}; "
        "use hessian_trace_hutchinson or hessian_trace_autograd."
    )


def _elementwise_terms(model: TwoLayerNet, x):
    xa = _augmented(model, x)
    z = (
        xa @ torch.cat([model.W1, model.b1[:, None]], 1).T
        if model.b1 is not None
        else xa @ model.W1.T
    )
    sq = xa.square().sum(1)
    W2 = model.W2
    if isinstance(model, TwoMLPSoftplus):
        lin = z > SOFTPLUS_THRESHOLD  # torch's softplus is the identity there
        sig = torch.sigmoid(z)
        a = torch.where(lin, z, torch.nn.functional.softplus(z))
        a1 = torch.where(lin, torch.ones_like(z), sig)
        a2 = torch.where(lin, torch.zeros_like(z), sig * (1 - sig))
        lap = sq * (a2 @ W2)
    elif model.arch in ("nobias", "bias"):
        a = torch.relu(z)
        a1 = (z > 0).to(z.dtype)
        lap = torch.zeros_like(sq)
    else:
        # a new activation must bring its own derivatives: falling back to ReLU's would
        # give a plausible but wrong trace
        raise TypeError(
            f"no closed-form trace for {type(model).__name__} (arch {model.arch!r}); add "
            "its activation's derivatives to sharpness._elementwise_terms."
        )
    jac = a.square().sum(1) + sq * (a1.square() @ W2.square())
    return jac, lap


def _simln_terms(model: TwoMLPSimLN, x):
    """Sim-LN, f = W2 . h / N with N = max(||h||, eps).

    If ||h|| >= eps: grad_W2 f = h/N, grad_h f = (W2 - f h/N)/N on active units, and
    sum_{j active} d^2 f / dh_j^2 = f (1 - #active) / N^2. Otherwise f is linear in h.
    """
    xa = _with_one(x)
    z = model.preactivation(x)
    act = (z > 0).to(z.dtype)
    h = torch.relu(z)
    n2 = h.square().sum(1)
    big = n2 >= model.eps**2
    N = torch.sqrt(torch.where(big, n2, torch.full_like(n2, model.eps**2)))
    f = (h @ model.W2) / N
    sq = xa.square().sum(1)
    u = h / N[:, None]
    p = (
        torch.where(big[:, None], model.W2 - f[:, None] * u, model.W2.expand_as(h))
        / N[:, None]
    )
    jac = u.square().sum(1) + sq * (p.square() * act).sum(1)
    lap = torch.where(big, sq * f * (1 - act.sum(1)) / N.square(), torch.zeros_like(f))
    return jac, lap


def _simbn_terms(model: TwoMLPSimBN, x):
    """Sim-BN. Per neuron j with w = (W1_j, b1_j), q = w^T M w = sum_k relu(w.x'_k)^2 over
    the reference set, z_ij = sqrt(n_ref) relu(w.x'_i) / sqrt(q) and f_i = sum_j c_j z_ij
    with c_j = gamma_j W2_j. Mw = sum_k relu(w.x'_k) x'_k over active reference points.
    """
    ref = model.x_ref if model.x_ref is not None else x
    W = torch.cat([model.W1, model.b1[:, None]], 1)  # (m, d+1)
    xr, xe = _with_one(ref), _with_one(x)
    hr = torch.relu(xr @ W.T)  # (n_ref, m)
    n_ref = xr.shape[0]
    q = hr.square().sum(0)  # (m,)
    alive = q > 0
    qs = torch.where(alive, q, torch.ones_like(q))
    Mw = xr.T @ hr  # (d+1, m)
    Mw2 = Mw.square().sum(0)
    trM = ((hr > 0).to(x.dtype) * xr.square().sum(1, keepdim=True)).sum(0)
    ze = xe @ W.T
    act = (ze > 0).to(x.dtype)
    h = torch.relu(ze)  # (N, m)
    xMw = xe @ Mw  # (N, m): x'_i . Mw_j
    sq = xe.square().sum(1, keepdim=True)  # (N, 1)
    z = math.sqrt(n_ref) * h / qs.sqrt()
    c = model.gamma * model.W2
    dz2 = n_ref * (act * sq / qs - 2 * h * xMw / qs**2 + h.square() * Mw2 / qs**3)
    lapz = math.sqrt(n_ref) * (
        -2 * act * xMw / qs**1.5 - h * trM / qs**1.5 + 3 * h * Mw2 / qs**2.5
    )
    per = (model.gamma.square() + model.W2.square()) * z.square() + c.square() * dz2
    jac = (per * alive).sum(1)
    lap = ((c * lapz) * alive).sum(1)
    return jac, lap


def _bn_terms(model: TwoMLPBN, x):
    """2-MLP-BN, f_i = sum_j W2_j (gamma_j hh_ij + beta_j), hh_ij = g_ij t_j.

    Per neuron (index j dropped), w = (W1_j, b1_j), over the n reference points x'_k:
    h_k = relu(w.x'_k), a_k = [w.x'_k > 0], mu = mean_k h_k, V = mean_k (h_k - mu)^2,
    t = (V + eps)^(-1/2); for an evaluated point g_i = h_i - mu. With
    m1 = mean_k a_k x'_k = grad mu, D = mean_k h_k x'_k - mu m1 (grad V = 2 D),
    T = mean_k a_k ||x'_k||^2 (Tr grad^2 V = 2 (T - ||m1||^2)) and relu'' = 0 a.e.:

        grad_w hh_i = t (a_i x'_i - m1) - g_i t^3 D,
        Tr grad_w^2 hh_i = g_i (3 t^5 ||D||^2 - t^3 (T - ||m1||^2)) - 2 t^3 (a_i x'_i - m1).D.

    f is linear in each of W2_j, gamma_j, beta_j, and the neurons' parameter blocks do not
    interact, so Tr grad^2 f_i = sum_j W2_j gamma_j Tr grad_w^2 hh_ij and
    ||grad f_i||^2 = sum_j (gamma_j hh_ij + beta_j)^2 + W2_j^2 (hh_ij^2 + 1)
    + (W2_j gamma_j)^2 ||grad_w hh_ij||^2.
    """
    ref = model.x_ref if model.x_ref is not None else x
    W = torch.cat([model.W1, model.b1[:, None]], 1)  # (m, d+1)
    xr, xe = _with_one(ref), _with_one(x)
    n_ref = xr.shape[0]
    ur = xr @ W.T  # (n_ref, m)
    ar = (ur > 0).to(x.dtype)
    hr = torch.relu(ur)
    mu = hr.mean(0)
    V = (hr - mu).square().mean(0)
    t = (V + model.eps).rsqrt()
    m1 = ar.T @ xr / n_ref  # (m, d+1)
    D = hr.T @ xr / n_ref - mu[:, None] * m1
    T = (ar * xr.square().sum(1, keepdim=True)).mean(0)
    m1sq, Dsq, m1D = m1.square().sum(1), D.square().sum(1), (m1 * D).sum(1)
    ue = xe @ W.T  # (N, m)
    ae = (ue > 0).to(x.dtype)
    g = torch.relu(ue) - mu
    sq = xe.square().sum(1, keepdim=True)
    xD = ae * (xe @ D.T) - m1D  # (a_i x'_i - m1) . D
    vsq = ae * (sq - 2 * (xe @ m1.T)) + m1sq  # ||a_i x'_i - m1||^2
    hh = g * t
    grad_sq = t**2 * vsq - 2 * g * t**4 * xD + g.square() * t**6 * Dsq
    lap_hh = g * (3 * t**5 * Dsq - t**3 * (T - m1sq)) - 2 * t**3 * xD
    gamma, beta, W2 = model.gamma, model.beta, model.W2
    jac = (
        (gamma * hh + beta).square()
        + W2.square() * (hh.square() + 1)
        + (W2 * gamma).square() * grad_sq
    ).sum(1)
    lap = lap_hh @ (W2 * gamma)
    return jac, lap


def _ln_terms(model: TwoMLPLN, x):
    """2-MLP-LN, f = sum_j W2_j (gamma_j hh_j + beta_j) per sample, with h = relu(z),
    z = W1 x + b1, g = h - mean(h), s = sqrt(mean(g^2) + eps), hh = g / s.

    f depends on (W1, b1) only through z, and is linear in each of W2_j, gamma_j, beta_j,
    so ||grad f||^2 = sum_j [(gamma_j hh_j + beta_j)^2 + W2_j^2 (hh_j^2 + 1)]
    + (||x||^2 + 1) ||grad_z f||^2 and Tr grad^2 f = (||x||^2 + 1) sum_j d^2 f / dz_j^2.
    With c = W2 * gamma, c^ = c - mean(c), A = c . g, a = relu'(z) (relu'' = 0 a.e.):

        df/dz_j = a_j (c^_j / s - A g_j / (m s^3)),
        d^2f/dz_j^2 = a_j (-2 c^_j g_j / (m s^3) - A (1 - 1/m) / (m s^3) + 3 A g_j^2 / (m^2 s^5)).
    """
    z = model.preactivation(x)  # (N, m)
    m = z.shape[1]
    a = (z > 0).to(x.dtype)
    h = torch.relu(z)
    g = h - h.mean(1, keepdim=True)
    s = (g.square().mean(1, keepdim=True) + model.eps).sqrt()  # (N, 1)
    hh = g / s
    gamma, beta, W2 = model.gamma, model.beta, model.W2
    c = W2 * gamma
    ch = c - c.mean()
    A = (g * c).sum(1, keepdim=True)
    dz = a * (ch / s - A * g / (m * s**3))
    d2z = a * (
        -2 * ch * g / (m * s**3)
        - A * (1 - 1 / m) / (m * s**3)
        + 3 * A * g.square() / (m**2 * s**5)
    )
    sq = x.square().sum(1) + 1
    jac = ((gamma * hh + beta).square() + W2.square() * (hh.square() + 1)).sum(
        1
    ) + sq * dz.square().sum(1)
    lap = sq * d2z.sum(1)
    return jac, lap


def _deep_terms(model: MLPBias, x):
    """Depth-D ReLU MLP-Bias: per-layer gradients are rank-1 outer products delta a^T."""
    acts = model.activations(x)
    jac = acts[-1].square().sum(1)  # output layer W_D
    delta = model.W2.expand_as(acts[-1]) * (acts[-1] > 0)
    for k in range(len(model.hidden_layers) - 1, -1, -1):
        W = model.hidden_layers[k]
        jac = jac + delta.square().sum(1) * acts[k].square().sum(1)
        delta = (delta @ W) * (acts[k] > 0)
    jac = jac + delta.square().sum(1) * (x.square().sum(1) + 1)
    return jac, torch.zeros_like(jac)


def hessian_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "mse",
    label_smoothing: float = 0.0,
) -> float:
    """Exact Tr nabla^2 L for L = mean_i l(f(x_i), y_i) (default: (f - y)^2), closed form."""
    check_inputs(model, x, y)
    with torch.no_grad():
        f = model(x)
        d1, d2 = loss_derivatives(f, y, loss, label_smoothing)
        jac, lap = jacobian_terms(model, x)
        return float((d2 * jac + d1 * lap).mean())


def lemma41_trace(model: nn.Module, x: torch.Tensor) -> float:
    """Lemma 4.1's right-hand side (2/n) sum_i ||grad_theta f(x_i)||^2.

    Equals Tr nabla^2 L for the squared loss at any interpolating parameter.
    """
    check_inputs(model, x)
    jac, _ = jacobian_terms(model, x)
    return float(2 * jac.mean())


def sharpness_lower_bound(
    arch: str,
    x: torch.Tensor,
    y: torch.Tensor,
    depth: int = 2,
    loss: str = "mse",
    label_smoothing: float = 0.0,
) -> float:
    """Lower bound on Tr nabla^2 L over the minimizers of L (interpolating models).

    Squared loss (l'' = 2 and f(x_i) = y_i at a minimizer):

    * 2-MLP-Bias (Lemma 4.1 + Cauchy-Schwarz, eq. 3): (2/n) sum_i 2 ||x'_i|| |y_i|, x' = (x, 1).
    * MLP-Bias of depth D: (2/n) sum_i D ||x'_i||^(2/D) |y_i|^(2 - 2/D) (AM-GM over the D
      layers' rank-1 gradient terms; D = 2 gives the line above).
    * 2-MLP-No-Bias: as 2-MLP-Bias with x in place of x'.
    * 2-MLP-Sim-LN (eps <= 2 ||x'_i|| |y_i|): (2/n) sum_i [y_i != 0], since ||grad_W2 f||=1.

    Logistic loss with label smoothing p > 0 (Appendix B): the minimizer has
    f(x_i) = y_i log(q / (1 - q)) with q = 1 - p/2, where l'' = q (1 - q) and l' = 0, so the
    same bounds hold with 2 -> q (1 - q) and y_i -> y_i log(q / (1 - q)). Without smoothing the
    logistic loss has no minimizer (the bound would be an infimum of 0), hence p > 0 is required.
    """
    check_choice("loss", loss, LOSSES)
    check_tensor("x", x, 2)
    if x.shape[0] < 1 or tuple(getattr(y, "shape", ())) != (x.shape[0],):
        raise ValueError(
            f"x must be (n, d) with n >= 1 and y (n,); got {tuple(x.shape)} and "
            f"{tuple(getattr(y, 'shape', ()))}."
        )
    if loss == "logistic":
        p = check_float("label_smoothing", label_smoothing, 0.0, 1.0, low_open=True)
        q = 1 - p / 2
        curvature, y = q * (1 - q), y * math.log(q / (1 - q))
    else:
        curvature = 2.0
    if arch in ("bias", "deep_bias", "nobias"):
        D = depth if arch == "deep_bias" else 2
        xa = x if arch == "nobias" else _with_one(x)
        r = xa.norm(dim=1)
        return float((curvature * D * r ** (2 / D) * y.abs() ** (2 - 2 / D)).mean())
    if arch == "sln":
        return float(curvature * (y != 0).to(x.dtype).mean())
    raise ValueError(
        f"no closed-form sharpness lower bound for arch {arch!r}; "
        "valid: bias, deep_bias, nobias, sln."
    )


def hessian_trace_autograd(
    model: nn.Module, x, y, loss="mse", label_smoothing=0.0
) -> float:
    """Brute force: the full Hessian by ``torch.func.hessian`` (small models only)."""
    check_inputs(model, x, y)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    sizes = [p.numel() for p in params]
    flat = torch.cat([p.reshape(-1) for p in params])

    def loss_of(theta):
        chunks = torch.split(theta, sizes)
        pd = {n: c.reshape(p.shape) for n, c, p in zip(names, chunks, params)}
        return mean_loss(
            torch.func.functional_call(model, pd, (x,)), y, loss, label_smoothing
        )

    return float(torch.func.hessian(loss_of)(flat).diagonal().sum())


@dataclass(frozen=True)
class TraceEstimate:
    """A Hutchinson estimate with its standard error and a normal 95% interval."""

    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    num_samples: int


def hessian_trace_hutchinson(
    model: nn.Module,
    x,
    y,
    num_samples: int = 100,
    seed: int = 0,
    loss="mse",
    label_smoothing=0.0,
    loss_fn=None,
) -> TraceEstimate:
    """Hutchinson's estimator E_v[v^T H v], v Rademacher, for any torch model.

    ``loss_fn(model) -> scalar`` overrides the default mean loss on (x, y).
    """
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples < 2
    ):
        raise ValueError(
            f"num_samples must be a whole number >= 2; got {num_samples!r}."
        )
    if loss_fn is None:
        check_inputs(model, x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        L = loss_fn(model) if loss_fn else mean_loss(model(x), y, loss, label_smoothing)
        grads = torch.autograd.grad(L, params, create_graph=True)
        vals = []
        for _ in range(num_samples):
            vs = [
                (torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p.dtype)
                for p in params
            ]
            hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
            vals.append(sum(float((h * v).sum()) for h, v in zip(hv, vs)))
    t = torch.tensor(vals, dtype=torch.float64)
    mean, se = float(t.mean()), float(t.std(unbiased=True) / math.sqrt(num_samples))
    return TraceEstimate(mean, se, mean - 1.96 * se, mean + 1.96 * se, num_samples)


def lemma31_trace_bound(model: nn.Module, x: torch.Tensor) -> float:
    """The a^2 + b^2 >= 2ab lower bound on Tr nabla^2 L behind Lemma 3.1 (squared loss).

    For a 2-layer ReLU net, (4/n) sum_j |W2_j| sum_i ||x'_i|| relu(W1_j x_i + b1_j), with
    x' = (x, 1) for 2-MLP-Bias and x' = x for 2-MLP-No-Bias; on the hypercube without bias
    this is the Scenario I chapter's 4 sqrt(d) sum_j |W2_j| mean_i relu(W1_j x_i). It holds
    at every parameter (not only at interpolation), for the trace and for the minimum
    sharpness (see :func:`sharpness_lib.min_sharpness.path_norm`).
    """
    arch = getattr(model, "arch", None)
    if arch not in ("nobias", "bias"):
        raise ValueError(
            f"lemma31_trace_bound needs a 2-layer ReLU net (arch nobias or bias); "
            f"got {arch or type(model).__name__!r}."
        )
    check_inputs(model, x)  # shape, dtype, at least one point (an empty x gave nan)
    with torch.no_grad():
        pre = x @ model.W1.T + (0 if model.b1 is None else model.b1)
        xa = x if model.b1 is None else _with_one(x)
        weighted = (xa.norm(dim=1)[:, None] * torch.relu(pre)).mean(0)  # (m,)
        return float(4 * (model.W2.abs() * weighted).sum())
