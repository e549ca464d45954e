"""Compiled (numba) training engine for the paper's two-layer nets.

The paper's 1-SAM runs (Wen, Li, Ma 2023, Figures 1-6) take 1e5-6e5 epochs with batch size 1
on n = 100 points of P_xor (d = 30) and width ~500.  A PyTorch loop (nn.Module, two
forward/backward passes per sample) spends almost all of its time in interpreter and dispatch
overhead; this module runs the same arithmetic in numba kernels.

Why it is fast
--------------
For one sample the weight gradient of a 2-layer net is rank one: grad_W1 = dz x^T and
grad_b1 = dz.  So 1-SAM's perturbed first-layer pre-activation needs no matvec:

    z_pert = (W1 + c dz x^T) x + (b1 + c dz) = z + c * dz * (||x||^2 + 1)        (O(m))

and the only O(m d) work per step is the in-place update of W1, fused with the matvec that
gives z for the next sample (one pass over W1, kept transposed (d, m) inside a call so the
inner loop runs over the width and vectorises without reassociation).  For 2-MLP-Sim-BN the
statistic s_j couples all n points: a step moves only the neurons active on its sample, and
their statistics (q_j, Mw_j) are recomputed exactly, packed, in register-blocked loops, or --
for +-1 inputs such as P_xor -- from tables of the 8 sign patterns of every 4 columns / rows
(see ``_simbn_stats``).  Mini-batch / full-batch gradients
are accumulated sample by sample (4 samples at a time) with no (B, m) temporaries.  No kernel
calls BLAS, so concurrent runs (``run_many``) do not oversubscribe the cores.  Base optimizers
other than plain SGD run on a dense path: the full gradient of the chunk, then the optimizer's
elementwise update with its state (``_optimizers``).

API (what ``sharpness_lib.training`` calls)
-------------------------------------------
``supports(arch, algo, loss="mse", optimizer="sgd", options=None) -> bool``

``run_epochs(params, X, Y, orders, *, arch, algo, lr, rho=0.0, wd=0.0, batch_size=1,
eps=1e-6, project_norm=None, epochs=None, loss="mse", label_smoothing=0.0, optimizer="sgd",
optimizer_options=None, opt_state=None, pm_tables=True) -> EngineStatus``

* ``params``: dict of C-contiguous float64 arrays, updated IN PLACE (may be views of torch
  parameters, ``p.detach().numpy()``): 'W1' (m, d); 'b1' (m,) except for arch 'nobias';
  'W2' (m,); 'gamma' (m,) for 'sbn' only.
* archs (``ARCHS``): 'nobias' (2-MLP-No-Bias), 'bias' (2-MLP-Bias), 'softplus' (softplus
  2-MLP-Bias, torch semantics beta=1, threshold=20), 'sln' (2-MLP-Sim-LN,
  f = W2.h / max(||h||, eps)), 'sbn' (2-MLP-Sim-BN, s_j = sqrt(mean_k h(X_k)_j^2) over the n
  training inputs under the current parameters; a neuron with s_j == 0 contributes 0 and gets
  no gradient).
* algos (``ALGOS``): 'sam1' (1-SAM), 'msam' (m-SAM, chunks of ``batch_size`` of the epoch
  order), 'sgd' (chunks of ``batch_size``), 'gd' (one full-batch step per epoch).  SAM's
  perturbation rho * g / ||g|| uses the gradient g of the chunk's loss (without weight decay)
  and the global 2-norm over all parameters (no perturbation when ||g|| == 0).
* ``loss`` (``LOSSES``), averaged over the chunk: 'mse', l = (f - y)^2; 'logistic' with label
  smoothing p = ``label_smoothing`` (Appendix B, Figures 8-10; ``sharpness_lib.losses``):
  l = -(1 - p/2) log sigma(y f) - (p/2) log sigma(-y f), dl/df = y (p/2 - sigma(-y f)).
* ``optimizer`` (``OPTIMIZERS``, hyperparameters ``optimizer_options`` with the defaults of
  ``sharpness_lib.optimizers.BASE_OPTIMIZERS``): 'sgd' (momentum 0 by default: the update
  theta <- theta - lr (grad + wd theta), the fast kernels), 'momentum' (heavy ball,
  torch.optim.SGD: buf = mu buf + (1 - dampening) g, first step buf = g; nesterov
  optional), 'adam' (torch.optim.Adam: L2 weight decay added to the gradient, bias
  corrections, eps outside the sqrt; amsgrad optional), 'adagrad' (torch.optim.Adagrad),
  'adabound' / 'adashift' (``sharpness_lib.optimizers``; AdaBound's bounds scale with
  lr / base_lr, base_lr = the lr at construction).  Weight decay ``wd`` is always the L2 term
  added to the gradient before the optimizer's rule, at the unperturbed parameters.  Every
  optimizer but plain SGD keeps state: ``opt_state`` (an ``OptState`` from
  ``new_opt_state(params, arch=, optimizer=, options=, base_lr=)``) is updated in place; if
  None a fresh one is made (base_lr = this call's lr) and returned as ``status.opt_state`` --
  pass it to the next call, as a torch optimizer keeps its ``state``.
* ``orders``: int64 (epochs, n), the visiting order of every epoch (the engine draws no random
  numbers).  Number of epochs = ``len(orders)``.  For 'gd' ``orders`` may be None; then pass
  ``epochs=`` (if both are given, ``epochs`` wins and the content of ``orders`` is ignored).
* ``pm_tables``: Sim-BN with +-1 inputs computes its statistics from tables of sign patterns;
  False forces the dense loops (same sums in another order: equal to rounding).
* ``project_norm``: if not None, after every update W1 and b1 are rescaled jointly so that
  sqrt(||W1||_F^2 + ||b1||^2) == project_norm (Figure 6b).
* Divergence: the loss (the output f) of every step (both SAM passes) is checked; if it is
  non-finite the step is NOT applied (nor the optimizer's state changed), the call stops and
  returns ``finite=False`` with ``fail_epoch`` / ``fail_step`` (indices inside this call) and
  ``start_params``, a copy of the parameters at the start of the call (the in-place parameters
  are then those before the failing step; they may already be huge).  After a call that
  finishes, all parameters are checked once more.

``run_many(jobs, n_threads=None) -> list[EngineStatus]`` runs independent ``run_epochs``
jobs (dicts of its arguments) on a thread pool; kernels release the GIL.

``warmup()`` compiles (or loads from numba's on-disk cache) every kernel on tiny inputs and
returns the seconds it took.

Where things live
-----------------
=====================  ==================================================================
``api.py``             ``supports``, ``run_epochs``, ``run_many``, ``warmup``,
                       ``EngineStatus`` (argument checks, packing, choice of kernel)
``_common.py``         JIT options, activation/loss codes, activations, dl/df, output layer
``_rank1.py``          1-SAM / SGD, batch size 1, non-Sim-BN archs (rank-1 updates)
``_simbn_stats.py``    the Sim-BN statistics (dense blocked loops and the +-1 tables)
``_simbn.py``          1-SAM / SGD, batch size 1, Sim-BN (packed active neurons)
``_batch.py``          the gradient of a chunk (GD, SGD, m-SAM, the dense path)
``_optimizers.py``     one update kernel per base optimizer, ``OptState``, hyperparameters
``_dense.py``          the dense path: chunk gradients + a base optimizer
=====================  ==================================================================
"""

from __future__ import annotations

# (the loss kernels and codes are re-exported for tests/test_engine.py)
from ._common import _LOGISTIC, _MSE, _dldf, _lval  # noqa: F401
from ._optimizers import OPTIMIZERS, OptState, new_opt_state
from .api import (
    ALGOS,
    ARCHS,
    LOSSES,
    EngineStatus,
    run_epochs,
    run_many,
    supports,
    warmup,
)

__all__ = [
    "ARCHS",
    "ALGOS",
    "LOSSES",
    "OPTIMIZERS",
    "EngineStatus",
    "OptState",
    "supports",
    "new_opt_state",
    "run_epochs",
    "run_many",
    "warmup",
]
