"""The ``hdqnn`` command: ``train``, ``eval``, ``generalize``, ``compare``, ``info`` (and ``sweep``, from hdqnn.sweep).

``hdqnn train`` with no flags runs a short real hDQNN-TD3 training on Pendulum-v1 (a few minutes on
one CPU core); every field of :class:`hdqnn.rl.Args` is a flag (``--help`` lists them).
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_USAGE = 2
#: ``hdqnn eval --video`` where this machine cannot render the env or write MP4 (the reason is printed).
EXIT_NO_VIDEO = 1
#: 128 + SIGINT, the shell's status of a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130
TRAIN_HELP = "train an agent (default: a quick hDQNN-TD3 run on Pendulum-v1)"


def build_parser() -> argparse.ArgumentParser:
    from .rl.args import TRAIN_DESCRIPTION, add_train_arguments

    parser = argparse.ArgumentParser(prog="hdqnn", description="hdqnn: hybrid deep quantum neural networks.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # defaults suppressed: cmd_train must know which flags were given (a preset or a resumed run's
    # arguments apply where no flag was)
    add_train_arguments(subparsers.add_parser("train", help=TRAIN_HELP, description=TRAIN_DESCRIPTION),
                        suppress_defaults=True)

    p = subparsers.add_parser("eval", help="evaluate a run's latest checkpoint with the deterministic policy",
                              epilog=_perturbations_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's)")
    p.add_argument("--perturb", nargs="+", metavar="NAME=LEVEL", default=None,
                   help="evaluate under changed dynamics or sensing (e.g. mass=1.5 friction=0.8), and the "
                        "unperturbed policy on the same episodes for the relative drop")
    p.add_argument("--save-policy", metavar="FILE", default=None,
                   help="also save the deterministic policy to one self-contained file "
                        "(hdqnn.rl.Policy.load(FILE) acts without the run folder)")
    p.add_argument("--export", metavar="FILE", default=None,
                   help="also export a classical actor (td3, fc-td3, sac, fc-sac, ppo, fc-ppo) for torch alone: "
                        "FILE.pt2 as torch.export's program, any other name as TorchScript")
    p.add_argument("--video", metavar="FILE.mp4", default=None,
                   help="first record the first evaluation episode as an MP4 (offscreen rendering: MuJoCo "
                        "through MUJOCO_GL, default egl; pygame for classic control; imageio-ffmpeg)")

    p = subparsers.add_parser("generalize", help="sweep perturbation levels over runs: returns and relative drops",
                              description="Evaluate each run's deterministic policy unperturbed and at several "
                              "levels of each perturbation; write a table and a plot per run (in its folder) and "
                              "pooled over seeds as hdqnn compare pools them (in --out).",
                              epilog=_perturbations_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", metavar="DIR", nargs="+", help="run folders, or folders that contain runs")
    p.add_argument("--levels", nargs="+", metavar="NAME[=L1,L2,...]", default=None,
                   help="the perturbations to sweep, each with its levels or its default levels (default: every "
                        "perturbation the env supports at its default levels)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per level (default: 10)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: each run's)")
    p.add_argument("--out", metavar="DIR", default=".",
                   help="folder for the pooled generalization.{txt,json,png} (default: the current folder)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")

    p = subparsers.add_parser("compare", help="compare runs over seeds: table and curves with 95%% CIs")
    p.add_argument("run_dirs", metavar="DIR", nargs="+", help="run folders, or folders that contain runs")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="curve plot path (default: compare.png in the --out folder)")
    p.add_argument("--out", metavar="DIR", default=".", help="folder for compare.png (default: the current folder)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the table's rows as JSON")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--timings", action="store_true",
                   help="also print each config's time per env step, broken down by part")

    p = subparsers.add_parser("info", help="version, simulator backends, torch and threads")

    from .sweep import add_sweep_subparser

    add_sweep_subparser(subparsers)
    return parser


def _perturbations_help() -> str:
    from .rl.perturb import describe

    return "perturbations (NAME=LEVEL; which apply depends on the env):\n" + describe()


# ------------------------------------------------------------------------------------ commands
def cmd_train(ns: argparse.Namespace) -> int:
    """Train (or resume) one run; prints the run folder first and last, and how to resume it."""
    from .rl.args import PRESETS, TYPED_FLAGS, Args
    from .rl.checkpoint import checkpoint_path
    from .rl.train import (RESUMABLE_OVERRIDES, ResumeConflict, RunAlreadyComplete, TrainingInterrupted, fresh_args,
                           train)

    typed = getattr(ns, TYPED_FLAGS, None) or {}
    given = {k: v for k, v in vars(ns).items() if k not in ("command", "command_line", "resume", "preset", TYPED_FLAGS)}
    for name in ("hidden_sizes", "pre_hidden", "post_hidden"):
        if name in given:
            given[name] = tuple(given[name])
    preset = getattr(ns, "preset", None)
    if ns.resume is not None:
        # a preset repeated on resume is compared with the run's arguments; it changes no step count
        repeated = {k: v for k, v in PRESETS[preset or "quick"].items() if k not in RESUMABLE_OVERRIDES}
        run_dir, kwargs = ns.resume, {"resume": ns.resume, "command": ns.command_line, **repeated, **given}
    else:
        args = fresh_args(Args(**{**PRESETS[preset or "quick"], **given}))
        if "env_id" in given and given["env_id"] != args.env_id:
            print(f"{typed.get('env_id', '--env')} {given['env_id']} -> {args.env_id}")
        run_dir, kwargs = args.out_dir, {"args": args}
    print(f"run folder: {run_dir}" + (" (resuming)" if ns.resume is not None else ""))
    try:
        summary = train(**kwargs)
    except ResumeConflict as exc:
        raise ValueError(_conflict_message(exc, typed, preset)) from None
    except RunAlreadyComplete as exc:
        print(exc)
        return 0
    except TrainingInterrupted as exc:
        print(f"\nstopped by {signal.Signals(exc.signum).name} at step {exc.step}; checkpoint saved in {run_dir}\n"
              f"continue with: hdqnn train --resume {shlex.quote(str(run_dir))}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:  # a second signal abandoned the step before its checkpoint
        resume = (f"continue from its last checkpoint with: hdqnn train --resume {shlex.quote(str(run_dir))}"
                  if checkpoint_path(run_dir).exists() else "no checkpoint was written")
        print(f"\ninterrupted; run folder {run_dir}: {resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_summary(summary)
    print(f"run folder: {run_dir}")
    return 0


def _conflict_message(exc, typed: dict[str, str], preset: str | None) -> str:
    """``ResumeConflict`` in the flags as typed: ``--env Hopper-v4 (the run has Pendulum-v1)``."""
    from .rl.args import PRESETS, flag_names

    def flag(name: str) -> str:
        if name in typed:
            return typed[name]
        if preset and name in PRESETS[preset]:
            return f"--preset {preset} sets {flag_names(name)[-1]}"
        return flag_names(name)[0]

    def show(value: Any) -> str:
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    listed = ", ".join(f"{flag(name)} {show(given)} (the run has {show(run)})"
                       for name, (run, given) in exc.conflicts.items())
    return (f"--resume keeps the run's arguments, and these differ: {listed}; drop them to continue the "
            "run (only --steps may extend it), or start a new run in another --out folder")


def _print_summary(summary: dict[str, Any]) -> None:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"{summary['label']} on {summary['env_id']} (seed {summary['seed']}): {summary['total_timesteps']} steps, "
          f"final eval return {fmt(summary['final_eval'])}, best {fmt(summary['best_eval'])}, "
          f"{summary['sps']:.1f} SPS ({fmt(summary['sps_learning'])} while learning), "
          f"{summary['wall_seconds']:.0f} s")
    if summary["circuit_executions"]:
        cosine = summary["grad_cosine_mean"]
        print(f"circuit executions: {summary['circuit_executions']:,}; mean qtDNN gradient cosine vs exact "
              f"adjoint: {'-' if cosine is None else f'{cosine:.3f}'}")
    parts = ", ".join(f"{k} {v:.2f}" for k, v in summary["time_ms_per_step"].items())
    print(f"ms per env step: {parts}")


def cmd_eval(ns: argparse.Namespace) -> int:
    from .rl.evaluate import evaluate_actor, load_run_actor
    from .rl.generalize import relative_drop
    from .rl.perturb import format_spec, parse_perturbations

    perturb = parse_perturbations(ns.perturb) if ns.perturb else {}
    if ns.save_policy or ns.export:
        _save_policy(ns.run_dir, ns.save_policy, ns.export)
    if ns.video and not _record_video(ns.run_dir, ns.video, ns.seed, perturb):
        return EXIT_NO_VIDEO
    actor, args = load_run_actor(ns.run_dir)
    returns = evaluate_actor(actor, args, ns.episodes, ns.seed, perturb)
    under = f" under {format_spec(perturb)}" if perturb else ""
    print(f"{args.label} on {args.env_id}{under}: {len(returns)} deterministic episodes, return "
          f"{returns.mean():.1f} +- {returns.std():.1f} (min {returns.min():.1f}, max {returns.max():.1f})")
    if perturb:
        unperturbed = evaluate_actor(actor, args, ns.episodes, ns.seed).mean()
        drop = relative_drop(unperturbed, returns.mean())
        print(f"unperturbed on the same episodes: return {unperturbed:.1f}; relative drop "
              f"{'-' if drop is None else f'{100 * drop:.1f}%'} (positive = worse)")
    return 0


def _save_policy(run_dir: str, policy_file: str | None, export_file: str | None) -> None:
    """Write the run's policy as a self-contained file and/or an export for torch alone, saying where."""
    from .rl.policy import load_policy

    policy = load_policy(run_dir)
    if policy_file:
        print(f"policy saved to {policy.save(policy_file)} (load with hdqnn.rl.Policy.load)")
    if export_file:
        loader = "torch.export.load(FILE).module()" if Path(export_file).suffix == ".pt2" else "torch.jit.load"
        print(f"actor exported to {policy.export(export_file)} (load with {loader})")


def _record_video(run_dir: str, path: str, seed: int | None, perturb: dict[str, float]) -> bool:
    """Record the run's first deterministic evaluation episode to ``path``; False (with the reason
    on stderr) where this machine cannot render it or write MP4."""
    from .rl.policy import load_policy
    from .rl.video import VideoUnavailable, check_mujoco_gl, record_video

    try:
        check_mujoco_gl()  # before load_policy makes the env, where a broken MUJOCO_GL would fail first
        policy = load_policy(run_dir)
        video = record_video(policy, policy.args.env_id, path, policy.args.seed if seed is None else seed, perturb)
    except VideoUnavailable as exc:
        print(f"hdqnn eval: no video recorded: {exc}", file=sys.stderr)
        return False
    print(f"video: {video.path} ({video.frames} frames at {video.fps:g} fps; the first evaluation episode, "
          f"return {video.episode_return:.1f})")
    return True


def cmd_generalize(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .rl.generalize import RESULT_STEM, generalize
    from .rl.perturb import parse_levels

    levels = parse_levels(ns.levels) if ns.levels else None
    table, _ = generalize(ns.run_dirs, levels, episodes=ns.episodes, seed=ns.seed, out=ns.out,
                          markdown=ns.markdown, log=lambda line: print(line, file=sys.stderr))
    print(table)
    out = Path(ns.out) / RESULT_STEM
    print(f"pooled: {out}.txt, {out}.json, {out}.png; each run's in its folder ({RESULT_STEM}.*)")
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .rl.compare import compare

    plot = ns.plot or str(Path(ns.out) / "compare.png")
    table, _ = compare(ns.run_dirs, plot=plot, json_path=ns.json, markdown=ns.markdown, timings=ns.timings)
    print(table)
    print(f"curves: {plot}")
    return 0


def cmd_info(ns: argparse.Namespace) -> int:
    from .info import report

    print("\n".join(report()))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "generalize": cmd_generalize, "compare": cmd_compare,
            "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hdqnn`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    ns = parser.parse_args(argv)
    ns.command_line = shlex.join(["hdqnn", *argv])
    if ns.command == "sweep":  # reports its own errors (issue 7's hdqnn/sweep)
        return ns.func(ns)
    try:
        return COMMANDS[ns.command](ns)
    except (ValueError, FileNotFoundError) as exc:  # bad input: a message, not a traceback
        print(f"hdqnn {ns.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
