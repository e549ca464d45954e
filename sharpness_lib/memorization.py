"""Is a 2-layer ReLU net a lookup table? Activation statistics along a run.

Scenario II (Section 4) says the flattest interpolators of 2-MLP-Bias memorize: the
construction of Theorem 4.1 gives every training point x_i its own neuron
relu(<x_i, x> - (d - 2)) that fires on x_i and nowhere else on the hypercube, so fresh
points switch every neuron off and the output there is ~0. A net that learned the xor
feature instead uses a few neurons each firing on about a quarter of the cube.
:func:`activation_stats` measures where a trained net sits between the two:

* ``active_per_train_point`` / ``active_per_fresh_point``: mean number of *live* neurons
  with positive pre-activation at a training / fresh point (a lookup table: ~1 and ~0);
* ``points_per_neuron``: mean number of training points a live neuron fires on (the
  memorizing construction: 1; xor features: ~n/4);
* ``median_abs_f_train`` / ``median_abs_f_fresh``: median |f(x)| on training / fresh
  points (a lookup table answers ~1 on the training set and ~0 off it).

A neuron is *live* when it carries output: |w2_j| * ||(w1_j, b1_j)|| is at least
``LIVE_FRACTION`` of the largest such product, so the many tiny neurons left near
their initialization do not swamp the counts.
"""

from __future__ import annotations

import torch

from .models import TwoLayerNet

LIVE_FRACTION = 1e-2
ARCHS = ("nobias", "bias")  # plain ReLU 2-layer nets: pre-activation > 0 means "fires"


def live_neurons(model: TwoLayerNet, fraction: float = LIVE_FRACTION) -> torch.Tensor:
    """Boolean mask of the neurons whose |w2_j| ||(w1_j, b1_j)|| >= fraction * max."""
    with torch.no_grad():
        rows = model.W1.square().sum(1)
        if model.b1 is not None:
            rows = rows + model.b1.square()
        weight = model.W2.abs() * rows.sqrt()
        top = weight.max()
        if not torch.isfinite(top) or top <= 0:
            return torch.zeros_like(weight, dtype=torch.bool)
        return weight >= fraction * top


@torch.no_grad()
def activation_stats(
    model: TwoLayerNet, x_train: torch.Tensor, x_fresh: torch.Tensor
) -> dict[str, float]:
    """The memorization diagnostics of the module docstring, as floats."""
    arch = getattr(model, "arch", None)
    if arch not in ARCHS:
        raise ValueError(
            f"activation_stats covers the ReLU 2-layer nets "
            f"({', '.join(ARCHS)}); got arch {arch!r}."
        )
    live = live_neurons(model)
    fire_train = (model.preactivation(x_train) > 0) & live
    fire_fresh = (model.preactivation(x_fresh) > 0) & live
    per_neuron = fire_train.sum(0)[live].to(torch.float64)
    return {
        "active_per_train_point": float(fire_train.sum(1).to(torch.float64).mean()),
        "active_per_fresh_point": float(fire_fresh.sum(1).to(torch.float64).mean()),
        "points_per_neuron": float(per_neuron.mean()) if per_neuron.numel() else 0.0,
        "median_abs_f_train": float(model(x_train).abs().median()),
        "median_abs_f_fresh": float(model(x_fresh).abs().median()),
    }
