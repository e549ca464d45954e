"""Base optimizers for SAM: a registry, :func:`make_optimizer`, and AdaBound / AdaShift.

The registry :data:`BASE_OPTIMIZERS` maps a name to an :class:`OptimizerSpec` (class, default
hyperparameters, suggested learning rate). ``make_optimizer(name, params, lr)`` builds the base
optimizer, or ``SAM(params, cls, rho=sam_rho, ...)`` when ``sam_rho`` is given::

    opt = make_optimizer("adabound", model.parameters(), lr=1e-3, sam_rho=0.05)

========  =========================  ===========================================  ==========
name      class                      hyperparameters (besides lr, weight_decay)   default lr
========  =========================  ===========================================  ==========
sgd       torch.optim.SGD            momentum 0, dampening 0, nesterov False      0.1
momentum  torch.optim.SGD            momentum 0.9, dampening 0, nesterov False    0.1
adam      torch.optim.Adam           betas (0.9, 0.999), eps 1e-8, amsgrad False  1e-3
adagrad   torch.optim.Adagrad        lr_decay 0, initial_accumulator_value 0,     1e-2
                                     eps 1e-10
adabound  :class:`AdaBound` (here)   betas (0.9, 0.999), final_lr 0.1, gamma      1e-3
                                     1e-3, eps 1e-8, amsbound False
adashift  :class:`AdaShift` (here)   betas (0.9, 0.999), keep_num 10, eps 1e-10,  1e-3
                                     reduce "max"
========  =========================  ===========================================  ==========

The default lrs follow the student report on SAM's background optimizers (SGD and heavy ball
at 0.1, the adaptive methods at their published defaults: Adam's paper, torch's Adagrad,
AdaBound's and AdaShift's official code). ``momentum`` is Polyak's heavy ball with
coefficient 0.9 (the report used 0.8: pass ``momentum=0.8`` to :func:`make_optimizer`).

Exact semantics of the two optimizers implemented here
------------------------------------------------------
Both are per-parameter-tensor, float64-safe, use Python scalars for the step counter
``state["step"]`` (an ``int``, incremented once per ``step()`` call in which the parameter has
a gradient; a parameter whose ``.grad`` is None is skipped and its counter does not move), and
add weight decay as an L2 term to the gradient, ``g = p.grad + weight_decay * p`` (a new
tensor: ``p.grad`` is not modified), *before* anything else.

**AdaBound** (Luo, Xiong, Liu & Sun, ICLR 2019), as in the authors' code (Luolc/AdaBound)::

    t += 1
    m = beta1 m + (1 - beta1) g                     # exp_avg
    v = beta2 v + (1 - beta2) g*g                   # exp_avg_sq (amsbound: vmax = max(vmax, v))
    denom = sqrt(v) + eps                           # eps outside the sqrt, v not bias-corrected
    step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    final = final_lr * lr / base_lr                 # base_lr = the group's lr at construction
    lower = final * (1 - 1 / (gamma t + 1));  upper = final * (1 + 1 / (gamma t))
    p -= clamp(step_size / denom, lower, upper) * m

The clamp acts on the whole per-coordinate step size, bias corrections included (the paper's
Algorithm 2 states the clip without bias corrections and with an extra 1/sqrt(t) for its
convergence proof; its experiments and the official code use the rule above). ``base_lr``
is stored in the param group (``group["base_lr"]``, so it survives ``state_dict``) when the
group is added; changing ``group["lr"]`` later (a schedule, or a training phase) rescales the
bounds by ``lr / base_lr`` exactly as the official code does.

**AdaShift** (Zhou, Zhang, Lu, Wang, Zhang & Yu, ICLR 2019), Algorithm 3 of the paper with the
bias correction, eps and zero-v gating of the authors' TensorFlow code
(``optimizer_all.AdaShift``)::

    t += 1
    if the queue holds fewer than n = keep_num gradients: append g; no update (steps 1..n)
    else:
        g_old = pop oldest (this is g_{t-n});  append g
        v = beta2 v + (1 - beta2) phi(g_old * g_old)     # phi = max over the tensor (default)
        k = k + 1 where v > 0 or k > 0                   # per block; k = t - n in practice
        m = sum_{i=0}^{n-1} w_i q_i,  q_0 oldest .. q_{n-1} = g,
            w_i = beta1^(n-1-i) / sum_{j=0}^{n-1} beta1^j   # computed directly, not incrementally
        p -= (m / (sqrt(v / (1 - beta2^k)) + eps)) * lr     # where k > 0; blocks with
                                                            # k = 0 (v still 0) do not move

A "block" of the paper is one parameter tensor: ``reduce="max"`` (the paper's default phi)
gives each tensor one scalar v; ``"mean"`` averages instead; ``"none"`` keeps v per coordinate
(AdaShift without spatial sharing). The bias-correction count k of a block (state
``"bias_steps"``, a float tensor shaped like v) starts at the first step where its v > 0, as
in the authors' code; it equals ``t - n`` unless a block's first shifted gradients are exactly
zero (e.g. a dead ReLU unit under ``reduce="none"``). The weighted sum m is
accumulated left to right, oldest first; the L2 term enters before the gradient is queued.
The third-party PyTorch port linked by the report (mknbv/adashift) differs: it enqueues the
first gradient twice and bias-corrects with ``beta2^t``; we follow the authors' code.

Why not a package: ``pytorch-optimizer`` 4.1.0 (maintained, works with torch 2.13) has both,
but its AdaBound puts ``1e-15`` inside the sqrt (``sqrt(v + 1e-15) + eps``, which dominates eps
at v = 0), defaults to decoupled weight decay and adds L2 decay to ``p.grad`` in place; its
AdaShift silently ignores ``weight_decay`` and updates m incrementally (rounding drift). The
official ``adabound`` 0.0.5 (unmaintained since 2019) still runs but with deprecated torch call
signatures. tests/test_optimizers.py cross-checks against both when they are importable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from ._validation import check_choice, check_float, check_int
from .sam import SAM

__all__ = [
    "AdaBound",
    "AdaShift",
    "OptimizerSpec",
    "BASE_OPTIMIZERS",
    "get_spec",
    "make_optimizer",
    "validate_options",
]


def _check_betas(betas) -> tuple[float, float]:
    try:
        if isinstance(betas, (str, bytes)):
            raise TypeError
        b1, b2 = betas
        b1, b2 = check_float("betas[0]", b1), check_float("betas[1]", b2)
    except (TypeError, ValueError):
        raise ValueError(
            f"betas must be a pair of numbers in [0, 1); got {betas!r}."
        ) from None
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {b:g}.")
    return b1, b2


def _l2_grad(p: torch.Tensor, weight_decay: float) -> torch.Tensor:
    return p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)


class AdaBound(torch.optim.Optimizer):
    """AdaBound (Luo et al., ICLR 2019): Adam whose step size is clipped into bounds that
    converge to ``final_lr`` (SGD). The update rule is in this module's docstring.

    Defaults are the paper's and the official code's: ``lr=1e-3, betas=(0.9, 0.999),
    final_lr=0.1, gamma=1e-3, eps=1e-8, weight_decay=0`` (L2, added to the gradient),
    ``amsbound=False`` (True gives AMSBound: the running max of v in the denominator).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        final_lr: float = 0.1,
        gamma: float = 1e-3,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsbound: bool = False,
    ):
        lr = check_float("lr", lr, 0.0, low_open=True)
        betas = _check_betas(betas)
        final_lr = check_float("final_lr", final_lr, 0.0)
        gamma = check_float("gamma", gamma, 0.0, low_open=True)
        eps = check_float("eps", eps, 0.0)
        weight_decay = check_float("weight_decay", weight_decay, 0.0)
        defaults = dict(
            lr=lr,
            betas=betas,
            final_lr=final_lr,
            gamma=gamma,
            eps=eps,
            weight_decay=weight_decay,
            amsbound=bool(amsbound),
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("base_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, gamma = group["lr"], group["eps"], group["gamma"]
            final_lr = group["final_lr"] * lr / group["base_lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaBound does not support sparse gradients.")
                grad = _l2_grad(p, group["weight_decay"])
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                    state["exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                    if group["amsbound"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format
                        )
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if group["amsbound"]:
                    vmax = state["max_exp_avg_sq"]
                    torch.maximum(vmax, exp_avg_sq, out=vmax)
                    denom = vmax.sqrt().add_(eps)
                else:
                    denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                lower = final_lr * (1 - 1 / (gamma * t + 1))
                upper = final_lr * (1 + 1 / (gamma * t))
                update = torch.full_like(denom, step_size).div_(denom)
                update.clamp_(lower, upper).mul_(exp_avg)
                p.sub_(update)
        return loss


class AdaShift(torch.optim.Optimizer):
    """AdaShift (Zhou et al., ICLR 2019): v from the gradient ``keep_num`` steps back, reduced
    over each parameter tensor; m the beta1-weighted mean of the last ``keep_num`` gradients.
    The update rule is in this module's docstring; the first ``keep_num`` steps only fill the
    queue (the parameters do not move).

    Defaults are the authors' code's: ``lr=1e-3, betas=(0.9, 0.999), keep_num=10, eps=1e-10,
    reduce="max"``; ``weight_decay`` (L2, added to the gradient before it is queued) is 0.
    """

    REDUCTIONS = ("max", "mean", "none")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        keep_num: int = 10,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        reduce: str = "max",
    ):
        lr = check_float("lr", lr, 0.0, low_open=True)
        betas = _check_betas(betas)
        keep_num = check_int("keep_num", keep_num, 1)
        eps = check_float("eps", eps, 0.0)
        weight_decay = check_float("weight_decay", weight_decay, 0.0)
        check_choice("reduce", reduce, self.REDUCTIONS)
        defaults = dict(
            lr=lr,
            betas=betas,
            keep_num=keep_num,
            eps=eps,
            weight_decay=weight_decay,
            reduce=reduce,
        )
        super().__init__(params, defaults)

    @staticmethod
    def _phi(sq: torch.Tensor, reduce: str) -> torch.Tensor:
        if reduce == "max":
            return sq.max()
        if reduce == "mean":
            return sq.mean()
        return sq

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            n, reduce = group["keep_num"], group["reduce"]
            raw = [beta1 ** (n - 1 - i) for i in range(n)]
            total = sum(raw)
            weights = [w / total for w in raw]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaShift does not support sparse gradients.")
                grad = _l2_grad(p, group["weight_decay"]).clone()
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["grad_queue"] = []
                    state["exp_avg_sq"] = torch.zeros_like(
                        self._phi(p.detach(), reduce)
                    )
                    state["bias_steps"] = torch.zeros_like(state["exp_avg_sq"])
                state["step"] += 1
                queue = state["grad_queue"]
                if len(queue) < n:
                    queue.append(grad)
                    continue
                old = queue.pop(0)
                queue.append(grad)
                exp_avg_sq = state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).add_(
                    self._phi(old * old, reduce), alpha=1 - beta2
                )
                m = queue[0] * weights[0]
                for w, q in zip(weights[1:], queue[1:]):
                    m.add_(q, alpha=w)
                k = state["bias_steps"]
                k.add_(((exp_avg_sq > 0) | (k > 0)).to(k.dtype))
                bias_correction = 1 - torch.pow(beta2, k)
                active = k > 0
                denom = (exp_avg_sq / torch.where(active, bias_correction, 1.0)).sqrt_()
                update = m.div_(denom.add_(group["eps"])).mul_(group["lr"])
                update.masked_fill_(~active, 0.0)  # blocks whose v is still 0 stay put
                p.sub_(update)
        return loss


@dataclass(frozen=True)
class OptimizerSpec:
    """One registry entry: the class, its hyperparameters besides ``lr`` and ``weight_decay``
    (at the values we use by default), the suggested learning rate and where they come from."""

    name: str
    label: str
    cls: type
    hyper: Mapping[str, Any]
    default_lr: float
    reference: str
    adaptive: bool = field(default=False)

    def kwargs(self, lr: float, weight_decay: float = 0.0, **overrides) -> dict:
        """Keyword arguments for ``cls``: the defaults, then ``overrides``, then lr and wd."""
        unknown = sorted(set(overrides) - set(self.hyper))
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} is not a hyperparameter of optimizer "
                f"{self.name!r}; valid: {', '.join(self.hyper) or 'none'}."
            )
        return {**self.hyper, **overrides, "lr": lr, "weight_decay": weight_decay}


def _spec(
    name, label, cls, default_lr, reference, adaptive=False, **hyper
) -> OptimizerSpec:
    return OptimizerSpec(
        name, label, cls, MappingProxyType(hyper), default_lr, reference, adaptive
    )


BASE_OPTIMIZERS: Mapping[str, OptimizerSpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            _spec(
                "sgd",
                "SGD",
                torch.optim.SGD,
                0.1,
                "plain (stochastic) gradient descent",
                momentum=0.0,
                dampening=0.0,
                nesterov=False,
            ),
            _spec(
                "momentum",
                "heavy ball",
                torch.optim.SGD,
                0.1,
                "Polyak's heavy ball, v = 0.9 v + g, p -= lr v (torch.optim.SGD)",
                momentum=0.9,
                dampening=0.0,
                nesterov=False,
            ),
            _spec(
                "adam",
                "Adam",
                torch.optim.Adam,
                1e-3,
                "Kingma & Ba, ICLR 2015 (torch.optim.Adam)",
                True,
                betas=(0.9, 0.999),
                eps=1e-8,
                amsgrad=False,
            ),
            _spec(
                "adagrad",
                "Adagrad",
                torch.optim.Adagrad,
                1e-2,
                "Duchi, Hazan & Singer, JMLR 2011 (torch.optim.Adagrad, torch's default lr)",
                True,
                lr_decay=0.0,
                initial_accumulator_value=0.0,
                eps=1e-10,
            ),
            _spec(
                "adabound",
                "AdaBound",
                AdaBound,
                1e-3,
                "Luo, Xiong, Liu & Sun, ICLR 2019",
                True,
                betas=(0.9, 0.999),
                final_lr=0.1,
                gamma=1e-3,
                eps=1e-8,
                amsbound=False,
            ),
            _spec(
                "adashift",
                "AdaShift",
                AdaShift,
                1e-3,
                "Zhou, Zhang, Lu, Wang, Zhang & Yu, ICLR 2019",
                True,
                betas=(0.9, 0.999),
                keep_num=10,
                eps=1e-10,
                reduce="max",
            ),
        )
    }
)


def get_spec(name: str) -> OptimizerSpec:
    """The registry entry of ``name`` (ValueError naming the valid names otherwise)."""
    if not isinstance(name, str) or name not in BASE_OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {', '.join(BASE_OPTIMIZERS)}; got {name!r}."
        )
    return BASE_OPTIMIZERS[name]


def _check_bool(name, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return value


# hyperparameter -> check (value -> normalized value); ranges as torch / the authors' code
# require, eps strictly positive (eps = 0 divides by zero where v = 0)
_HYPER_CHECKS = {
    "betas": _check_betas,
    "eps": lambda v: check_float("eps", v, 0.0, low_open=True),
    "momentum": lambda v: _below_one("momentum", v),
    "dampening": lambda v: check_float("dampening", v, 0.0, 1.0),
    "nesterov": lambda v: _check_bool("nesterov", v),
    "amsgrad": lambda v: _check_bool("amsgrad", v),
    "amsbound": lambda v: _check_bool("amsbound", v),
    "lr_decay": lambda v: check_float("lr_decay", v, 0.0),
    "initial_accumulator_value": lambda v: check_float(
        "initial_accumulator_value", v, 0.0
    ),
    "final_lr": lambda v: check_float("final_lr", v, 0.0, low_open=True),
    "gamma": lambda v: check_float("gamma", v, 0.0, low_open=True),
    "keep_num": lambda v: check_int("keep_num", v, 1, 1000),
    "reduce": lambda v: check_choice("reduce", v, AdaShift.REDUCTIONS),
}


def _below_one(name, v) -> float:
    v = check_float(name, v, 0.0)
    if v >= 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {v:g}.")
    return v


def validate_options(name: str, options) -> dict:
    """Check ``options`` (hyperparameters of base optimizer ``name`` besides lr and weight
    decay) by name, type and range; return them normalized (betas as a tuple of floats).

    Used by :meth:`~sharpness_lib.training.TrainConfig.validate`, so the compiled engine and
    the torch reference path refuse exactly the same values (ValueError, one sentence)."""
    spec = get_spec(name)
    if not isinstance(options, dict):
        raise ValueError(
            "optimizer_options must be a dict of hyperparameters, e.g. "
            f"{{'final_lr': 0.01}}; got {options!r}."
        )
    spec.kwargs(1.0, 0.0, **options)  # unknown names
    out = {
        k: _HYPER_CHECKS[k](v) if k in _HYPER_CHECKS else v for k, v in options.items()
    }
    merged = {**spec.hyper, **out}
    if merged.get("nesterov") and (
        merged.get("momentum", 0) <= 0 or merged.get("dampening", 0)
    ):
        raise ValueError(
            "nesterov needs momentum > 0 and dampening 0; got momentum "
            f"{merged.get('momentum', 0):g}, dampening {merged.get('dampening', 0):g}."
        )
    return out


def make_optimizer(
    name: str,
    params,
    lr: float | None,
    weight_decay: float = 0.0,
    sam_rho: float | None = None,
    **overrides,
) -> torch.optim.Optimizer:
    """The base optimizer ``name`` over ``params``, or SAM over it when ``sam_rho`` is given.

    ``lr=None`` takes the spec's suggested ``default_lr``; ``overrides`` replace the spec's
    hyperparameters (e.g. ``momentum=0.8``, ``keep_num=5``). Bad values raise ValueError.
    """
    spec = get_spec(name)
    lr = spec.default_lr if lr is None else check_float("lr", lr, 0.0, low_open=True)
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    kwargs = spec.kwargs(lr, weight_decay, **validate_options(name, overrides))
    if sam_rho is None:
        return spec.cls(params, **kwargs)
    rho = check_float("sam_rho", sam_rho, 0.0)
    return SAM(params, spec.cls, rho=rho, **kwargs)
