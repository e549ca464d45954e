"""Command line: ``python -m sharpness_lib {train,presets,constructions,reproduce}``.

The error contract (README, "Errors and limits"):

* every invalid argument exits with status 2 and one line on stderr naming the value and
  what is valid (sizes that cannot fit in memory included: they are refused up front);
  no traceback;
* ``--json`` output is strict JSON: NaN and infinities are written as ``null``;
* a run that diverges or is stopped exits with status 1 (its history is still printed);
* Ctrl-C exits with status 130 after one line; ``train`` first prints the history so far
  (``"status": "interrupted"``);
* a closed output pipe (``| head``) ends quietly with status 141; an unwritable output
  (``> /dev/full``) with one line and status 74;
* anything else is a bug: one line "internal error", status 70 (set
  ``SHARPNESS_LIB_TRACEBACK=1`` for the traceback).

Subcommands live in :data:`COMMANDS` (name -> help, arguments, function), so adding one is
one entry there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from decimal import Decimal, InvalidOperation

from ._validation import (
    ALGO_ALIASES,
    ALGOS,
    ARCHS,
    DATASETS,
    LOSSES,
    check_choice,
    check_int,
    check_n,
)
from .presets import PRESETS, get_preset
from .training import (
    BASE_OPTIMIZERS,
    ENGINES,
    Phase,
    TrainConfig,
    engine_supports,
    train,
)

PROG = "python -m sharpness_lib"
EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
EXIT_PIPE, EXIT_IO, EXIT_INTERNAL = 141, 74, 70


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole(text: str) -> int:
    """argparse type for counts: an int, also written as 1e6 or 1000.0 (never rounded)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = Decimal(text)
    except InvalidOperation:
        v = None
    if (
        v is None
        or not v.is_finite()
        or v != v.to_integral_value()
        or v.adjusted() > 100
    ):
        raise argparse.ArgumentTypeError(
            f"invalid int value: {text!r} (a whole number such "
            "as 100 or 1e6, at most 100 digits)"
        )
    return int(v)


# flag -> (TrainConfig field, type)
_TRAIN_FLAGS = {
    "--arch": ("arch", str),
    "--algo": ("algo", str),
    "--d": ("d", _whole),
    "--n": ("n", _whole),
    "--width": ("width", _whole),
    "--lr": ("lr", float),
    "--rho": ("rho", float),
    "--wd": ("wd", float),
    "--epochs": ("epochs", _whole),
    "--seed": ("seed", _whole),
    "--init-scale": ("init_scale", float),
    "--first-layer-scale": ("first_layer_scale", float),
    "--log-every": ("log_every", _whole),
    "--batch-size": ("batch_size", _whole),
    "--depth": ("depth", _whole),
    "--eps": ("eps", float),
    "--gamma-init": ("gamma_init", float),
    "--loss": ("loss", str),
    "--label-smoothing": ("label_smoothing", float),
    "--project-norm": ("project_norm", float),
    "--test-samples": ("test_samples", _whole),
    "--optimizer": ("optimizer", str),
    "--dataset": ("dataset", str),
    "--stop-loss": ("stop_loss", float),
}
_CHOICES = {
    "arch": ARCHS,
    "algo": (*ALGOS, *ALGO_ALIASES),
    "loss": LOSSES,
    "optimizer": BASE_OPTIMIZERS,
    "dataset": DATASETS,
}


def _add_train_args(t) -> None:
    t.add_argument("--preset", help="start from a named preset (see `presets`)")
    for flag, (name, typ) in _TRAIN_FLAGS.items():
        t.add_argument(
            flag,
            dest=name,
            type=typ,
            default=None,
            metavar=name.upper()
            if name not in _CHOICES
            else "{" + ",".join(_CHOICES[name]) + "}",
        )
    t.add_argument("--engine", default="auto", help=f"one of {', '.join(ENGINES)}")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.add_argument(
        "--progress", action="store_true", help="show a progress bar on stderr"
    )


def _add_presets_args(pr) -> None:
    pr.add_argument("--json", action="store_true")


def _add_constructions_args(c) -> None:
    c.add_argument("--arch", required=True)
    c.add_argument("--d", type=_whole, default=10)
    c.add_argument("--n", type=_whole, default=100)
    c.add_argument("--seed", type=_whole, default=0)
    c.add_argument("--depth", type=_whole, default=2)
    c.add_argument("--json", action="store_true")


def _add_reproduce_args(r) -> None:
    r.add_argument(
        "--study",
        nargs="+",
        default=None,
        metavar="STUDY",
        help="paper, figure4 and/or phase (default: all)",
    )
    r.add_argument(
        "--preset",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these paper presets (e.g. fig4b)",
    )
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--jobs", type=int, default=2, help="local worker processes")
    r.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask cluster at ADDRESS instead (tcp://host:8786)",
    )
    r.add_argument("--results", default=None, metavar="DIR", help="default: results/")


def _parser() -> _Parser:
    p = _Parser(
        prog=PROG, description="Experiments of Wen, Li & Ma (2023) on parity xor."
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text))
    return p


# a flag followed by a negative number that argparse would read as another option
# (-inf, -1e300, -nan, -.5): passed as --flag=value instead
_NEGATIVE = re.compile(r"^-(inf(inity)?|nan|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$", re.I)


def _join_negative_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if (
            tok.startswith("--")
            and "=" not in tok
            and i + 1 < len(argv)
            and _NEGATIVE.match(argv[i + 1])
        ):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


def strict_json(obj) -> str:
    """JSON that strict parsers accept: NaN and +-inf become null, numpy scalars plain."""
    return json.dumps(_finite(obj), allow_nan=False)


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and getattr(o, "ndim", None) == 0:  # numpy / torch scalar
        return _finite(o.item())
    if hasattr(o, "tolist"):
        return _finite(o.tolist())
    return o


def _emit(text: str = "") -> None:
    """Write a line to stdout now (so a closed pipe or a full disk shows up here, where it
    is handled, not at interpreter exit)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _train_config(args) -> TrainConfig:
    overrides = {
        name: getattr(args, name)
        for name, _ in _TRAIN_FLAGS.values()
        if getattr(args, name) is not None
    }
    for name, choices in _CHOICES.items():
        if name in overrides:
            check_choice(name, overrides[name], choices)
    # `--preset ''` is an (unknown) preset name, not "no preset"
    cfg = get_preset(args.preset).config if args.preset is not None else TrainConfig()
    if cfg.phases and {"epochs", "lr", "rho"} & set(overrides):
        # a schedule override: keep the phases, but rescale/replace as asked
        phases = list(cfg.phases)
        if "epochs" in overrides:
            total = sum(p.epochs for p in phases)
            e = check_int("epochs", overrides["epochs"], 0)
            phases = _split_epochs(phases, e, total)
        phases = [
            Phase(p.epochs, overrides.get("lr", p.lr), overrides.get("rho", p.rho))
            for p in phases
        ]
        overrides["phases"] = tuple(phases)
    return dataclasses.replace(cfg, **overrides).validate()


def _split_epochs(phases, epochs, total):
    """Shorten a multi-phase schedule to ``epochs`` in the same proportions."""
    out, used = [], 0
    for i, p in enumerate(phases):
        k = (
            epochs - used
            if i == len(phases) - 1
            else round(epochs * p.epochs / max(total, 1))
        )
        out.append(Phase(k, p.lr, p.rho))
        used += k
    return out


def _cmd_train(args) -> int:
    from .limits import check_memory, cost_notice

    cfg = _train_config(args)
    check_choice("engine", args.engine, ENGINES)
    check_memory(cfg)
    notice = cost_notice(
        cfg, args.engine == "numba" or (args.engine == "auto" and engine_supports(cfg))
    )
    if notice:
        print(f"{PROG} train: {notice}", file=sys.stderr, flush=True)
    history: list[dict] = []  # kept here too, so Ctrl-C can still print it
    try:
        result = train(
            cfg, engine=args.engine, progress=args.progress, callback=history.append
        )
    except KeyboardInterrupt:
        last = history[-1]["epoch"] if history else 0
        out = {
            "config": cfg.to_dict(),
            "status": "interrupted",
            "message": f"interrupted (Ctrl-C) after epoch {last} of {cfg.epochs}; the "
            "history up to there is kept.",
            **(
                {
                    k: v
                    for k, v in history[-1].items()
                    if k not in ("phase", "lr", "rho")
                }
                if history
                else {}
            ),
            "history": history,
        }
        _print_train(args, cfg, out)
        print(f"{PROG} train: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = result.to_dict()
    _print_train(args, cfg, out)
    return 0 if result.status == "completed" else EXIT_FAILED


def _print_train(args, cfg, out: dict) -> None:
    if args.json:
        _emit(strict_json(out))
        return
    _emit(cfg.describe())
    _emit(f"{'epoch':>9} {'train loss':>12} {'test error':>11} {'Tr Hessian':>12}")
    for h in out["history"]:
        _emit(
            f"{h['epoch']:>9} {h['train_loss']:>12.4g} {h['test_error']:>11.4f} "
            f"{h['hessian_trace']:>12.4g}"
        )
    extra = (
        f" ({out['wall_time']:.1f} s, engine {out['engine']})"
        if "engine" in out
        else ""
    )
    _emit(f"status: {out['status']} {out['message']}{extra}")


def _cmd_presets(args) -> int:
    if args.json:
        _emit(
            strict_json(
                {
                    name: {
                        "figure": p.figure,
                        "description": p.description,
                        "notes": p.notes,
                        "config": p.config.to_dict(),
                    }
                    for name, p in PRESETS.items()
                }
            )
        )
    else:
        for name, p in PRESETS.items():
            _emit(f"{name:<16} {p.description}")
    return 0


def _cmd_constructions(args) -> int:
    from .constructions import (
        generalizing_solution,
        generalizing_solution_sln,
        memorizing_solution,
        memorizing_solution_sln,
    )
    from .data import make_parity_xor, test_error
    from .limits import (
        NOTICE_SECONDS,
        check_construction,
        construction_cost,
        format_seconds,
    )
    from .losses import mean_loss
    from .sharpness import hessian_trace, sharpness_lower_bound

    check_choice("arch", args.arch, ("bias", "sln"))
    d = check_int("d", args.d, 2)
    n = check_n(args.n, d)
    depth = check_int("depth", args.depth, 2)
    if args.arch == "sln" and depth != 2:
        raise ValueError(f"depth must be 2 for arch 'sln'; got {depth}.")
    check_int("seed", args.seed, 0, 2**62)
    check_construction(d, n, depth)  # width-n networks, n x n matrices: refuse up front
    seconds = construction_cost(d, n, depth)
    if seconds > NOTICE_SECONDS:
        print(
            f"{PROG} constructions: width-{n} networks of depth {depth} evaluated on "
            f"{f'all 2^{d}' if d <= 20 else '10000 sampled'} test points: about "
            f"{format_seconds(seconds)}.",
            file=sys.stderr,
            flush=True,
        )
    data = make_parity_xor(d, n, args.seed)
    if args.arch == "bias":
        mem = memorizing_solution(data.x, data.y, depth=depth)
        gen = generalizing_solution(d, max(4, n)) if depth == 2 else None
        bound = sharpness_lower_bound(
            "bias" if depth == 2 else "deep_bias", data.x, data.y, depth
        )
    else:
        mem = memorizing_solution_sln(data.x, data.y)
        gen = generalizing_solution_sln(d, max(4, n))
        bound = sharpness_lower_bound("sln", data.x, data.y)
    out = {
        "arch": args.arch,
        "d": d,
        "n": n,
        "seed": args.seed,
        "depth": depth,
        "lower_bound": bound,
        "predicted_memorizing_test_error": max(1 - n / 2**d, 0.0),
    }
    for key, model in (("memorizing", mem), ("generalizing", gen)):
        if model is None:
            continue
        te = test_error(model, d, seed=args.seed)
        out[key] = {
            "width": model.width,
            "train_loss": float(mean_loss(model(data.x).detach(), data.y)),
            "hessian_trace": hessian_trace(model, data.x, data.y),
            "test_error": te.value,
            "test_error_se": te.stderr,
            "test_error_exact": te.exact,
        }
    if args.json:
        _emit(strict_json(out))
    else:
        for k, v in out.items():
            _emit(f"{k}: {v}")
    return 0


def _cmd_reproduce(args) -> int:
    from . import reproduce

    check_int("jobs", args.jobs, 1, 256)
    for seed in args.seeds:
        check_int("seed", seed, 0, 2**32 - 1)
    studies = tuple(args.study or (("paper",) if args.preset else reproduce.STUDIES))
    command = "python -m sharpness_lib reproduce " + " ".join(
        sys.argv[2:] if args.argv is None else args.argv
    )
    summary = reproduce.reproduce(
        studies,
        args.preset,
        tuple(args.seeds),
        jobs=args.jobs,
        scheduler=args.scheduler,
        root=args.results or reproduce.DEFAULT_ROOT,
        command=command.strip(),
    )
    if summary.get("interrupted"):
        return 130
    return 1 if summary["failed"] else 0


COMMANDS = {  # name -> (help, add_arguments(subparser), run(args) -> exit status)
    "train": ("run one training configuration", _add_train_args, _cmd_train),
    "presets": ("list the named presets", _add_presets_args, _cmd_presets),
    "constructions": (
        "build Thm 4.1/Prop 4.2 (or Thm 5.1) solutions",
        _add_constructions_args,
        _cmd_constructions,
    ),
    "reproduce": (
        "run the paper's schedules and store them under results/",
        _add_reproduce_args,
        _cmd_reproduce,
    ),
}


def _silence_stdout() -> None:
    """After a broken pipe / full disk: point stdout at /dev/null so the interpreter's final
    flush does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real fd (e.g. captured in tests)
        pass


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(_join_negative_values(argv))
    except (
        SystemExit
    ) as exc:  # argparse: --help (0) or a usage error (2, one line printed)
        return exc.code if isinstance(exc.code, int) else EXIT_INVALID
    args.argv = argv[1:]
    name = f"{PROG} {args.command}"
    try:
        return COMMANDS[args.command][2](args)
    except ValueError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like cat
        _silence_stdout()
        return EXIT_PIPE
    except MemoryError:
        print(
            f"{name}: error: ran out of memory (the up-front estimate was too low); "
            "reduce the sizes.",
            file=sys.stderr,
        )
        return EXIT_INVALID
    except OSError as exc:
        _silence_stdout()
        print(
            f"{name}: error: cannot write the output or files: {exc.strerror or exc}.",
            file=sys.stderr,
        )
        return EXIT_IO
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless asked for the traceback
        if os.environ.get("SHARPNESS_LIB_TRACEBACK"):
            raise
        print(
            f"{name}: internal error: {type(exc).__name__}: {exc} (set "
            "SHARPNESS_LIB_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
