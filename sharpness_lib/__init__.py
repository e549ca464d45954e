"""sharpness_lib: the objects of Wen, Li & Ma (2023), "Sharpness Minimization Algorithms Do
Not Only Minimize Sharpness To Achieve Better Generalization", checked numerically.

* data: :func:`make_parity_xor`, :class:`TestSet` (P_xor, Section 2); :func:`make_uniform_ball`
  (Figure 7)
* models: :func:`make_model` (2-MLP-No-Bias, 2-MLP-Bias, Sim-BN, Sim-LN, softplus, MLP-Bias;
  standard BatchNorm / LayerNorm for the paper's open check)
* sharpness: :func:`hessian_trace` (exact, closed form), :func:`lemma41_trace`,
  :func:`sharpness_lower_bound`, :func:`hessian_trace_hutchinson`
* optimizers: :class:`SAM` (1-SAM with batch size 1) over any base optimizer of
  :data:`BASE_OPTIMIZERS` (SGD, heavy ball, Adam, Adagrad, AdaBound, AdaShift);
  training: :func:`train`
* correlation: :func:`kendall_tau`, :func:`sharpness_correlation` (generalization gap vs sharpness)
* minimum sharpness: :func:`minimum_sharpness` (the trace minimized over function-preserving
  rescalings, Ibayashi et al. 2021), :func:`rescale`, :func:`path_norm` (Lemma 3.1)
* constructions: :func:`memorizing_solution` (Thm 4.1), :func:`generalizing_solution` (Prop 4.2)
* presets: :data:`PRESETS`, one per figure
"""

import sys as _sys

if _sys.argv[:1] == [
    "-m"
]:  # `python -m sharpness_lib`: Ctrl-C while torch loads -> one line
    from .limits import guard_imports as _guard

    _guard()

from .constructions import (
    eq5_radius,
    generalizing_solution,
    generalizing_solution_sln,
    interpolate_output_layer,
    memorizing_solution,
    memorizing_solution_sln,
)
from .correlation import kendall_tau, sharpness_correlation
from .data import (
    BallTestSet,
    ParityXor,
    TestError,
    TestSet,
    TrainingSet,
    hypercube,
    make_dataset,
    make_parity_xor,
    make_test_set,
    make_uniform_ball,
    test_error,
)
from .losses import mean_loss, per_sample_loss
from .min_sharpness import MinSharpness, minimum_sharpness, path_norm, rescale
from .models import (
    MLPBias,
    TwoMLPBias,
    TwoMLPBN,
    TwoMLPLN,
    TwoMLPNoBias,
    TwoMLPSimBN,
    TwoMLPSimLN,
    TwoMLPSoftplus,
    make_model,
)
from .optimizers import BASE_OPTIMIZERS, make_optimizer
from .presets import PRESETS, Preset, get_preset
from .sam import SAM
from .sharpness import (
    hessian_trace,
    hessian_trace_autograd,
    hessian_trace_hutchinson,
    jacobian_terms,
    lemma31_trace_bound,
    lemma41_trace,
    sharpness_lower_bound,
)
from .training import Phase, TrainConfig, TrainResult, run_config, train

__all__ = [
    "eq5_radius",
    "generalizing_solution",
    "generalizing_solution_sln",
    "memorizing_solution",
    "memorizing_solution_sln",
    "ParityXor",
    "TestError",
    "TestSet",
    "hypercube",
    "make_parity_xor",
    "test_error",
    "BallTestSet",
    "TrainingSet",
    "make_dataset",
    "make_test_set",
    "make_uniform_ball",
    "TwoMLPBN",
    "TwoMLPLN",
    "mean_loss",
    "per_sample_loss",
    "MLPBias",
    "TwoMLPBias",
    "TwoMLPNoBias",
    "TwoMLPSimBN",
    "TwoMLPSimLN",
    "TwoMLPSoftplus",
    "make_model",
    "PRESETS",
    "Preset",
    "get_preset",
    "SAM",
    "hessian_trace",
    "hessian_trace_autograd",
    "hessian_trace_hutchinson",
    "jacobian_terms",
    "lemma41_trace",
    "sharpness_lower_bound",
    "Phase",
    "TrainConfig",
    "TrainResult",
    "run_config",
    "train",
    "kendall_tau",
    "sharpness_correlation",
    "BASE_OPTIMIZERS",
    "make_optimizer",
    "MinSharpness",
    "minimum_sharpness",
    "path_norm",
    "rescale",
    "interpolate_output_layer",
    "lemma31_trace_bound",
]
__version__ = "0.1.0"

if _sys.argv[:1] == ["-m"]:
    _guard(restore=True)
