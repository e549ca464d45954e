"""What a run will cost, checked before it starts: memory, time, and the likely culprit of a
divergence.

* :func:`run_memory` / :func:`check_memory` -- the bytes a training run needs (model
  parameters with gradients and optimizer state, training set, activations on it for the
  exact Hessian trace, test set), compared with the memory this machine has available
  (``MemAvailable`` of /proc/meminfo, or the cgroup limit if smaller). A run that cannot fit
  is refused up front with one sentence naming the value, the estimate and the available
  memory, instead of a MemoryError after minutes.
* :func:`exact_test_error` -- the rule for the zero-one test error on P_xor: the full
  hypercube (exact) only when it costs at most :data:`EXACT_COST_FACTOR` times the sampled
  set, i.e. d <= 17 with the default 10 000 samples; above that, fresh samples with a
  standard error (enumerating 2^20 points at every log point took 27 s per epoch).
* :func:`run_cost` / :func:`cost_notice` -- steps, log points and an estimated wall time
  (rough, from per-step costs measured on a 2-core machine), printed by the CLI before long
  runs.
* :func:`construction_memory` / :func:`construction_cost` -- the same for the explicit
  constructions (Theorem 4.1 builds n x n matrices).
* :func:`divergence_suspects` -- which setting most likely made a run diverge (lr, rho,
  weight decay, init scale, gamma), so the message does not always blame the learning rate.

No torch import here: the CLI uses this module before the heavy imports.
"""

from __future__ import annotations

import os

__all__ = [
    "EXACT_COST_FACTOR",
    "available_memory",
    "run_memory",
    "check_memory",
    "exact_test_error",
    "run_cost",
    "cost_notice",
    "construction_memory",
    "construction_cost",
    "check_construction",
    "divergence_suspects",
    "divergence_hint",
    "guard_imports",
    "format_bytes",
    "format_seconds",
]

EXACT_COST_FACTOR = 16  # exact hypercube if 2^d <= 16 x the sampled test set
EXACT_MAX_D = 20  # and never above 2^20 points
NOTICE_SECONDS = 10.0  # the CLI announces runs estimated to take longer than this
_F = 8  # bytes per float64

# per-step costs, measured (benchmarks on the 2-core CI-like machine, width 64..512, d 30):
# the compiled engine ~1 ns per parameter per sample, the torch reference path ~1 ms of
# dispatch per optimizer step plus ~3 ns per parameter per sample; a forward pass over the
# test set ~15 ns per (point, hidden unit)
_ENGINE_NS_PER_PARAM = 1.0
_REF_NS_PER_PARAM = 3.0
_REF_SECONDS_PER_STEP = 1.0e-3
_TEST_NS_PER_UNIT = 15.0
_TRACE_NS_PER_PARAM = 10.0


def format_bytes(b: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def format_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    if s < 2 * 365 * 86400:
        return f"{s / 86400:.0f} days"
    return f"{s / (365 * 86400):.3g} years"


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, or the cgroup (v2/v1) limit minus
    current usage if smaller; None when the platform tells neither (then nothing is refused)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f:
                raw = f.read().strip()
            if raw == "max" or int(raw) >= 1 << 60:
                continue
            with open(usage_file) as f:
                room = int(raw) - int(f.read().strip())
            avail = room if avail is None else min(avail, room)
            break
        except (OSError, ValueError):
            continue
    return avail


def exact_test_error(d: int, num_samples: int) -> bool:
    """True if the zero-one test error on P_xor is computed on the whole hypercube: 2^d points
    cost at most EXACT_COST_FACTOR times the ``num_samples`` fresh samples, and d <= 20."""
    return d <= EXACT_MAX_D and 2**d <= EXACT_COST_FACTOR * num_samples


def _get(cfg, name, default=None):
    return (
        cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)
    )


def _param_count(arch: str, d: int, width: int, depth: int) -> int:
    p = width * (d + 1) + width  # W1, b1 (nobias: one width less), W2
    if arch in ("sbn", "bn", "ln"):
        p += width * (1 if arch == "sbn" else 2)  # gamma (and beta)
    if arch == "deep_bias":
        p += (depth - 2) * width * width
    return p


def _optimizer_slots(optimizer: str, options: dict) -> int:
    """Tensors of the parameters' size an optimizer keeps (moments, queues)."""
    options = options or {}
    if optimizer == "momentum":
        return 1
    if optimizer in ("adam", "adabound"):
        return 3 if options.get("amsgrad") or options.get("amsbound") else 2
    if optimizer == "adagrad":
        return 1
    if optimizer == "adashift":
        keep = options.get("keep_num", 10)
        return (keep if isinstance(keep, int) and keep > 0 else 10) + 2
    return 0


def run_memory(cfg) -> dict[str, float]:
    """Bytes a training run needs, by component (a validated TrainConfig or a dict of one).

    Deliberately generous (several temporaries per tensor): the exact trace of
    :mod:`sharpness_lib.sharpness` keeps about a dozen (n, width) tensors alive at once."""
    arch, d, n, width = (
        _get(cfg, "arch"),
        _get(cfg, "d"),
        _get(cfg, "n"),
        _get(cfg, "width"),
    )
    depth = _get(cfg, "depth", 3) if arch == "deep_bias" else 2
    samples = _get(cfg, "test_samples", 10_000)
    P = _param_count(arch, d, width, depth)
    sam = _get(cfg, "algo") in ("sam1", "msam")
    # value, gradient, the divergence snapshot, SAM's perturbation, the optimizer's state
    slots = (
        3
        + sam
        + _optimizer_slots(
            _get(cfg, "optimizer", "sgd"), _get(cfg, "optimizer_options", {})
        )
    )
    layers = max(1, depth - 1)
    out = {"model parameters and optimizer state": float(P) * slots * _F}
    train_set = 3.0 * n * d * _F
    if (
        _get(cfg, "dataset", "xor") == "xor" and d > 24
    ):  # dict of distinct rows while drawing
        train_set += n * (d * _F + 120.0)
    out["training set"] = train_set
    out["activations on the training set"] = 12.0 * n * width * layers * _F
    if _get(cfg, "dataset", "xor") == "xor" and exact_test_error(d, samples):
        out["test set"] = 4.0 * min(2**d, 1 << 15) * (width * layers + d) * _F
    else:
        # the samples are stored, and evaluated in chunks of 2^15 (TestSet); the ball's at once
        chunk = (
            samples if _get(cfg, "dataset", "xor") == "ball" else min(samples, 1 << 15)
        )
        out["test set"] = samples * d * _F + 4.0 * chunk * width * layers * _F
    return out


# which settings make each component large, for the refusal sentence
_DRIVERS = {
    "model parameters and optimizer state": ("width", "d", "depth"),
    "training set": ("n", "d"),
    "activations on the training set": ("n", "width", "depth"),
    "test set": ("test_samples", "width", "d", "depth"),
}


def check_memory(cfg, available: int | None = None) -> None:
    """Raise ValueError (one sentence: the value, the estimate, the available memory) if the
    run cannot fit in memory."""
    need = run_memory(cfg)
    total = sum(need.values())
    avail = available_memory() if available is None else available
    if avail is None or total <= avail:
        return
    part = max(need, key=need.get)
    names = [
        k for k in _DRIVERS[part] if k != "depth" or _get(cfg, "arch") == "deep_bias"
    ]
    # the culprit: the setting furthest above its default (width 1e9 -> width, not samples)
    culprit = max(names, key=lambda k: float(_get(cfg, k) or 1) / _DEFAULTS[k])
    values = ", ".join(
        f"{k} {_get(cfg, k)}" for k in [culprit] + [k for k in names if k != culprit]
    )
    raise ValueError(
        f"this run ({values}) needs about {format_bytes(total)} of memory, "
        f"mostly for the {part} ({format_bytes(need[part])}), but only "
        f"{format_bytes(avail)} is available; reduce {culprit}."
    )


_DEFAULTS = {"width": 512, "d": 30, "n": 100, "test_samples": 10_000, "depth": 3}


def run_cost(cfg, engine: bool) -> dict:
    """Steps, log points and estimated seconds of a validated config; ``engine``: whether the
    compiled engine runs it (else the torch reference path)."""
    arch, d, n, width = cfg.arch, cfg.d, cfg.n, cfg.width
    depth = cfg.depth if arch == "deep_bias" else 2
    P = _param_count(arch, d, width, depth)
    epochs = cfg.epochs
    batches_per_epoch = 1 if cfg.algo == "gd" else -(-n // cfg.batch_size)
    steps = epochs * batches_per_epoch
    sam = 2 if cfg.algo in ("sam1", "msam") else 1
    norm = (
        n if arch in ("sbn", "bn") and not engine else 1
    )  # statistics over x_ref per step
    if engine:
        train_s = epochs * n * P * sam * _ENGINE_NS_PER_PARAM * 1e-9
    else:
        train_s = (
            steps * sam * _REF_SECONDS_PER_STEP
            + epochs * n * norm * P * sam * _REF_NS_PER_PARAM * 1e-9
        )
    log_points = epochs // cfg.log_every + 2
    test_points = (
        2**d
        if cfg.dataset == "xor" and exact_test_error(d, cfg.test_samples)
        else cfg.test_samples
    )
    per_log = (
        test_points * width * max(1, depth - 1) * _TEST_NS_PER_UNIT
        + n * P * _TRACE_NS_PER_PARAM
    ) * 1e-9
    return {
        "steps": steps,
        "log_points": log_points,
        "test_points": test_points,
        "seconds": train_s + log_points * per_log,
    }


def cost_notice(cfg, engine: bool) -> str | None:
    """One line announcing a run estimated to take more than NOTICE_SECONDS, else None."""
    c = run_cost(cfg, engine)
    if c["seconds"] <= NOTICE_SECONDS:
        return None
    return (
        f"this run takes {c['steps']:,} optimizer steps ({cfg.epochs:,} epochs) and "
        f"{c['log_points']:,} log points over {c['test_points']:,} test points: about "
        f"{format_seconds(c['seconds'])} on this machine "
        f"({'compiled engine' if engine else 'torch reference path'}); "
        "Ctrl-C stops it and prints the history so far."
    )


def construction_memory(d: int, n: int, depth: int = 2) -> float:
    """Bytes for the constructions command: the memorizer has width n, so its activations on
    the training set and its first-layer Gram matrix are n x n, each of the depth - 2 hidden
    layers is n x n too, and the exact test error evaluates chunks of up to 2^15 points."""
    layers = max(1, depth - 1)
    nn = float(n) * n
    chunk = min(2 ** min(d, 62), 1 << 15)
    return (
        _F * (8 * nn + 3 * (depth - 2) * nn + 4 * chunk * n * layers + 4 * n * d)
        + 1500.0 * depth
    )  # a torch Parameter object per hidden layer


def construction_cost(d: int, n: int, depth: int = 2) -> float:
    """Estimated seconds of the constructions command (test error over the hypercube or the
    samples, traces, and ~0.1 ms per hidden layer to build and evaluate)."""
    layers = max(1, depth - 1)
    test_points = 2**d if d <= EXACT_MAX_D else 10_000
    return (
        test_points * n * layers * _TEST_NS_PER_UNIT * 1e-9 * 2
        + 20.0 * n * n * layers * 1e-9
        + 2e-4 * depth
    )


def check_construction(
    d: int, n: int, depth: int = 2, available: int | None = None
) -> None:
    need = construction_memory(d, n, depth)
    avail = available_memory() if available is None else available
    if avail is not None and need > avail:
        what = f"n {n}" if n * n >= depth else f"depth {depth}"
        raise ValueError(
            f"the constructions for {what} (d {d}) need about "
            f"{format_bytes(need)} of memory (width-n networks, n x n matrices), "
            f"but only {format_bytes(avail)} is available; reduce "
            f"{what.split()[0]}."
        )


def divergence_suspects(cfg) -> list[str]:
    """The settings that most likely made a run diverge, most likely first, as phrases like
    ``"init_scale 1e+06 (large: the output grows as its square)"``. The learning rate is
    always the last resort. Crude ratios to a typical stable value; not a proof."""
    first = cfg.schedule()[0] if hasattr(cfg, "schedule") else cfg
    lr = max(p.lr for p in cfg.schedule()) if hasattr(cfg, "schedule") else first.lr
    rho = max(p.rho for p in cfg.schedule()) if hasattr(cfg, "schedule") else first.rho
    sam = cfg.algo in ("sam1", "msam")
    scale = cfg.init_scale * max(cfg.first_layer_scale, 1.0)
    ratios = []
    # a GD step with weight decay multiplies the weights by (1 - lr wd): beyond 2 it flips
    # and grows
    if cfg.wd > 0:
        ratios.append(
            (
                lr * cfg.wd / 1.0,
                f"wd (weight decay) {cfg.wd:g} (lr x wd = "
                f"{lr * cfg.wd:.3g}; above 1 the decay overshoots)",
            )
        )
    if scale > 1:
        ratios.append(
            (
                scale**2 / 100,
                f"init_scale {cfg.init_scale:g} (large: the initial "
                "curvature grows as its square)",
            )
        )
    if cfg.arch in ("sbn", "bn", "ln") and abs(cfg.gamma_init) > 1:
        ratios.append(
            (
                cfg.gamma_init**2 / 100,
                f"gamma_init {cfg.gamma_init:g} (large: the output grows with gamma)",
            )
        )
    if sam and rho > 0:
        ratios.append(
            (rho / 1.0, f"rho {rho:g} (SAM's ascent step; typical values are 0.01-0.5)")
        )
    opts = cfg.optimizer_options or {}
    if "momentum" in opts and opts["momentum"] >= 0.99:
        ratios.append(
            (opts["momentum"] / 0.99, f"momentum {opts['momentum']:g} (close to 1)")
        )
    # squared loss near init: sharpness ~ 2 ||grad f||^2 ~ init_scale^2 (d + 1), stable below
    # 2 / sharpness
    # (the init scale's share of that is flagged on its own above)
    lr_ratio = lr * (cfg.d + 2) / 2
    ratios.append((lr_ratio, f"lr {lr:g}"))
    ratios.sort(key=lambda r: -r[0])
    flagged = [text for r, text in ratios if r >= 1]
    if not any(t.startswith("lr ") for t in flagged):
        flagged.append(f"lr {lr:g}")
    return flagged


def guard_imports(restore: bool = False) -> None:
    """For ``python -m sharpness_lib``: Ctrl-C while torch and numba load (seconds) prints one
    line and exits with status 130 instead of a 14-line traceback from inside an import.
    ``restore=True`` puts Python's default handler (KeyboardInterrupt) back afterwards."""
    import signal

    def interrupted(signum, frame):
        os.write(2, b"python -m sharpness_lib: interrupted\n")
        os._exit(130)

    try:
        signal.signal(
            signal.SIGINT, signal.default_int_handler if restore else interrupted
        )
    except ValueError:  # not the main thread: leave signals alone
        pass


def divergence_hint(cfg) -> str:
    """The clause of the divergence message naming the suspects."""
    s = divergence_suspects(cfg)
    if len(s) == 1:
        return f"likely cause: {s[0]} may be too large"
    return f"likely cause: {s[0]}; else {', '.join(s[1:])}"
