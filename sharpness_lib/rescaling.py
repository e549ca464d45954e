"""The function-preserving rescalings of each architecture: which groups exist, the layout
of their scales, and :func:`rescale`. They change Tr nabla^2 L but not the function (Dinh
et al. 2017); :mod:`sharpness_lib.min_sharpness` minimizes the trace over them (Ibayashi et
al. 2021) and re-exports ``rescale``."""

from __future__ import annotations

import copy
import math

import torch

from ._validation import ARCH_NAMES, check_choice
from .models import MLPBias, TwoLayerNet

GROUPS = ("neuron", "layer")
# exactly ReLU: min_sharpness's closed form (_relu_grad_squares) uses ReLU's derivative,
# so another positively homogeneous activation needs its own derivative there too
RELU_ARCHS = ("nobias", "bias", "deep_bias")
SUPPORTED_ARCHS = RELU_ARCHS + ("sbn", "sln", "bn", "ln")


# ---------------------------------------------------------------- architecture lookup
def _arch(model) -> str:
    arch = getattr(model, "arch", None)
    if not isinstance(model, TwoLayerNet) or arch is None:
        raise ValueError(
            f"model must be a sharpness_lib model (make_model); got "
            f"{type(model).__name__}."
        )
    if arch == "softplus":
        raise ValueError(
            "2-MLP-Bias with softplus has no function-preserving rescaling "
            "(softplus is not positively homogeneous); valid archs: "
            f"{', '.join(SUPPORTED_ARCHS)}."
        )
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(
            f"no rescaling symmetry is implemented for arch {arch!r}; "
            f"valid archs: {', '.join(SUPPORTED_ARCHS)}."
        )
    return arch


def _depth(model) -> int:
    return model.depth if isinstance(model, MLPBias) else 2


def _shape(model, arch: str, group: str) -> tuple[int, ...]:
    """Layout of alpha (see :func:`rescale`)."""
    m, D = model.width, _depth(model)
    if arch in RELU_ARCHS:
        if group == "layer":
            return (D,)
        return (m,) if D == 2 else (D - 1, m)
    if arch == "sln":
        if group == "neuron":
            raise ValueError(
                "2-MLP-Sim-LN has no per-neuron rescaling symmetry (the norm "
                "||h|| mixes the neurons); use group='layer' (one scale for "
                "(W1, b1))."
            )
        return (1,)
    return (2,) if group == "layer" else (2, m)  # sbn, bn, ln


def _canonical_alpha(model, arch: str, alpha, group: str) -> torch.Tensor:
    """Validated alpha as a float64 tensor in the layout of :func:`_shape`."""
    check_choice("group", group, GROUPS)
    shape = _shape(model, arch, group)
    try:
        a = torch.as_tensor(alpha, dtype=torch.float64).detach().clone()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"alpha must be a number or an array of numbers; got {alpha!r}."
        ) from None
    # shorthand: a scalar a for a 2-layer ReLU net's layer group means (a, 1/a)
    if a.ndim == 0 and group == "layer" and arch in RELU_ARCHS and shape == (2,):
        a = torch.stack([a, 1 / a]) if float(a) != 0 else torch.stack([a, a])
    elif a.ndim == 0 and shape == (1,):
        a = a.reshape(1)
    if tuple(a.shape) != shape:
        raise ValueError(
            f"alpha must have shape {shape} for group={group!r} on "
            f"{ARCH_NAMES.get(arch, arch)} (see rescale); got {tuple(a.shape)}."
        )
    bad = ~(torch.isfinite(a) & (a > 0))
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"every scale in alpha must be positive and finite; got "
            f"{float(a[idx]):g} at index {idx if len(idx) > 1 else idx[0]}."
        )
    if group == "layer" and arch in RELU_ARCHS:
        logprod = float(a.log().sum())
        if abs(logprod) > 1e-9 * max(1.0, float(a.log().abs().sum())):
            raise ValueError(
                f"the layer scales in alpha must multiply to 1 (otherwise f "
                f"changes); got product {math.exp(logprod):.12g}."
            )
    if arch == "ln" and group == "neuron" and bool((a[0] != a[0, 0]).any()):
        raise ValueError(
            "for 2-MLP-LN the first row of alpha (the (W1, b1) scale) must be "
            "one value for all neurons, as LayerNorm mixes them; got "
            f"values from {float(a[0].min()):g} to {float(a[0].max()):g}."
        )
    return a


# ---------------------------------------------------------------- rescale
def _relu_layers(model):
    """[(weight, bias or None)] first to last; the output weights W2 (m,) as the last."""
    hidden = list(model.hidden_layers) if isinstance(model, MLPBias) else []
    return [(model.W1, model.b1)] + [(W, None) for W in hidden] + [(model.W2, None)]


def rescale(model, alpha, group: str = "layer"):
    """A deep copy of ``model`` with a function-preserving rescaling applied (Ibayashi et al.).

    Layout of ``alpha`` (all entries positive and finite):

    ==============  ===========================================  ==============================
    arch            ``group="layer"``                            ``group="neuron"``
    ==============  ===========================================  ==============================
    nobias, bias    (2,) product 1, or a scalar a = (a, 1/a):    (m,): row j of (W1, b1) * a_j,
                    (W1, b1) * c_1, W2 * c_2                     W2_j / a_j
    deep_bias       (D,) product 1: layer l (with b1 for l = 1)  (D-1, m): neuron i of hidden
                    times c_l                                    layer k: incoming row (and
                                                                 bias) * a, outgoing column / a
    sbn, bn         (2,): (W1, b1) * a; (gamma[, beta]) * b,     (2, m): the same per neuron
                    W2 / b
    ln              (2,) as bn                                   (2, m), row 0 constant
    sln             scalar a: (W1, b1) * a                       ValueError (no such symmetry)
    ==============  ===========================================  ==============================

    f is unchanged exactly for ReLU nets and Sim-BN; for Sim-LN on inputs whose hidden
    vector has norm >= eps before and after; for BN/LN only up to the eps in the
    normalization (O(eps / variance)).
    """
    arch = _arch(model)
    a = _canonical_alpha(model, arch, alpha, group)
    new = copy.deepcopy(model)
    with torch.no_grad():
        a = a.to(new.W1.dtype)
        if arch in RELU_ARCHS:
            layers = _relu_layers(new)
            if group == "layer":
                for (W, b), c in zip(layers, a):
                    W.mul_(c)
                    if b is not None:
                        b.mul_(c)
            else:
                s = a.reshape(len(layers) - 1, -1)
                for k in range(len(layers) - 1):
                    (W, b), (W_next, _) = layers[k], layers[k + 1]
                    W.mul_(s[k][:, None])
                    if b is not None:
                        b.mul_(s[k])
                    W_next.div_(s[k] if W_next.ndim == 1 else s[k][None, :])
        elif arch == "sln":
            new.W1.mul_(a[0])
            new.b1.mul_(a[0])
        else:  # sbn, bn, ln: (W1, b1) and gamma/beta <-> W2
            s = a if group == "neuron" else a[:, None].expand(2, new.width)
            new.W1.mul_(s[0][:, None])
            new.b1.mul_(s[0])
            new.gamma.mul_(s[1])
            if getattr(new, "beta", None) is not None:
                new.beta.mul_(s[1])
            new.W2.div_(s[1])
    return new
