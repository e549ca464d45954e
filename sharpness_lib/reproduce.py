"""The paper at its own scale: every figure's run at full length, stored under ``results/``.

``python -m sharpness_lib reproduce`` (``make reproduce``) runs the :data:`plan`:

* ``paper``: every preset of the paper's Table 2 (Figures 1-11) over seeds 0-2, at the
  paper's schedule. Three schedules do not fit a reproduction on two cores and are capped,
  each with its reason stored beside the result (:data:`CAPS`); nothing is shortened
  silently.
* ``figure4``: Figure 4's question, 1-SAM on 2-MLP-Bias at init scale 0.3, long enough to
  see it generalize and then turn into a memorizer at the Lemma 4.1 bound, with the
  memorization diagnostics of :mod:`sharpness_lib.memorization` at every log point.
* ``phase``: the phase diagram of 1-SAM on 2-MLP-Bias over init scale x rho.

Each run writes one JSON file (config, status, final metrics, log-spaced history and
provenance: command, commit, versions, wall time, cores) atomically, so a killed
reproduction restarted with the same command skips what is finished and never leaves half a
file. :mod:`sharpness_lib.results` reads the files back and re-checks them against the code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .presets import PRESETS, get_preset
from .training import Phase, TrainConfig

FORMAT = 1
SEEDS = (0, 1, 2)
STUDIES = ("paper", "figure4", "phase")
PAPER_PRESETS = tuple(name for name in PRESETS if name.startswith("fig"))
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "results"

_DEEP_CAP = (
    "the depth-3 net runs on the plain-torch path (~1k steps/s at width 500): "
    "the paper's 1e5 epochs would take ~3 h per seed, so 300 epochs (0.3%)."
)
# Schedules cut to fit: (replacement settings, the reason stated wherever the run is shown)
CAPS: dict[str, tuple[dict, str]] = {
    "fig2a": (
        {"phases": (Phase(2_500, 0.005, 0.1), Phase(2_500, 0.003, 1.0))},
        "2-MLP-Sim-BN's exact 1-SAM step costs ~n times a no-bias step (~8k steps/s): "
        "the paper's 2 x 1e5 epochs take ~42 min per seed here, so each phase is cut "
        "to 2500 epochs (5000 in all, 2.5% of the paper's).",
    ),
    "fig10a": (
        {"epochs": 5_000},
        "2-MLP-Sim-BN again (~8 min per seed for the paper's 4e4 epochs): cut to 5000 "
        "epochs (12.5% of the paper's).",
    ),
    "fig11a": ({"epochs": 300}, _DEEP_CAP),
    "fig11b": ({"epochs": 300}, _DEEP_CAP),
}

# Scenario II's long runs: 1-SAM on 2-MLP-Bias at the paper's size, one long schedule
_BIAS_SAM1 = dict(
    arch="bias", algo="sam1", d=30, n=100, width=500, lr=0.02, epochs=40_000
)
# Figure 4 at the init scale where 1-SAM first generalizes (the paper leaves the init open)
FIGURE4 = dict(_BIAS_SAM1, rho=0.1, init_scale=0.3)
# The phase diagram over init scale x rho
PHASE_BASE = dict(_BIAS_SAM1, test_samples=2_000)
PHASE_INIT_SCALES = (0.1, 0.2, 0.3, 0.5, 1.0)
PHASE_RHOS = (0.02, 0.05, 0.1)
# stored histories: a linear grid of 50 points plus 10 a decade (log_spacing "log")
LOG_POINTS = 50


@dataclass(frozen=True)
class Job:
    """One stored run: where it goes, what it runs, and why its schedule differs (if so)."""

    study: str
    name: str
    seed: int
    config: dict
    cap: str = ""
    preset: str | None = None

    @property
    def relpath(self) -> str:
        return f"{self.study}/{self.name}/seed{self.seed}.json"

    def cost(self) -> float:
        """Rough relative cost (steps x per-step weight) for the time-left estimate."""
        cfg = TrainConfig.from_dict(self.config).validate()
        steps = cfg.epochs * math.ceil(cfg.n / cfg.batch_size)
        weight = {
            "sbn": 30.0,
            "deep_bias": 200.0,
            "bn": 200.0,
            "ln": 200.0,
            "softplus": 1.5,
        }.get(cfg.arch, 1.0)
        if cfg.algo == "gd":
            weight *= 2.0  # a full-batch step touches every sample
        return steps * weight + 3e5  # + the log points' measurements


def _stored_config(cfg: TrainConfig, **extra) -> dict:
    cfg = cfg.replace(
        log_spacing="log",
        log_every=max(1, cfg.validate().epochs // LOG_POINTS),
        **extra,
    )
    return cfg.validate().to_dict()


def paper_config(name: str, seed: int) -> tuple[dict, str]:
    """The stored config of paper preset ``name`` and the reason for its cap ("" if none)."""
    preset = get_preset(name)
    changes, reason = CAPS.get(name, ({}, ""))
    cfg = preset.config.replace(seed=seed, **changes)
    if cfg.phases and "epochs" in changes:
        raise AssertionError(f"cap of {name} must replace its phases")
    memo = cfg.arch in ("nobias", "bias") and cfg.dataset == "xor"
    return _stored_config(cfg, memorization=memo), reason


def plan(studies=STUDIES, presets=None, seeds=SEEDS) -> list[Job]:
    """The jobs of a reproduction (all by default), cheapest-first within each study."""
    for s in studies:
        if s not in STUDIES:
            raise ValueError(f"study must be one of {', '.join(STUDIES)}; got {s!r}.")
    for name in presets or ():
        if name not in PAPER_PRESETS:
            raise ValueError(
                f"preset must be one of the paper's: {', '.join(PAPER_PRESETS)}; "
                f"got {name!r}."
            )
    jobs: list[Job] = []
    if "figure4" in studies and not presets:
        for seed in seeds:
            cfg = _stored_config(TrainConfig(**FIGURE4, seed=seed), memorization=True)
            jobs.append(Job("figure4", "bias-sam1-init0.3", seed, cfg))
    if "phase" in studies and not presets:
        for init in PHASE_INIT_SCALES:
            for rho in PHASE_RHOS:
                for seed in seeds:
                    cfg = _stored_config(
                        TrainConfig(**PHASE_BASE, init_scale=init, rho=rho, seed=seed)
                    )
                    jobs.append(Job("phase", phase_cell(init, rho), seed, cfg))
    if "paper" in studies:
        for name in presets or PAPER_PRESETS:
            for seed in seeds:
                cfg, reason = paper_config(name, seed)
                jobs.append(Job("paper", name, seed, cfg, reason, preset=name))
    return jobs


def phase_cell(init_scale: float, rho: float) -> str:
    return f"init{init_scale:g}-rho{rho:g}"


def expected_job(study: str, name: str, seed: int) -> Job:
    """The job the current code would run for a stored (study, name, seed)."""
    if study == "paper":
        cfg, reason = paper_config(name, seed)
        return Job(study, name, seed, cfg, reason, preset=name)
    for job in plan((study,), seeds=(seed,)):
        if job.name == name:
            return job
    raise ValueError(f"no {study} run named {name!r} in the current plan.")


# ---------------------------------------------------------------------------- provenance
def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(command: str) -> dict:
    """What produced a result: command, commit (and whether the tree was clean), versions."""
    import numba
    import numpy
    import torch

    from . import __version__

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "sharpness_lib"))
    return {
        "command": command,
        "commit": commit + ("-dirty" if dirty else ""),
        "library": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
    }


def digest(record: dict) -> str:
    """SHA-256 of a record's canonical JSON without its ``digest`` field."""
    body = {k: v for k, v in record.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON: NaN/inf stored as null
    return value


def columns(history: list[dict]) -> dict[str, list]:
    """A list of records as columns (every key of every record; missing -> null)."""
    keys: list[str] = []
    for rec in history:
        keys += [k for k in rec if k not in keys]
    return {k: [_finite(rec.get(k)) for rec in history] for k in keys}


def run_job(
    job: Job | dict, root: str | os.PathLike = DEFAULT_ROOT, command: str = ""
) -> dict:
    """Train one job and write its file atomically; returns a one-line summary dict."""
    import torch

    from .training import train

    job = job if isinstance(job, Job) else Job(**job)
    torch.set_num_threads(1)  # one run per core
    t0 = time.time()
    result = train(job.config)
    record = {
        "format": FORMAT,
        "study": job.study,
        "name": job.name,
        "seed": job.seed,
        "preset": job.preset,
        "cap": job.cap,
        "config": job.config,
        "status": result.status,
        "message": result.message,
        "engine": result.engine,
        "final": {k: _finite(v) for k, v in result.final.items()},
        "history": columns(result.history),
        "first_layer": first_layer_summary(result.model),
        "provenance": {
            **provenance(command),
            "wall_time": round(time.time() - t0, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
        },
    }
    record["digest"] = digest(record)
    write_atomic(Path(root) / job.relpath, record)
    return {
        "status": result.status,
        "seconds": time.time() - t0,
        "test_error": _finite(result.final["test_error"]),
        "history": None,
    }


def first_layer_summary(model) -> dict | None:
    """Column norms of the final W1 (Figure 2b's evidence: the xor coordinates' columns
    stand out), and the norm of b1; None for nets without a single first layer."""
    w1 = getattr(model, "W1", None)
    if w1 is None:
        return None
    b1 = getattr(model, "b1", None)
    return {
        "column_norms": [_finite(float(v)) for v in w1.detach().norm(dim=0)],
        "bias_norm": None if b1 is None else _finite(float(b1.detach().norm())),
    }


def write_atomic(path: Path, record: dict) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_done(job: Job, root: str | os.PathLike = DEFAULT_ROOT) -> bool:
    """Whether ``job``'s file exists, is intact and was produced by the same config."""
    path = Path(root) / job.relpath
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return record.get("digest") == digest(record) and record.get("config") == job.config


def _fmt_seconds(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def reproduce(
    studies=STUDIES,
    presets=None,
    seeds=SEEDS,
    jobs: int = 2,
    scheduler: str | None = None,
    root: str | os.PathLike = DEFAULT_ROOT,
    command: str = "",
    out=sys.stderr,
) -> dict:
    """Run the plan's unfinished jobs (local processes, or a Dask cluster at ``scheduler``),
    printing a progress line per finished run: done, running, estimated time left."""
    return run_plan(
        plan(studies, presets, seeds),
        jobs=jobs,
        scheduler=scheduler,
        root=root,
        command=command,
        out=out,
    )


def _progress_printer(todo: list[Job], workers: int | None, out):
    """run_sweep's ``on_result``: a line per finished run with the runs done and running
    and the time left, extrapolated from the share of the total cost done so far."""
    costs = {j.relpath: j.cost() for j in todo}
    total = sum(costs.values())
    state = {"done": 0, "cost": 0.0, "t0": time.time()}

    def on_result(row):
        state["done"] += 1
        state["cost"] += costs[Job(**row["job"]).relpath]
        elapsed = time.time() - state["t0"]
        left = (
            elapsed / state["cost"] * (total - state["cost"]) if state["cost"] else 0.0
        )
        running = min(workers or len(todo), len(todo) - state["done"])
        print(
            f"[{state['done']}/{len(todo)} done, {running} running, ~{_fmt_seconds(left)} "
            f"left] {row['job']['study']}/{row['job']['name']} seed {row['job']['seed']}: "
            f"{row['status']}, test error {row['test_error']}, {row['seconds']:.0f} s",
            file=out,
            flush=True,
        )

    return on_result


def run_plan(
    todo_all: list[Job],
    jobs: int = 2,
    scheduler: str | None = None,
    root: str | os.PathLike = DEFAULT_ROOT,
    command: str = "",
    out=sys.stderr,
) -> dict:
    """Run the jobs of ``todo_all`` whose files are missing or stale (see :func:`is_done`)."""
    from .sweep import run_sweep

    # longest first: the two-core makespan does not end on one long straggler
    todo = sorted(
        (j for j in todo_all if not is_done(j, root)), key=Job.cost, reverse=True
    )
    skipped = len(todo_all) - len(todo)
    print(
        f"reproduce: {len(todo_all)} runs planned, {skipped} already stored under {root}, "
        f"{len(todo)} to run on "
        f"{'the Dask cluster at ' + scheduler if scheduler else f'{jobs} local process(es)'}.",
        file=out,
        flush=True,
    )
    if not todo:
        return {"planned": len(todo_all), "skipped": skipped, "ran": 0, "failed": []}
    on_result = _progress_printer(todo, jobs if not scheduler else None, out)
    points = [{"job": dataclasses.asdict(j)} for j in todo]
    client = None
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
    try:
        res = run_sweep(
            {},
            points,
            train_fn=_SweepJob(str(root), command),
            n_jobs=jobs,
            backend="dask" if scheduler else "loky",
            client=client,
            progress=False,
            on_result=on_result,
        )
    finally:
        if client is not None:
            client.close()
    failed = [
        (p["job"]["study"] + "/" + p["job"]["name"], msg.splitlines()[0])
        for p, msg in res.failed
    ]
    for name, msg in failed:
        print(f"reproduce: {name} failed: {msg}", file=out, flush=True)
    return {
        "planned": len(todo_all),
        "skipped": skipped,
        "ran": len(res.finished),
        "failed": failed,
        "interrupted": res.interrupted,
    }


class _SweepJob:
    """Picklable train_fn for run_sweep: runs a job and writes its file under ``root``."""

    def __init__(self, root: str, command: str):
        self.root, self.command = root, command

    def __call__(self, point: dict) -> dict:
        return run_job(point["job"], self.root, self.command)
