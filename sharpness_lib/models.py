"""The paper's architectures (Section 2), as ordinary ``torch.nn.Module`` objects.

Every model maps a float tensor of shape (N, d) to outputs of shape (N,). Parameters
are named after the paper: ``W1`` (m, d), ``b1`` (m,), ``W2`` (m,) and, for
2-MLP-Sim-BN, ``gamma`` (m,); the standard-normalization variants 2-MLP-BN and 2-MLP-LN
(not in the paper, which uses the simplified ones "for tractability") add ``gamma`` and
``beta`` (m,). MLP-Bias of depth D adds hidden matrices ``Wh.k``
(m, m) and names its output layer ``W2`` too (its last layer), as the paper's formula
f = W_D relu(... W_2 relu(W_1 x + b_1)) has a bias only in the first layer.

Initialization: PyTorch's ``nn.Linear`` default (uniform on +-1/sqrt(fan_in) for
weights and first-layer bias), multiplied by ``init_scale``; drawn from a private
generator seeded with ``seed`` so that model creation is deterministic and does not
touch the global RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import (
    ARCH_NAMES,
    ARCHS,
    MAX_ABS_INIT,
    MAX_SEED,
    ArgumentError,
    check_choice,
    check_float,
    check_int,
    check_tensor,
)

SOFTPLUS_THRESHOLD = 20.0  # torch.nn.functional.softplus default: identity above it


def _uniform(gen: torch.Generator, shape, bound: float, dtype) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound


class TwoLayerNet(nn.Module):
    """Common base of the 2-layer networks: f(x) = W2 . phi(W1 x + b1)."""

    arch = "base"
    has_bias = True

    def __init__(
        self,
        d: int,
        width: int,
        seed: int = 0,
        init_scale: float = 1.0,
        first_layer_scale: float = 1.0,
        dtype=torch.float64,
    ):
        super().__init__()
        self.d, self.width = d, width
        gen = torch.Generator().manual_seed(seed)
        b_in, b_out = 1 / math.sqrt(d), 1 / math.sqrt(width)
        s1 = init_scale * first_layer_scale
        self.W1 = nn.Parameter(_uniform(gen, (width, d), b_in, dtype) * s1)
        if self.has_bias:
            self.b1 = nn.Parameter(_uniform(gen, (width,), b_in, dtype) * s1)
        else:
            self.register_parameter("b1", None)
        self.W2 = nn.Parameter(_uniform(gen, (width,), b_out, dtype) * init_scale)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.W1.T
        return z + self.b1 if self.b1 is not None else z

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.preactivation(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x) @ self.W2

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}"


class TwoMLPNoBias(TwoLayerNet):
    """2-MLP-No-Bias: f(x) = W2 relu(W1 x) (Section 2; Scenario I, Theorem 3.1)."""

    arch = "nobias"
    has_bias = False


class TwoMLPBias(TwoLayerNet):
    """2-MLP-Bias: f(x) = W2 relu(W1 x + b1) (Section 2; Scenario II, Theorem 4.1)."""

    arch = "bias"


class TwoMLPSoftplus(TwoLayerNet):
    """2-MLP-Bias with softplus activation log(1 + e^z) (Figure 5)."""

    arch = "softplus"

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.preactivation(x), beta=1.0, threshold=SOFTPLUS_THRESHOLD)


class TwoMLPSimBN(TwoLayerNet):
    """2-MLP-Sim-BN: per neuron gamma_j h_j / sqrt(mean_i h_{i,j}^2) (Section 2; Thm 3.2).

    The statistic is taken over the reference inputs ``x_ref`` (the training set) under
    the current parameters, so it is differentiated through. A batch-of-one statistic
    would make every h_j/|h_j| constant, hence the full training set. A neuron that is
    dead on all of ``x_ref`` contributes 0 and gets no gradient. Without ``x_ref`` the
    statistic is taken over the batch being evaluated (training-mode BatchNorm).
    """

    arch = "sbn"

    def __init__(
        self,
        d,
        width,
        seed=0,
        init_scale=1.0,
        first_layer_scale=1.0,
        x_ref: torch.Tensor | None = None,
        gamma_init: float = 1.0,
        dtype=torch.float64,
    ):
        super().__init__(d, width, seed, init_scale, first_layer_scale, dtype)
        self.gamma = nn.Parameter(torch.full((width,), float(gamma_init), dtype=dtype))
        self.register_buffer("x_ref", None if x_ref is None else x_ref.to(dtype))

    def set_reference(self, x_ref: torch.Tensor) -> None:
        """Use ``x_ref`` (the training inputs) for the normalization statistic."""
        self.x_ref = x_ref.to(self.W1.dtype)

    def statistic(self, x_fallback: torch.Tensor) -> torch.Tensor:
        """sqrt(mean_i h_{i,j}^2) over ``x_ref``; 0 for a neuron dead on all of it."""
        ref = self.x_ref if self.x_ref is not None else x_fallback
        s2 = torch.relu(self.preactivation(ref)).square().mean(0)
        return torch.sqrt(torch.where(s2 > 0, s2, torch.ones_like(s2))) * (s2 > 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.statistic(x)
        alive = s > 0
        z = torch.relu(self.preactivation(x)) / torch.where(
            alive, s, torch.ones_like(s)
        )
        return (z * alive) @ (self.gamma * self.W2)


class TwoMLPSimLN(TwoLayerNet):
    """2-MLP-Sim-LN: f(x) = W2 h / max(||h||, eps), h = relu(W1 x + b1) (Section 2; Thm 5.1).

    The output is bounded by ||W2||, and (W1, b1) can be scaled jointly without changing
    f, so their initial scale acts as a learning rate (Figure 6a scales it down 100x).
    """

    arch = "sln"

    def __init__(
        self,
        d,
        width,
        seed=0,
        init_scale=1.0,
        first_layer_scale=1.0,
        eps: float = 1e-5,
        dtype=torch.float64,
    ):
        super().__init__(d, width, seed, init_scale, first_layer_scale, dtype)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.preactivation(x))
        # sqrt(max(||h||^2, eps^2)) == max(||h||, eps), without sqrt's infinite slope at 0
        denom = torch.sqrt(torch.clamp_min(h.square().sum(1), self.eps**2))
        return (h @ self.W2) / denom


class TwoMLPBN(TwoLayerNet):
    """2-MLP-BN: standard BatchNorm after the ReLU, f(x) = W2 . (gamma * h_hat + beta).

    h = relu(W1 x + b1) and h_hat_j = (h_j - mu_j) / sqrt(var_j + eps), with mu_j and the
    biased variance var_j over the reference inputs ``x_ref`` (the training set) under the
    current parameters, differentiated through -- torch's training-mode BatchNorm
    (``F.batch_norm(h, None, None, gamma, beta, training=True, eps=eps)``) evaluated on the
    full training set, as for :class:`TwoMLPSimBN`. Without ``x_ref`` the statistics are
    taken over the batch being evaluated. A neuron dead on all of ``x_ref`` outputs beta_j.
    Not in the paper (it uses Sim-BN "for tractability"); here to test that choice.
    """

    arch = "bn"

    def __init__(
        self,
        d,
        width,
        seed=0,
        init_scale=1.0,
        first_layer_scale=1.0,
        x_ref: torch.Tensor | None = None,
        gamma_init: float = 1.0,
        eps: float = 1e-5,
        dtype=torch.float64,
    ):
        super().__init__(d, width, seed, init_scale, first_layer_scale, dtype)
        self.eps = float(eps)
        self.gamma = nn.Parameter(torch.full((width,), float(gamma_init), dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(width, dtype=dtype))
        self.register_buffer("x_ref", None if x_ref is None else x_ref.to(dtype))

    def set_reference(self, x_ref: torch.Tensor) -> None:
        """Use ``x_ref`` (the training inputs) for the normalization statistics."""
        self.x_ref = x_ref.to(self.W1.dtype)

    def statistics(self, x_fallback: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-neuron mean and biased variance of h over ``x_ref`` (else ``x_fallback``)."""
        ref = self.x_ref if self.x_ref is not None else x_fallback
        h = torch.relu(self.preactivation(ref))
        mu = h.mean(0)
        return mu, (h - mu).square().mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, var = self.statistics(x)
        h_hat = (torch.relu(self.preactivation(x)) - mu) / torch.sqrt(var + self.eps)
        return (self.gamma * h_hat + self.beta) @ self.W2

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}, eps={self.eps:g}"


class TwoMLPLN(TwoLayerNet):
    """2-MLP-LN: standard LayerNorm after the ReLU, f(x) = W2 . (gamma * h_hat + beta).

    Per sample, h = relu(W1 x + b1) and h_hat = (h - mean(h)) / sqrt(var(h) + eps) over the
    m hidden units (biased variance) -- ``F.layer_norm(h, (m,), gamma, beta, eps)``. Not in
    the paper (it uses Sim-LN "for tractability"); here to test that choice.
    """

    arch = "ln"

    def __init__(
        self,
        d,
        width,
        seed=0,
        init_scale=1.0,
        first_layer_scale=1.0,
        gamma_init: float = 1.0,
        eps: float = 1e-5,
        dtype=torch.float64,
    ):
        super().__init__(d, width, seed, init_scale, first_layer_scale, dtype)
        self.eps = float(eps)
        self.gamma = nn.Parameter(torch.full((width,), float(gamma_init), dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(width, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.preactivation(x))
        mu = h.mean(1, keepdim=True)
        var = (h - mu).square().mean(1, keepdim=True)
        h_hat = (h - mu) / torch.sqrt(var + self.eps)
        return (self.gamma * h_hat + self.beta) @ self.W2

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}, eps={self.eps:g}"


class MLPBias(TwoLayerNet):
    """MLP-Bias of depth D: f(x) = W_D relu(... W_2 relu(W_1 x + b_1)) (Thm 4.1, Figure 11).

    Only the first layer has a bias, as in the paper's formula. Hidden matrices are
    ``hidden[k]`` (m, m); the output weights are ``W2`` (the last layer).
    """

    arch = "deep_bias"

    def __init__(
        self,
        d,
        width,
        seed=0,
        init_scale=1.0,
        first_layer_scale=1.0,
        depth: int = 3,
        dtype=torch.float64,
    ):
        super().__init__(d, width, seed, init_scale, first_layer_scale, dtype)
        self.depth = depth
        gen = torch.Generator().manual_seed(seed + 7919)
        b = 1 / math.sqrt(width)
        self.hidden_layers = nn.ParameterList(
            [
                nn.Parameter(_uniform(gen, (width, width), b, dtype) * init_scale)
                for _ in range(depth - 2)
            ]
        )

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation of every hidden layer, first to last."""
        acts = [torch.relu(self.preactivation(x))]
        for W in self.hidden_layers:
            acts.append(torch.relu(acts[-1] @ W.T))
        return acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)[-1] @ self.W2

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}, depth={self.depth}"


MODEL_CLASSES: dict[str, type[TwoLayerNet]] = {
    "nobias": TwoMLPNoBias,
    "bias": TwoMLPBias,
    "softplus": TwoMLPSoftplus,
    "sbn": TwoMLPSimBN,
    "sln": TwoMLPSimLN,
    "deep_bias": MLPBias,
    "bn": TwoMLPBN,
    "ln": TwoMLPLN,
}

_OPTIONS = {
    "sbn": {"x_ref", "gamma_init"},
    "sln": {"eps"},
    "deep_bias": {"depth"},
    "bn": {"x_ref", "gamma_init", "eps"},
    "ln": {"gamma_init", "eps"},
}


def _check_model_memory(arch, d, width, depth, dtype) -> None:
    """Refuse a model whose parameters alone cannot fit (instead of an allocator traceback)."""
    from .limits import _param_count, available_memory, format_bytes

    need = _param_count(arch, d, width, depth if arch == "deep_bias" else 2) * (
        4 if dtype == torch.float32 else 8
    )
    avail = available_memory()
    if avail is not None and need > avail:
        raise ValueError(
            f"a {arch} model with d {d}, width {width}"
            + (f", depth {depth}" if arch == "deep_bias" else "")
            + f" needs {format_bytes(need)} for its parameters alone, but only "
            f"{format_bytes(avail)} is available; reduce the width."
        )


def make_model(
    arch: str, d: int, width: int, seed: int = 0, init_scale: float = 1.0, **options
) -> TwoLayerNet:
    """Build one of the paper's architectures.

    ``arch`` is one of ``"nobias"``, ``"bias"``, ``"sbn"``, ``"sln"``, ``"softplus"``,
    ``"deep_bias"``, ``"bn"``, ``"ln"``. Options: ``first_layer_scale`` (all archs; extra
    factor on W1, b1), ``dtype`` (default float64), ``x_ref`` (sbn, bn), ``gamma_init``
    (sbn, bn, ln; default 1), ``eps`` (sln, bn, ln; default 1e-5), ``depth`` (deep_bias,
    >= 2).
    """
    check_choice("arch", arch, ARCHS)
    d = check_int("d", d, 2)
    width = check_int("width", width, 1)
    seed = check_int("seed", seed, 0, MAX_SEED)
    init_scale = check_float("init_scale", init_scale, 0.0, MAX_ABS_INIT, low_open=True)
    allowed = _OPTIONS.get(arch, set()) | {"first_layer_scale", "dtype"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"option {sorted(unknown)[0]!r} is not valid for arch {arch!r}; "
            f"valid options: {', '.join(sorted(allowed))}."
        )
    dtype = options.get("dtype", torch.float64)
    if dtype not in (torch.float32, torch.float64):
        raise ArgumentError(
            f"dtype must be torch.float32 or torch.float64; got {dtype!r}."
        )
    if "first_layer_scale" in options:
        check_float(
            "first_layer_scale",
            options["first_layer_scale"],
            0.0,
            MAX_ABS_INIT,
            low_open=True,
        )
    if "eps" in options:
        options["eps"] = check_float("eps", options["eps"], 0.0, low_open=True)
    if "depth" in options:
        options["depth"] = check_int("depth", options["depth"], 2)
    if "gamma_init" in options:
        check_float("gamma_init", options["gamma_init"], -MAX_ABS_INIT, MAX_ABS_INIT)
    x_ref = options.get("x_ref")
    if x_ref is not None:
        check_tensor("x_ref", x_ref, 2)
        if x_ref.shape[1] != d or x_ref.shape[0] < 1:
            raise ValueError(
                f"x_ref must have shape (n, {d}) with n >= 1; got {tuple(x_ref.shape)}."
            )
    _check_model_memory(arch, d, width, options.get("depth", 2), dtype)
    return MODEL_CLASSES[arch](d, width, seed=seed, init_scale=init_scale, **options)


def numpy_params(model: nn.Module) -> dict[str, numpy.ndarray]:  # noqa: F821
    """Views (no copy) of the parameters as numpy arrays, keyed by the paper's names."""
    return {name: p.detach().numpy() for name, p in model.named_parameters()}


def arch_label(arch: str) -> str:
    """The paper's name of a library architecture key, e.g. 'bias' -> '2-MLP-Bias'.

    The one table of names is ``_validation.ARCH_NAMES`` (shared with the CLI and the
    error messages), so chapters, captions and panels spell architectures alike.
    """
    return ARCH_NAMES[check_choice("arch", arch, ARCHS)]


def top_neurons(model: nn.Module, k: int = 4) -> torch.Tensor:
    """Indices of the k largest hidden neurons, largest first (Figure 2b's ranking).

    A neuron's size is |a_j W2_j| ||W1_j|| with a_j = gamma_j for 2-MLP-Sim-BN (its
    effective output weight; the normalization removes the scale of W1_j) and a_j = 1 for
    the other two-layer models.
    """
    if not isinstance(getattr(model, "W1", None), torch.Tensor) or model.W2.ndim != 1:
        raise ValueError(
            f"top_neurons needs a two-layer model; got {type(model).__name__}."
        )
    k = check_int("k", k, 1, model.W1.shape[0])
    with torch.no_grad():
        out = (
            model.W2 * model.gamma if getattr(model, "arch", "") == "sbn" else model.W2
        )
        score = out.abs() * model.W1.norm(dim=1)
    return torch.argsort(score, descending=True)[:k]
