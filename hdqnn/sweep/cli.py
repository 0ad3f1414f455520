"""``hdqnn sweep``: its subcommand parser and entry point (wired into ``hdqnn/cli.py``).

Examples::

    hdqnn sweep examples/sweep_tiny.yaml                       # local Ray instance (or processes)
    hdqnn sweep --algo td3 hdqnn-td3 --env Pendulum-v1 --seeds 0 1 2 --steps 20000 --out runs/s1
    hdqnn sweep cfg.yaml --set "qubits=[4,6,8]" --set layers=3  # a list sweeps, a value fixes
    hdqnn sweep cfg.yaml --address auto --out /shared/runs/s1   # on a running Ray cluster
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from .config import DEFAULT_MAX_RETRIES, SweepConfigError, load_yaml, parse_config
from .executors import RAY_MISSING
from .runner import RUNNERS, plan, run_sweep
from .train_cli import TrainCommand, gymnasium_env_id

EXIT_FAILED_TRIALS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def load_train_command() -> TrainCommand:
    """``hdqnn train`` as the sweep sees it: its own parser and presets (from ``hdqnn.rl.args``, not
    the ``hdqnn`` command, which imports this module)."""
    from ..rl.args import PRESETS, train_parser

    return TrainCommand(train_parser(), resolve_env=gymnasium_env_id, presets=PRESETS,
                        check_run=check_train_args)


def check_train_args(options: dict[str, Any]) -> None:
    """ValueError naming the argument if train would refuse ``options`` (its own ``Args`` checks)."""
    from ..rl.args import PRESETS, Args

    values = {k: v for k, v in options.items() if k != "preset"}
    Args(**{**PRESETS.get(options.get("preset", "quick"), {}), **values})


def add_sweep_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sweep`` to ``hdqnn``'s subcommands; returns its parser."""
    p = subparsers.add_parser(
        "sweep", help="run many `hdqnn train` runs (algorithms x envs x seeds x options) on Ray",
        description=textwrap.fill(
            "Run a grid of `hdqnn train` runs, each in its own folder under --out, on Ray (a local instance, or "
            "a cluster with --address) or in local processes. Re-running the same sweep skips finished trials "
            "and resumes the others from their checkpoints; a trial whose worker dies is retried from its last "
            "checkpoint. Ends with the `hdqnn compare` table."),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("Examples::", 1)[1])
    p.add_argument("config", nargs="?", help="sweep YAML file (see examples/sweep_tiny.yaml); flags override it")
    p.add_argument("--out", metavar="DIR", help="the sweep's folder (overrides the file's `out`)")
    p.add_argument("--algo", nargs="+", help="algorithms to sweep (those of hdqnn train --algo: td3, sac, "
                   "hdqnn-td3, hdqnn-sac and the fc-/rbg- ablations of each)")
    p.add_argument("--env", nargs="+", help="Gymnasium environment ids to sweep")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds to run for every configuration")
    p.add_argument("--steps", type=int, metavar="N", help="environment steps of every trial")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="any train option; VALUE is YAML: a list sweeps (`qubits=[4,6]`), a value fixes (`layers=3`)")
    p.add_argument("--parallel", type=int, metavar="N", help="trials at once (default: CPUs / --cpus-per-trial)")
    p.add_argument("--cpus-per-trial", type=int, metavar="N", help="CPUs and torch threads per trial (default 1)")
    p.add_argument("--max-retries", type=int, metavar="N",
                   help=f"restarts of a trial whose worker died, each resuming its checkpoint (default {DEFAULT_MAX_RETRIES})")
    p.add_argument("--runner", choices=RUNNERS, default="auto",
                   help="ray, local processes, or auto: Ray when installed (default)")
    p.add_argument("--address", metavar="ADDRESS", help="Ray cluster to use: `auto` (the one this node belongs to) or ray://host:10001")
    p.add_argument("--dry-run", action="store_true", help="list the trials and their state, run nothing")
    p.add_argument("--no-compare", action="store_true", help="skip the final `hdqnn compare`")
    p.set_defaults(func=run_sweep_from_args)
    return p


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"--set: {text!r} is not a YAML value: {exc}") from None


def overrides_from_args(args: argparse.Namespace) -> dict[str, list[Any]]:
    """Option -> values given on the command line (one value fixes an option, several sweep it)."""
    overrides: dict[str, list[Any]] = {}
    # train's own spellings of these flags, so an error names the flag that was typed
    for key, values in (("algo", args.algo), ("env", args.env), ("seed", args.seeds),
                        ("steps", None if args.steps is None else [args.steps])):
        if values:
            overrides[key] = list(values)
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SweepConfigError(f"--set {item!r}: expected OPTION=VALUE")
        value = _yaml_value(text)
        overrides[key.strip()] = value if isinstance(value, list) else [value]
    return overrides


def config_from_args(args: argparse.Namespace, train: TrainCommand):
    """The SweepConfig of a YAML file (if any) with the command line's flags applied."""
    raw = load_yaml(args.config) if args.config else {}
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{args.config}: a sweep config must be a mapping; got {type(raw).__name__}")
    raw = dict(raw)
    for key in ("parallel", "cpus_per_trial", "max_retries", "address"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    return parse_config(raw, train.resolve, source=args.config or "command line", out=args.out,
                        overrides=overrides_from_args(args))


def _dry_run(config, train: TrainCommand) -> None:
    from . import contract
    from .runner import attempt_spec

    for trial in plan(config, train):
        state = contract.run_state(trial.run_dir(config.out))
        what = "finished" if state.finished else "resume" if state.has_checkpoint else "new"
        spec = attempt_spec(trial, config, train, 1)
        args = spec.resume_args if state.has_checkpoint else spec.fresh_args
        print(f"{what:8s} {trial.name}: hdqnn train {' '.join(args)}")


def run_sweep_from_args(args: argparse.Namespace) -> int:
    """Entry point of ``hdqnn sweep``: 0 when every trial finished, 1 if some failed, 2 for bad usage."""
    try:
        train = load_train_command()
        config = config_from_args(args, train)
        if args.dry_run:
            _dry_run(config, train)
            return 0
        report = run_sweep(config, train, runner=args.runner, compare=not args.no_compare)
    except SweepConfigError as exc:
        print(f"hdqnn sweep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        if str(exc) != RAY_MISSING:
            raise
        print(f"hdqnn sweep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_TRIALS if report.failed else 0


__all__ = ["add_sweep_subparser", "run_sweep_from_args", "config_from_args", "load_train_command"]
