"""The training loop of TD3 and hDQNN-TD3: act, step, store, update, log, evaluate, checkpoint.

A run folder holds ``run.json`` (arguments), ``metrics.jsonl`` and ``tb/`` (logs), ``checkpoint.pt``
(the latest atomic checkpoint), ``learning_curve.png`` and, once finished, ``summary.json``.
``train(resume=DIR)`` continues a run from its checkpoint; on the CPU the result is bit-identical
to an uninterrupted run with the same seed (the replay buffer must be in the checkpoint for that).
"""
from __future__ import annotations

import json
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends import set_num_threads as set_engine_threads
from .args import Args
from .buffer import ReplayBuffer
from .checkpoint import (checkpoint_path, global_rng_state, load_checkpoint, save_checkpoint, seed_everything,
                         set_global_rng_state)
from .envs import EpisodeRecorder, make_env
from .evaluate import evaluate
from .metrics import PLOT_FILE, RUN_FILE, SUMMARY_FILE, MetricLogger, read_metrics
from .networks import box_dims
from .plots import plot_run
from .td3 import TD3
from .timing import per_step_ms

#: Training episodes in the progress bar's "recent return".
RECENT_EPISODES = 10
#: Arguments a resumed run may change: they do not affect what is computed.
RESUMABLE_OVERRIDES = ("total_timesteps", "progress", "tensorboard")


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
    """seconds per step part over the whole run (see ``TD3.take_timings``)"""


def default_out_dir(args: Args) -> str:
    return f"runs/{args.env_id}__{args.algo}__{args.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def train(args: Args | None = None, *, resume: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Train one run (or continue ``resume``) and return its summary (also in ``summary.json``).

    ``overrides`` replace fields of ``args``; with ``resume`` only ``RESUMABLE_OVERRIDES`` may be given.
    """
    checkpoint = None
    if resume is not None:
        bad = set(overrides) - set(RESUMABLE_OVERRIDES)
        if args is not None or bad:
            raise ValueError(f"a resumed run keeps its arguments; only {', '.join(RESUMABLE_OVERRIDES)} may change"
                             + (f" (got {', '.join(sorted(bad))})" if bad else ""))
        checkpoint = load_checkpoint(resume)
        args = Args.from_dict({**checkpoint["args"], "out_dir": str(resume), **overrides})
    else:
        args = Args.from_dict({**(args or Args()).to_dict(), **overrides})
        args.out_dir = args.out_dir or default_out_dir(args)
        if checkpoint_path(args.out_dir).exists():
            raise ValueError(f"{args.out_dir!r} already holds a run with a checkpoint: continue it with "
                             "resume (hdqnn train --resume DIR) or choose another output folder")
    if checkpoint is not None and args.total_timesteps < checkpoint["global_step"]:
        raise ValueError(f"the checkpoint is at step {checkpoint['global_step']}, past total_timesteps "
                         f"{args.total_timesteps}")

    torch.set_num_threads(args.threads)
    set_engine_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- environment, agent, buffer
    env = make_env(args.env_id)
    eval_env = make_env(args.env_id)
    obs_dim, act_dim = box_dims(env)
    seed_everything(args.seed)
    env.action_space.seed(args.seed)
    agent = TD3(args, obs_dim, env.action_space)
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, seed=args.seed)
    recorder = EpisodeRecorder(args.seed)
    progress = Progress()
    if checkpoint is None:
        (out_dir / RUN_FILE).write_text(json.dumps(args.to_dict(), indent=2) + "\n")
        obs = recorder.reset(env)
        logger = MetricLogger(out_dir, tensorboard=args.tensorboard, truncate_to=0)
    else:
        obs = _restore(checkpoint, agent, rb, recorder, env, progress, args)
        logger = MetricLogger(out_dir, tensorboard=args.tensorboard, truncate_to=checkpoint["metrics_bytes"])
    executions_offset = progress.circuit_executions - agent.circuit_executions()
    session_start, wall_offset = time.perf_counter(), progress.wall_seconds

    # ---------------------------------------------------------------- the loop
    recent = deque(progress.recent_returns, maxlen=RECENT_EPISODES)
    bar = _progress_bar(args, progress.global_step)
    window_start, window_steps, metrics = time.perf_counter(), 0, {}
    try:
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
                metrics.update(agent.update(rb.sample(args.batch_size)))

            step = progress.global_step = global_step + 1
            step_seconds = time.perf_counter() - step_start
            progress.train_seconds += step_seconds
            if learning:
                progress.learning_steps += 1
                progress.learning_seconds += step_seconds
            window_steps += 1
            if step % args.log_freq == 0 or step == args.total_timesteps:
                seconds = agent.take_timings()
                for part, s in seconds.items():
                    progress.time_totals[part] = progress.time_totals.get(part, 0.0) + s
                sps = window_steps / max(time.perf_counter() - window_start, 1e-9)
                progress.circuit_executions = executions_offset + agent.circuit_executions()
                logger.log(step, {**metrics, "charts/SPS": sps, **per_step_ms(seconds, window_steps),
                                  "quantum/circuit_executions": progress.circuit_executions})
                bar.set_postfix(SPS=f"{sps:.0f}", ret=f"{np.mean(recent):.0f}" if recent else "-",
                                eval="-" if progress.last_eval is None else f"{progress.last_eval:.0f}")
                window_start, window_steps, metrics = time.perf_counter(), 0, {}
            if step % args.eval_freq == 0 or step == args.total_timesteps:
                _evaluate(agent, eval_env, args, logger, progress, step)
            if step % args.checkpoint_freq == 0 or step == args.total_timesteps:
                progress.recent_returns = list(recent)
                progress.wall_seconds = wall_offset + time.perf_counter() - session_start
                _checkpoint(out_dir, args, agent, rb, recorder, obs, env, logger, progress)
            bar.update(1)
    finally:
        bar.close()
        logger.close()
        env.close()
        eval_env.close()
    progress.wall_seconds = wall_offset + time.perf_counter() - session_start
    return _finish(out_dir, args, progress)


# -------------------------------------------------------------------- helpers of the loop
def _progress_bar(args: Args, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=args.total_timesteps, initial=initial, unit="step", disable=not args.progress,
                desc=f"{args.algo} {args.env_id} seed {args.seed}", dynamic_ncols=True, mininterval=0.5)


def _evaluate(agent: TD3, eval_env, args: Args, logger: MetricLogger, progress: Progress, step: int) -> None:
    returns = evaluate(agent.actor, eval_env, args.eval_episodes, args.seed)
    mean = float(returns.mean())
    progress.last_eval = mean
    progress.best_eval = mean if progress.best_eval is None else max(progress.best_eval, mean)
    logger.log(step, {"eval/mean_return": mean, "eval/std_return": float(returns.std()),
                      "eval/returns": returns.tolist()})
    logger.flush()
    plot_run(list(read_metrics(logger.path.parent)), logger.path.parent / PLOT_FILE,
             f"{args.label} on {args.env_id}, seed {args.seed}")


def _checkpoint(out_dir: Path, args: Args, agent: TD3, rb: ReplayBuffer, recorder: EpisodeRecorder,
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


def _restore(checkpoint: dict[str, Any], agent: TD3, rb: ReplayBuffer, recorder: EpisodeRecorder, env,
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


def _finish(out_dir: Path, args: Args, progress: Progress) -> dict[str, Any]:
    records = list(read_metrics(out_dir))
    cosines = [r["qtdnn/grad_cosine"] for r in records if r.get("qtdnn/grad_cosine") is not None]
    steps = max(progress.global_step, 1)
    summary = {
        "algo": args.algo, "env_id": args.env_id, "seed": args.seed, "label": args.label,
        "total_timesteps": progress.global_step, "episodes": progress.episodes,
        "final_eval": progress.last_eval, "best_eval": progress.best_eval,
        "train_seconds": progress.train_seconds, "wall_seconds": progress.wall_seconds,
        "sps": progress.global_step / max(progress.train_seconds, 1e-9),
        "sps_learning": progress.learning_steps / progress.learning_seconds if progress.learning_steps else None,
        "circuit_executions": progress.circuit_executions,
        "grad_cosine_mean": float(np.mean(cosines)) if cosines else None,
        "time_ms_per_step": {k.removeprefix("time/").removesuffix("_ms"): v
                             for k, v in per_step_ms(progress.time_totals, steps).items()},
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
