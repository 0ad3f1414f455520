"""The training loop of TD3, SAC and their hDQNN variants: act, step, store, update, log, evaluate, checkpoint
(PPO's loop, on vectorised environments, is ``onpolicy``'s; ``train`` runs either).

A run folder holds ``run.json`` (arguments), ``metrics.jsonl`` and ``tb/`` (logs), ``checkpoint.pt``
(the latest atomic checkpoint), ``learning_curve.png`` and, once finished, ``summary.json``.
``train(resume=DIR)`` continues a run from its checkpoint; on the CPU the result is bit-identical
to an uninterrupted run with the same seed (the replay buffer must be in the checkpoint for that).

SIGINT (Ctrl-C) or SIGTERM stops a run at the end of the current step: it writes a checkpoint and
raises ``TrainingInterrupted`` (``hdqnn train`` then exits with the shell's status for that signal,
130 or 143). Further signals while that checkpoint is written are ignored; one during the rest of
the step abandons the step (the previous checkpoint, if any, stays intact).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..backends import set_num_threads as set_engine_threads
from .agents import make_agent
from .args import Args, base_algo, check_training_surrogate, resolve_env_id, resolved_qtdnn_preset
from .buffer import ReplayBuffer
from .checkpoint import (RunFolderLock, checkpoint_path, global_rng_state, load_checkpoint, save_checkpoint,
                         seed_everything, set_global_rng_state)
from .device_noise import check_run_noise, start_run_noise
from .envs import EpisodeRecorder, make_env
from .evaluate import evaluate
from .metrics import PLOT_FILE, RUN_FILE, SUMMARY_FILE, MetricLogger, read_metrics
from .networks import box_dims
from .offpolicy import OffPolicyAgent
from .plots import plot_run
from .timing import per_step_ms

#: Training episodes in the progress bar's "recent return".
RECENT_EPISODES = 10
#: Arguments a resumed run may change: they do not affect what is computed.
RESUMABLE_OVERRIDES = ("total_timesteps", "progress", "tensorboard")
#: Signals that stop a run after its current step, with a checkpoint.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: ``run.json``'s list of the changes of total_timesteps made on resume.
EXTENSIONS_KEY = "extensions"


@dataclass
class Progress:
    """Counters that a checkpoint carries besides the models (plain values only)."""

    global_step: int = 0
    episodes: int = 0
    train_seconds: float = 0.0
    """wall time in acting, env steps and updates (evaluation and checkpoints excluded)"""
    wall_seconds: float = 0.0
    """wall time of the whole run, evaluations and checkpoints included"""
    learning_steps: int = 0
    learning_seconds: float = 0.0
    """steps that made an update, and their wall time (the steady-state speed, warm-up excluded)"""
    circuit_executions: int = 0
    best_eval: float | None = None
    last_eval: float | None = None
    recent_returns: list[float] = field(default_factory=list)
    time_totals: dict[str, float] = field(default_factory=dict)
    """seconds per step part over the whole run (see ``OffPolicyAgent.take_timings``)"""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run after step ``step``; its checkpoint is in ``out_dir``."""

    def __init__(self, signum: int, out_dir: str, step: int, total: int):
        self.signum, self.out_dir, self.step = signum, out_dir, step
        super().__init__(f"{signal.Signals(signum).name} at step {step} of {total}: checkpoint saved in "
                         f"{out_dir}; continue with: hdqnn train --resume {out_dir}")


class RunAlreadyComplete(Exception):
    """``resume`` of a run that has already trained all its steps (nothing to do)."""

    def __init__(self, out_dir: str, steps: int):
        self.out_dir, self.steps = out_dir, steps
        super().__init__(f"the run in {out_dir} is already complete ({steps} steps); to train it longer, "
                         f"resume it with more steps (hdqnn train --resume {out_dir} --steps N, N > {steps})")


class ResumeConflict(ValueError):
    """Arguments given with ``resume`` that differ from the run's: ``conflicts`` maps each field to
    (the run's value, the given value)."""

    def __init__(self, conflicts: dict[str, tuple[Any, Any]]):
        self.conflicts = conflicts
        listed = "; ".join(f"{name} is {run!r} in the run, got {given!r}" for name, (run, given) in conflicts.items())
        super().__init__(f"a resumed run keeps its arguments (only {', '.join(RESUMABLE_OVERRIDES)} may change): "
                         f"{listed}")


def default_out_dir(args: Args) -> str:
    return f"runs/{args.env_id}__{args.algo}__{args.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def fresh_args(args: Args | None = None, **overrides: Any) -> Args:
    """The arguments a fresh run uses: ``args`` with ``overrides``, the env id versioned
    (``HalfCheetah`` -> ``HalfCheetah-v5``), the auto qtDNN preset resolved (so the run's record,
    and a policy later loaded with other shots, keep the surrogate it trained with) and the default
    run folder filled in."""
    args = Args.from_dict({**(args or Args()).to_dict(), **overrides})
    args.env_id = resolve_env_id(args.env_id)
    check_training_surrogate(args)
    args.qtdnn_preset = resolved_qtdnn_preset(args)
    args.out_dir = args.out_dir or default_out_dir(args)
    return args


def train(args: Args | None = None, *, resume: str | os.PathLike | None = None, command: str | None = None,
          **overrides: Any) -> dict[str, Any]:
    """Train one run (or continue ``resume``) and return its summary (also in ``summary.json``).

    ``overrides`` replace fields of ``args``. With ``resume`` they may repeat the run's arguments;
    only ``RESUMABLE_OVERRIDES`` may differ (else ``ResumeConflict``), and a run that has trained
    all its steps raises ``RunAlreadyComplete``. ``command`` (the command line, if any) is recorded
    in ``run.json`` when a resume changes total_timesteps. SIGINT/SIGTERM: see the module's doc.
    One process at a time writes a run folder: another is refused (``RunFolderLocked``, naming it).
    """
    with RunFolderLock() as lock:
        return _train(lock, args, resume, command, overrides)


def _train(lock: RunFolderLock, args: Args | None, resume: str | os.PathLike | None, command: str | None,
           overrides: dict[str, Any]) -> dict[str, Any]:
    checkpoint = None
    if resume is not None:
        if args is not None:
            raise ValueError("a resumed run keeps its arguments: pass resume=DIR and overrides, not args")
        lock.acquire(resume)
        checkpoint = load_checkpoint(resume)
        args = resumed_args(checkpoint["args"], str(resume), overrides)
        if args.total_timesteps < checkpoint["global_step"]:
            raise ValueError(f"the checkpoint is at step {checkpoint['global_step']}, past total_timesteps "
                             f"{args.total_timesteps}")
        if args.total_timesteps == checkpoint["global_step"] and (Path(resume) / SUMMARY_FILE).is_file():
            raise RunAlreadyComplete(str(resume), checkpoint["global_step"])
    else:
        args = fresh_args(args, **overrides)
        lock.acquire(args.out_dir, fresh=True)
        if checkpoint_path(args.out_dir).exists():
            raise ValueError(f"{args.out_dir!r} already holds a run with a checkpoint: continue it with "
                             f"hdqnn train --resume {args.out_dir} (or resume=...), or choose another output folder")

    # --noise is resolved once, here: a bad value fails before anything is written
    noise_record = (check_run_noise(args, Path(resume)) if checkpoint is not None
                    else start_run_noise(args, Path(args.out_dir)))
    torch.set_num_threads(args.threads)
    set_engine_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if base_algo(args.algo) == "ppo":
        from .onpolicy import train_on_policy  # imported here: onpolicy builds on this module's helpers

        return train_on_policy(args, checkpoint, out_dir, command, noise_record)

    # ---------------------------------------------------------------- environment, agent, buffer
    env = make_env(args.env_id)
    eval_env = make_env(args.env_id)
    obs_dim, act_dim = box_dims(env)
    seed_everything(args.seed)
    env.action_space.seed(args.seed)
    agent = make_agent(args, obs_dim, env.action_space)
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, seed=args.seed)
    recorder = EpisodeRecorder(args.seed)
    progress = Progress()
    if checkpoint is None:
        _write_json(out_dir / RUN_FILE, {**args.to_dict(), **noise_record})
        obs = recorder.reset(env)
        logger = MetricLogger(out_dir, tensorboard=args.tensorboard, truncate_to=0)
    else:
        # restore first: a checkpoint that cannot be restored must leave the folder as it was
        obs = _restore(checkpoint, agent, rb, recorder, env, progress, args)
        _record_extension(out_dir, checkpoint, args, command, noise_record)
        logger = MetricLogger(out_dir, tensorboard=args.tensorboard, truncate_to=checkpoint["metrics_bytes"])
    executions_offset = progress.circuit_executions - agent.circuit_executions()
    session_start, wall_offset = time.perf_counter(), progress.wall_seconds

    def save(final_timings: bool = False) -> None:
        if final_timings:  # a stop between logging steps: the timings and count since the last log
            _take_timings(agent, progress)
            progress.circuit_executions = executions_offset + agent.circuit_executions()
        progress.recent_returns = list(recent)
        progress.wall_seconds = wall_offset + time.perf_counter() - session_start
        with stop.saving():
            _checkpoint(out_dir, args, agent, rb, recorder, obs, env, logger, progress)

    # ---------------------------------------------------------------- the loop
    recent = deque(progress.recent_returns, maxlen=RECENT_EPISODES)
    bar = _progress_bar(args, progress.global_step)
    window = _LogWindow(progress)
    stop = _StopSignals()
    try:
        stop.install()
        for global_step in range(progress.global_step, args.total_timesteps):
            step_start = time.perf_counter()
            with agent.timer("act"):
                if len(rb) < args.learning_starts:
                    action = env.action_space.sample()
                else:
                    action = agent.act(obs, explore=True)
            with agent.timer("env"):
                next_obs, reward, terminated, truncated, info = recorder.step(env, action)
            rb.add(obs, next_obs, action, reward, terminated)
            obs = next_obs
            if terminated or truncated:
                progress.episodes += 1
                episode_return = float(info["episode"]["r"])
                recent.append(episode_return)
                logger.log(global_step + 1, {"charts/episodic_return": episode_return,
                                             "charts/episodic_length": int(info["episode"]["l"])})
                obs = recorder.reset(env)

            learning = len(rb) >= max(args.learning_starts, 1)
            if learning:
                window.metrics.update(agent.update(rb.sample(args.batch_size)))

            step = progress.global_step = global_step + 1
            step_seconds = time.perf_counter() - step_start
            progress.train_seconds += step_seconds
            if learning:
                progress.learning_steps += 1
                progress.learning_seconds += step_seconds
            window.steps += 1
            if step % args.log_freq == 0 or step == args.total_timesteps:
                window.log(step, agent, logger, bar, recent, executions_offset)
            if step % args.eval_freq == 0 or step == args.total_timesteps:
                _evaluate(agent.actor, eval_env, args, logger, progress, step)
            saved = step % args.checkpoint_freq == 0 or step == args.total_timesteps
            if saved:
                save()
            bar.update(1)
            _stop_if_signalled(stop, saved, save, out_dir, step, args.total_timesteps)
    finally:
        stop.uninstall()
        bar.close()
        logger.close()
        env.close()
        eval_env.close()
    progress.wall_seconds = wall_offset + time.perf_counter() - session_start
    return _finish(out_dir, args, progress)


def resumed_args(recorded: dict[str, Any], run_dir: str, overrides: dict[str, Any]) -> Args:
    """The run's recorded arguments with ``overrides``: those repeating the run's values are
    accepted, ``RESUMABLE_OVERRIDES`` applied, any other difference is a ``ResumeConflict``."""
    Args.from_dict({**recorded, **overrides})  # unknown or invalid values: ValueError naming them
    conflicts = {}
    for name, given in overrides.items():
        if name == "out_dir":
            same = Path(given).resolve() == Path(run_dir).resolve()
        elif name == "env_id":
            same = resolve_env_id(given) in (recorded[name], resolve_env_id(recorded[name]))
        elif name == "qtdnn_preset":  # a fresh run recorded what "auto" resolved to
            same = resolved_qtdnn_preset(Args.from_dict({**recorded, name: given})) == recorded[name]
        else:
            same = name in RESUMABLE_OVERRIDES or _plain(given) == _plain(recorded[name])
        if not same:
            conflicts[name] = (run_dir if name == "out_dir" else recorded[name], given)
    if conflicts:
        raise ResumeConflict(conflicts)
    resumable = {k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES}
    return Args.from_dict({**recorded, "out_dir": run_dir, **resumable})


def _plain(value: Any) -> Any:
    """Tuples as lists: a checkpoint's and a command line's sequences compare equal."""
    return list(value) if isinstance(value, tuple) else value


def steps_per_second(steps: int, train_seconds: float) -> float:
    """Env steps per second of training time (acting, env steps and updates; evaluations,
    plots and checkpoints excluded): the one speed shown by the progress bar, logged as
    ``charts/SPS`` and summed up in the summary's ``sps``."""
    return steps / max(train_seconds, 1e-9)


# -------------------------------------------------------------------- helpers of the loop
class _StopSignals:
    """SIGINT/SIGTERM handlers that ask the loop to stop after the current step.

    The first signal sets ``signum``; a later one is ignored while a checkpoint is being written
    (``saving``), and otherwise raises KeyboardInterrupt at once (abandoning a long step). Only the
    main thread can install handlers; elsewhere signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saving = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Context of a checkpoint write: further stop signals wait for it."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    def _handle(self, signum: int, frame: Any) -> None:
        # os.write, not print: a handler may run in the middle of another write to the stream
        if self.signum is None:
            self.signum = signum
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
                        "(again to abandon the step)\n".encode())
        elif self._saving:
            os.write(2, b"\nwriting the checkpoint; please wait\n")
        else:
            raise KeyboardInterrupt


def _stop_if_signalled(stop: _StopSignals, saved: bool, save: Callable[[bool], None], out_dir: Path, step: int,
                       total: int) -> None:
    """After step ``step``: when a stop signal came, checkpoint (unless this step just did) and raise
    ``TrainingInterrupted``."""
    if stop.signum is None or step >= total:
        return
    if not saved:
        save(True)
    raise TrainingInterrupted(stop.signum, str(out_dir), step, total)


class _LogWindow:
    """What the next log line reports: the env steps and training seconds since the last line, and
    the latest metrics of the updates in between (one window per line, in every training loop)."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._start()

    def _start(self) -> None:
        self.steps, self.metrics, self._train_seconds = 0, {}, self._progress.train_seconds

    def log(self, step: int, agent: Any, logger: MetricLogger, bar: Any, recent: deque,
            executions_offset: int) -> None:
        """Log the window at ``step`` (its metrics, SPS, per-step timings and the run's circuit
        executions), show it on the progress bar, and start the next window."""
        progress = self._progress
        seconds = _take_timings(agent, progress)
        sps = steps_per_second(self.steps, progress.train_seconds - self._train_seconds)
        progress.circuit_executions = executions_offset + agent.circuit_executions()
        logger.log(step, {**self.metrics, "charts/SPS": sps, **per_step_ms(seconds, self.steps),
                          "quantum/circuit_executions": progress.circuit_executions})
        bar.set_postfix(SPS=f"{sps:.0f}", ret=f"{np.mean(recent):.0f}" if recent else "-",
                        eval="-" if progress.last_eval is None else f"{progress.last_eval:.0f}")
        self._start()


def _take_timings(agent: OffPolicyAgent, progress: Progress) -> dict[str, float]:
    """The agent's per-part seconds since the last call, also added to the run's totals."""
    seconds = agent.take_timings()
    for part, s in seconds.items():
        progress.time_totals[part] = progress.time_totals.get(part, 0.0) + s
    return seconds


def _progress_bar(args: Args, initial: int):
    from tqdm.auto import tqdm

    # no tqdm rate: it is a smoothed wall-clock rate that counts evaluations and checkpoints, and
    # would disagree with the SPS shown in the postfix (see steps_per_second)
    return tqdm(total=args.total_timesteps, initial=initial, unit="step", disable=not args.progress,
                desc=f"{args.algo} {args.env_id} seed {args.seed}", dynamic_ncols=True, mininterval=0.5,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")


def _evaluate(actor: torch.nn.Module, eval_env, args: Args, logger: MetricLogger, progress: Progress,
              step: int) -> None:
    """Evaluate ``actor`` (deterministic, on raw observations), log and plot."""
    returns = evaluate(actor, eval_env, args.eval_episodes, args.seed)
    mean = float(returns.mean())
    progress.last_eval = mean
    progress.best_eval = mean if progress.best_eval is None else max(progress.best_eval, mean)
    logger.log(step, {"eval/mean_return": mean, "eval/std_return": float(returns.std()),
                      "eval/returns": returns.tolist()})
    logger.flush()
    plot_run(list(read_metrics(logger.path.parent)), logger.path.parent / PLOT_FILE,
             f"{args.label} on {args.env_id}, seed {args.seed}")


def _checkpoint(out_dir: Path, args: Args, agent: OffPolicyAgent, rb: ReplayBuffer, recorder: EpisodeRecorder,
                obs: np.ndarray, env, logger: MetricLogger, progress: Progress) -> None:
    save_checkpoint(out_dir, {
        "args": args.to_dict(),
        "global_step": progress.global_step,
        "progress": vars(progress).copy(),
        "agent": agent.state_dict(),
        "buffer": rb.state_dict(include_data=args.save_buffer),
        "episode": recorder.state_dict(obs),
        "rng": {"global": global_rng_state(), "action_space": env.action_space.np_random.bit_generator.state},
        "metrics_bytes": logger.flush(),
    })


def _restore(checkpoint: dict[str, Any], agent: OffPolicyAgent, rb: ReplayBuffer, recorder: EpisodeRecorder, env,
             progress: Progress, args: Args) -> np.ndarray:
    """Load everything from ``checkpoint``; returns the observation to continue from."""
    agent.load_state_dict(checkpoint["agent"])
    rb.load_state_dict(checkpoint["buffer"])
    if "data" not in checkpoint["buffer"]:
        warnings.warn("the checkpoint has no replay buffer (saved with save_buffer=False): the run "
                      f"refills it for {args.learning_starts} steps and will not match an uninterrupted run",
                      RuntimeWarning, stacklevel=3)
    for key, value in checkpoint["progress"].items():
        setattr(progress, key, value)
    obs = recorder.restore(env, checkpoint["episode"])
    set_global_rng_state(checkpoint["rng"]["global"])
    env.action_space.np_random.bit_generator.state = checkpoint["rng"]["action_space"]
    return obs


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` through a temporary file and a rename (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _record_extension(out_dir: Path, checkpoint: dict[str, Any], args: Args, command: str | None,
                      noise_record: dict[str, str]) -> None:
    """A resume that changes total_timesteps: ``run.json`` gets the new arguments (and keeps the noise
    model's hash) and a record of the change, and a summary of the shorter run no longer describes the run."""
    before = checkpoint["args"]["total_timesteps"]
    if args.total_timesteps == before:
        return
    try:
        extensions = json.loads((out_dir / RUN_FILE).read_text()).get(EXTENSIONS_KEY, [])
    except (OSError, ValueError):
        extensions = []
    extensions.append({"from_steps": before, "to_steps": args.total_timesteps,
                       "at_step": checkpoint["global_step"], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "command": command})
    _write_json(out_dir / RUN_FILE, {**args.to_dict(), **noise_record, EXTENSIONS_KEY: extensions})
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)


def _finish(out_dir: Path, args: Args, progress: Progress) -> dict[str, Any]:
    records = list(read_metrics(out_dir))
    cosines = [r["qtdnn/grad_cosine"] for r in records if r.get("qtdnn/grad_cosine") is not None]
    steps = max(progress.global_step, 1)
    summary = {
        "algo": args.algo, "env_id": args.env_id, "seed": args.seed, "label": args.label,
        "total_timesteps": progress.global_step, "episodes": progress.episodes,
        "final_eval": progress.last_eval, "best_eval": progress.best_eval,
        "train_seconds": progress.train_seconds, "wall_seconds": progress.wall_seconds,
        "sps": steps_per_second(progress.global_step, progress.train_seconds),
        "sps_learning": progress.learning_steps / progress.learning_seconds if progress.learning_steps else None,
        "circuit_executions": progress.circuit_executions,
        "grad_cosine_mean": float(np.mean(cosines)) if cosines else None,
        "time_ms_per_step": {k.removeprefix("time/").removesuffix("_ms"): v
                             for k, v in per_step_ms(progress.time_totals, steps).items()},
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
