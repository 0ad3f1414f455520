"""The ``hdqnn`` command: ``train``, ``eval``, ``compare``, ``info`` (and ``sweep``, from hdqnn.sweep).

``hdqnn train`` with no flags runs a short real hDQNN-TD3 training on Pendulum-v1 (a few minutes on
one CPU core); every field of :class:`hdqnn.rl.Args` is a flag (``--help`` lists them).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Sequence

#: Short flag names for the most used arguments (the long field names work too).
ALIASES = {"total_timesteps": ["--steps"], "env_id": ["--env"], "out_dir": ["--out"]}
EXIT_USAGE = 2


def _flag_kwargs(f: dataclasses.Field, hint: Any, help_text: str, suppress_defaults: bool) -> dict[str, Any]:
    """argparse settings for one Args field (``suppress_defaults``: absent flags stay out of the
    namespace, which then holds exactly what was given)."""
    default = f.default
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS if suppress_defaults else default, "help": help_text,
                              "dest": f.name}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        kwargs["help"] += f" (default: {default})"
    elif typing.get_origin(hint) is tuple:
        kwargs.update(type=int, nargs="+", metavar="N", help=help_text + f" (default: {' '.join(map(str, default))})")
    else:
        kwargs.update(type=hint, metavar=hint.__name__.upper(), help=help_text + f" (default: {default!r})")
    return kwargs


TRAIN_HELP = "train an agent (default: a quick hDQNN-TD3 run on Pendulum-v1)"
TRAIN_DESCRIPTION = (
    "Train TD3, hDQNN-TD3 or an ablation on a Gymnasium environment. With no flags: a short real "
    "hDQNN-TD3 run on Pendulum-v1. Writes metrics.jsonl, TensorBoard files (tb/), learning_curve.png, "
    "checkpoint.pt and summary.json in the run folder.")


def _add_train_arguments(p: argparse.ArgumentParser, suppress_defaults: bool) -> argparse.ArgumentParser:
    """One flag per field of :class:`hdqnn.rl.Args`, plus --preset and --resume."""
    from .rl.args import CHOICES, PRESETS, Args, field_docs

    p.add_argument("--preset", choices=sorted(PRESETS), default=argparse.SUPPRESS,
                   help="named argument set applied before the other flags ('paper': the paper's TD3 "
                        "settings, 10 qubits x 10 layers on Humanoid-v4)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its checkpoint (its arguments are kept; --steps may "
                        "extend it)")
    docs = field_docs(Args)
    hints = typing.get_type_hints(Args)
    for f in dataclasses.fields(Args):
        names = ALIASES.get(f.name, []) + [f"--{f.name.replace('_', '-')}"]
        kwargs = _flag_kwargs(f, hints[f.name], docs.get(f.name, ""), suppress_defaults)
        if f.name in CHOICES:
            kwargs.update(choices=CHOICES[f.name], metavar="{" + ",".join(CHOICES[f.name]) + "}")
        p.add_argument(*names, **kwargs)
    return p


def train_parser() -> argparse.ArgumentParser:
    """``hdqnn train``'s arguments as a parser of its own, with the real defaults (the sweep checks
    trial options with it)."""
    parser = argparse.ArgumentParser(prog="hdqnn train", description=TRAIN_DESCRIPTION)
    return _add_train_arguments(parser, suppress_defaults=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hdqnn", description="hdqnn: hybrid deep quantum neural networks.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # defaults suppressed: cmd_train must know which flags were given (a preset or a resumed run's
    # arguments apply where no flag was)
    _add_train_arguments(subparsers.add_parser("train", help=TRAIN_HELP, description=TRAIN_DESCRIPTION),
                         suppress_defaults=True)

    p = subparsers.add_parser("eval", help="evaluate a run's latest checkpoint with the deterministic policy")
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's)")

    p = subparsers.add_parser("compare", help="compare runs over seeds: table and curves with 95%% CIs")
    p.add_argument("run_dirs", metavar="DIR", nargs="+", help="run folders, or folders that contain runs")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="curve plot path (default: compare.png in the first DIR)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the table's rows as JSON")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--timings", action="store_true",
                   help="also print each config's time per env step, broken down by part")

    p = subparsers.add_parser("info", help="version, simulator backends, torch and threads")

    from .sweep import add_sweep_subparser

    add_sweep_subparser(subparsers)
    return parser


# ------------------------------------------------------------------------------------ commands
def cmd_train(ns: argparse.Namespace) -> int:
    from .rl.args import PRESETS, Args
    from .rl.train import train

    given = {k: v for k, v in vars(ns).items() if k not in ("command", "resume", "preset")}
    for name in ("hidden_sizes", "pre_hidden", "post_hidden"):
        if name in given:
            given[name] = tuple(given[name])
    if ns.resume is not None:
        if getattr(ns, "preset", None) is not None:
            raise ValueError("--preset cannot be combined with --resume (a resumed run keeps its arguments)")
        summary = train(resume=ns.resume, **given)
    else:
        values = {**PRESETS[getattr(ns, "preset", "quick")], **given}
        summary = train(Args(**values))
    _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"{summary['label']} on {summary['env_id']} (seed {summary['seed']}): {summary['total_timesteps']} steps, "
          f"final eval return {fmt(summary['final_eval'])}, best {fmt(summary['best_eval'])}, "
          f"{summary['sps']:.1f} steps/s ({fmt(summary['sps_learning'])} while learning), "
          f"{summary['wall_seconds']:.0f} s")
    if summary["circuit_executions"]:
        cosine = summary["grad_cosine_mean"]
        print(f"circuit executions: {summary['circuit_executions']:,}; mean qtDNN gradient cosine vs exact "
              f"adjoint: {'-' if cosine is None else f'{cosine:.3f}'}")
    parts = ", ".join(f"{k} {v:.2f}" for k, v in summary["time_ms_per_step"].items())
    print(f"ms per env step: {parts}")


def cmd_eval(ns: argparse.Namespace) -> int:
    from .rl.evaluate import evaluate_run

    returns, args = evaluate_run(ns.run_dir, episodes=ns.episodes, seed=ns.seed)
    print(f"{args.label} on {args.env_id}: {len(returns)} deterministic episodes, return "
          f"{returns.mean():.1f} +- {returns.std():.1f} (min {returns.min():.1f}, max {returns.max():.1f})")
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .rl.compare import compare

    plot = ns.plot or str(Path(ns.run_dirs[0]) / "compare.png")
    table, _ = compare(ns.run_dirs, plot=plot, json_path=ns.json, markdown=ns.markdown, timings=ns.timings)
    print(table)
    print(f"curves: {plot}")
    return 0


def cmd_info(ns: argparse.Namespace) -> int:
    import torch

    import hdqnn

    print(f"hdqnn {hdqnn.__version__}")
    print(f"torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, "
          f"{torch.get_num_interop_threads()} inter-op threads, CUDA {'available' if torch.cuda.is_available() else 'not available'}")
    for module in ("gymnasium", "mujoco"):
        try:
            print(f"{module} {__import__(module).__version__}")
        except ImportError as exc:
            print(f"{module}: not installed ({exc})")
    print("simulator backends:")
    for name, status in hdqnn.backend_status().items():
        print(f"  {name:8s} {status}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "compare": cmd_compare, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hdqnn`` console script; returns the exit status."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command == "sweep":  # reports its own errors (issue 7's hdqnn/sweep)
        return ns.func(ns)
    try:
        return COMMANDS[ns.command](ns)
    except (ValueError, FileNotFoundError) as exc:  # bad input: a message, not a traceback
        print(f"hdqnn {ns.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted; a run continues from its last checkpoint with: hdqnn train --resume DIR",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
