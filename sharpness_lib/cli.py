"""Command line: ``python -m sharpness_lib {train,presets,constructions}``.

Every invalid argument exits with status 2 and one line on stderr naming the value and
what is valid; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ._validation import ARCHS, ALGOS, DATASETS, LOSSES, check_choice, check_int, check_n
from .presets import PRESETS, get_preset
from .training import BASE_OPTIMIZERS, ENGINES, Phase, TrainConfig, train


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


# flag -> (TrainConfig field, type)
_TRAIN_FLAGS = {
    "--arch": ("arch", str), "--algo": ("algo", str), "--d": ("d", int), "--n": ("n", int),
    "--width": ("width", int), "--lr": ("lr", float), "--rho": ("rho", float),
    "--wd": ("wd", float), "--epochs": ("epochs", int), "--seed": ("seed", int),
    "--init-scale": ("init_scale", float), "--first-layer-scale": ("first_layer_scale", float),
    "--log-every": ("log_every", int), "--batch-size": ("batch_size", int),
    "--depth": ("depth", int), "--eps": ("eps", float), "--gamma-init": ("gamma_init", float),
    "--loss": ("loss", str), "--label-smoothing": ("label_smoothing", float),
    "--project-norm": ("project_norm", float), "--test-samples": ("test_samples", int),
    "--optimizer": ("optimizer", str), "--dataset": ("dataset", str),
    "--stop-loss": ("stop_loss", float),
}
_CHOICES = {"arch": ARCHS, "algo": ALGOS, "loss": LOSSES, "optimizer": BASE_OPTIMIZERS,
            "dataset": DATASETS}


def _parser() -> _Parser:
    p = _Parser(prog="python -m sharpness_lib",
                description="Experiments of Wen, Li & Ma (2023) on parity xor.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="run one training configuration")
    t.add_argument("--preset", help="start from a named preset (see `presets`)")
    for flag, (name, typ) in _TRAIN_FLAGS.items():
        t.add_argument(flag, dest=name, type=typ, default=None,
                       metavar=name.upper() if name not in _CHOICES else "{" + ",".join(_CHOICES[name]) + "}")
    t.add_argument("--engine", default="auto", help=f"one of {', '.join(ENGINES)}")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    pr = sub.add_parser("presets", help="list the named presets")
    pr.add_argument("--json", action="store_true")
    c = sub.add_parser("constructions", help="build Thm 4.1/Prop 4.2 (or Thm 5.1) solutions")
    c.add_argument("--arch", required=True)
    c.add_argument("--d", type=int, default=10)
    c.add_argument("--n", type=int, default=100)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--depth", type=int, default=2)
    c.add_argument("--json", action="store_true")
    r = sub.add_parser("reproduce", help="run the paper's schedules and store them under results/")
    r.add_argument("--study", nargs="+", default=None, metavar="STUDY",
                   help="paper, figure4 and/or phase (default: all)")
    r.add_argument("--preset", nargs="+", default=None, metavar="NAME",
                   help="only these paper presets (e.g. fig4b)")
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--jobs", type=int, default=2, help="local worker processes")
    r.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on the Dask cluster at ADDRESS instead (tcp://host:8786)")
    r.add_argument("--results", default=None, metavar="DIR", help="default: results/")
    return p


def _train_config(args) -> TrainConfig:
    overrides = {name: getattr(args, name) for name, _ in _TRAIN_FLAGS.values()
                 if getattr(args, name) is not None}
    for name, choices in _CHOICES.items():
        if name in overrides:
            check_choice(name, overrides[name], choices)
    cfg = get_preset(args.preset).config if args.preset else TrainConfig()
    if cfg.phases and {"epochs", "lr", "rho"} & set(overrides):
        # a schedule override: keep the phases, but rescale/replace as asked
        phases = list(cfg.phases)
        if "epochs" in overrides:
            total = sum(p.epochs for p in phases)
            e = check_int("epochs", overrides["epochs"], 0)
            phases = _split_epochs(phases, e, total)
        phases = [Phase(p.epochs, overrides.get("lr", p.lr), overrides.get("rho", p.rho))
                  for p in phases]
        overrides["phases"] = tuple(phases)
    return dataclasses.replace(cfg, **overrides).validate()


def _split_epochs(phases, epochs, total):
    """Shorten a multi-phase schedule to ``epochs`` in the same proportions."""
    out, used = [], 0
    for i, p in enumerate(phases):
        k = epochs - used if i == len(phases) - 1 else round(epochs * p.epochs / max(total, 1))
        out.append(Phase(k, p.lr, p.rho))
        used += k
    return out


def _cmd_train(args) -> int:
    cfg = _train_config(args)
    result = train(cfg, engine=args.engine, progress=args.progress)
    out = result.to_dict()
    if args.json:
        print(json.dumps(out))
    else:
        print(cfg.describe())
        print(f"{'epoch':>9} {'train loss':>12} {'test error':>11} {'Tr Hessian':>12}")
        for h in result.history:
            print(f"{h['epoch']:>9} {h['train_loss']:>12.4g} {h['test_error']:>11.4f} "
                  f"{h['hessian_trace']:>12.4g}")
        print(f"status: {result.status} {result.message} ({result.wall_time:.1f} s, "
              f"engine {result.engine})")
    return 0 if result.status == "completed" else 1


def _cmd_presets(args) -> int:
    if args.json:
        print(json.dumps({name: {"figure": p.figure, "description": p.description,
                                 "notes": p.notes, "config": p.config.to_dict()}
                          for name, p in PRESETS.items()}))
    else:
        for name, p in PRESETS.items():
            print(f"{name:<16} {p.description}")
    return 0


def _cmd_constructions(args) -> int:
    from .constructions import (generalizing_solution, generalizing_solution_sln,
                                memorizing_solution, memorizing_solution_sln)
    from .data import make_parity_xor, test_error
    from .losses import mean_loss
    from .sharpness import hessian_trace, sharpness_lower_bound

    check_choice("arch", args.arch, ("bias", "sln"))
    d = check_int("d", args.d, 2)
    n = check_n(args.n, d)
    depth = check_int("depth", args.depth, 2)
    if args.arch == "sln" and depth != 2:
        raise ValueError(f"depth must be 2 for arch 'sln'; got {depth}.")
    data = make_parity_xor(d, n, args.seed)
    if args.arch == "bias":
        mem = memorizing_solution(data.x, data.y, depth=depth)
        gen = generalizing_solution(d, max(4, n)) if depth == 2 else None
        bound = sharpness_lower_bound("bias" if depth == 2 else "deep_bias", data.x, data.y, depth)
    else:
        mem = memorizing_solution_sln(data.x, data.y)
        gen = generalizing_solution_sln(d, max(4, n))
        bound = sharpness_lower_bound("sln", data.x, data.y)
    out = {"arch": args.arch, "d": d, "n": n, "seed": args.seed, "depth": depth,
           "lower_bound": bound, "predicted_memorizing_test_error": max(1 - n / 2**d, 0.0)}
    for key, model in (("memorizing", mem), ("generalizing", gen)):
        if model is None:
            continue
        te = test_error(model, d, seed=args.seed)
        out[key] = {"width": model.width,
                    "train_loss": float(mean_loss(model(data.x).detach(), data.y)),
                    "hessian_trace": hessian_trace(model, data.x, data.y),
                    "test_error": te.value, "test_error_se": te.stderr,
                    "test_error_exact": te.exact}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def _cmd_reproduce(args) -> int:
    from . import reproduce

    check_int("jobs", args.jobs, 1, 256)
    for seed in args.seeds:
        check_int("seed", seed, 0, 2**32 - 1)
    studies = tuple(args.study or (("paper",) if args.preset else reproduce.STUDIES))
    command = "python -m sharpness_lib reproduce " + " ".join(sys.argv[2:] if args.argv is None
                                                              else args.argv)
    summary = reproduce.reproduce(studies, args.preset, tuple(args.seeds), jobs=args.jobs,
                                  scheduler=args.scheduler,
                                  root=args.results or reproduce.DEFAULT_ROOT,
                                  command=command.strip())
    if summary.get("interrupted"):
        return 130
    return 1 if summary["failed"] else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)[1:]
    try:
        return {"train": _cmd_train, "presets": _cmd_presets,
                "constructions": _cmd_constructions,
                "reproduce": _cmd_reproduce}[args.command](args)
    except ValueError as exc:
        print(f"python -m sharpness_lib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
