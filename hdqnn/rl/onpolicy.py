"""The training loop of PPO and its hDQNN variants: vectorised environments, rollouts, updates, logs,
evaluations and checkpoints, in the run folder that ``train`` describes (``hdqnn/rl/train.py``).

The environments are ``num_envs`` copies of the run's env in a ``gymnasium.vector.SyncVectorEnv``
with same-step autoreset (an ended episode's final observation is in the step's infos, for
bootstrapping a truncation), each sub-env clipping its actions (``ClipAction``) and recording its
episode for checkpoints (``RecordedEnv``). Around them, as CleanRL's continuous PPO: observations
normalised by a running mean and variance (``NormalizeObservation``: one set of statistics for all
envs, so that evaluations and policies apply one, frozen) and clipped to +-10; rewards scaled by
the running std of the discounted return (gymnasium's vector ``NormalizeReward``) and clipped to +-10.

Each step of the envs is ``num_envs`` env steps and one batched actor call. A checkpoint holds the
rollout so far, the statistics of both normalisations and each env's episode (rebuilt by replaying
its actions): resuming on the CPU is bit-identical to an uninterrupted run. SIGINT/SIGTERM stop the
run after the current step (whose update, if it completes a rollout, included) with a checkpoint.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.utils import RunningMeanStd

from .agents import make_agent
from .args import Args
from .checkpoint import global_rng_state, save_checkpoint, seed_everything, set_global_rng_state
from .envs import EpisodeRecorder, make_env
from .metrics import RUN_FILE, MetricLogger
from .ppo import (NORMALIZATION_CLIP, PPO, NormalizedActor, ObservationNormalizer, RolloutBuffer,
                  annealed_learning_rate, normalize_observations)
from .train import (RECENT_EPISODES, Progress, _evaluate, _finish, _LogWindow, _progress_bar, _record_extension,
                    _stop_if_signalled, _StopSignals, _take_timings, _write_json)


# --------------------------------------------------------------------------------- environments
class RecordedEnv(gym.Wrapper):
    """A sub-env that remembers its current episode (an ``EpisodeRecorder``) so that a checkpoint can
    rebuild it. The vector env's first reset of sub-env i passes the seed ``seed + i``, which is the
    recorder's own; its autoresets pass none, and the recorder resets from the env's RNG."""

    def __init__(self, env: gym.Env, seed: int):
        super().__init__(env)
        self.recorder = EpisodeRecorder(seed)
        self.obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.obs = self.recorder.reset(self.env)
        return self.obs, {}

    def step(self, action):
        self.obs, reward, terminated, truncated, info = self.recorder.step(self.env, action)
        return self.obs, reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return self.recorder.state_dict(self.obs)

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild the episode of ``state`` (a ``state_dict``) by replaying it."""
        self.obs = self.recorder.restore(self.env, state)


class NormalizeObservation(gym.vector.VectorWrapper):
    """Observations normalised by one running mean and variance over every env's observations (float64,
    gymnasium's ``RunningMeanStd``, updated by each step's and reset's batch), then clipped
    (``ppo.normalize_observations``). The final observations of ended episodes (``infos["final_obs"]``
    of same-step autoreset, which gymnasium's observation wrappers refuse) are normalised without
    updating the statistics."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.obs_rms = RunningMeanStd(shape=self.single_observation_space.shape)
        self.single_observation_space = gym.spaces.Box(-NORMALIZATION_CLIP, NORMALIZATION_CLIP,
                                                       self.single_observation_space.shape, np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        return normalize_observations(observations, self.obs_rms.mean, self.obs_rms.var)

    def _update_and_normalize(self, observations: np.ndarray) -> np.ndarray:
        self.obs_rms.update(np.asarray(observations, dtype=np.float64))
        return self.normalize(observations)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._update_and_normalize(obs), infos

    def step(self, actions):
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if "final_obs" in infos:
            final = infos["final_obs"].copy()
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = self.normalize(final[i])
            infos["final_obs"] = final
        return self._update_and_normalize(obs), rewards, terminations, truncations, infos


@dataclass
class VectorEnvs:
    """The run's vectorised environments and the wrappers whose state a checkpoint keeps."""

    envs: gym.vector.VectorEnv
    """the outermost wrapper: reset and step here"""
    sync: gym.vector.SyncVectorEnv
    obs_norm: NormalizeObservation | None
    reward_norm: gym.wrappers.vector.NormalizeReward | None
    seed: int
    action_space: gym.spaces.Box
    """one env's action space (the sub-envs' is ClipAction's unbounded one)"""

    def reset(self) -> torch.Tensor:
        """The first observations [N, obs_dim] of a fresh run (sub-env i seeded with seed + i)."""
        obs, _ = self.envs.reset(seed=self.seed)
        return torch.as_tensor(obs, dtype=torch.float32)

    def normalization_state(self) -> dict[str, Any]:
        """The running statistics (None where a normalisation is off): ``load_policy`` reads the
        observations' mean and var."""
        state: dict[str, Any] = {"observation": None, "reward": None}
        if self.obs_norm is not None:
            rms = self.obs_norm.obs_rms
            state["observation"] = {"mean": torch.from_numpy(rms.mean.copy()), "var": torch.from_numpy(rms.var.copy()),
                                    "count": float(rms.count)}
        if self.reward_norm is not None:
            rms = self.reward_norm.return_rms
            state["reward"] = {"mean": float(rms.mean), "var": float(rms.var), "count": float(rms.count),
                               "accumulated": torch.from_numpy(self.reward_norm.accumulated_reward.copy())}
        return state

    def state_dict(self, obs: torch.Tensor) -> dict[str, Any]:
        """Each sub-env's episode so far and ``obs``, the observations the agent acts on next."""
        return {"episodes": [env.state_dict() for env in self.sync.envs], "obs": obs.clone()}

    def restore(self, state: dict[str, Any], normalization: dict[str, Any]) -> torch.Tensor:
        """Rebuild the envs of ``state_dict`` and the statistics of ``normalization_state``; returns
        the observations to act on."""
        self.envs.reset(seed=self.seed)  # sets up the vector env; its episodes and statistics are replaced
        for env, episode in zip(self.sync.envs, state["episodes"], strict=True):
            env.restore(episode)
        if self.obs_norm is not None:
            saved, rms = normalization["observation"], self.obs_norm.obs_rms
            rms.mean, rms.var, rms.count = saved["mean"].numpy().copy(), saved["var"].numpy().copy(), saved["count"]
        if self.reward_norm is not None:
            saved, rms = normalization["reward"], self.reward_norm.return_rms
            rms.mean, rms.var, rms.count = np.float64(saved["mean"]), np.float64(saved["var"]), saved["count"]
            self.reward_norm.accumulated_reward[:] = saved["accumulated"].numpy()
        return state["obs"].clone()

    def acting_policy(self, actor: torch.nn.Module) -> torch.nn.Module:
        """``actor`` as it acts on raw observations: behind the normalisation, frozen at its statistics now."""
        if self.obs_norm is None:
            return actor
        rms = self.obs_norm.obs_rms
        return NormalizedActor(ObservationNormalizer(torch.from_numpy(rms.mean), torch.from_numpy(rms.var)), actor)

    def close(self) -> None:
        self.envs.close()


def make_vector_env(args: Args) -> VectorEnvs:
    """``args.num_envs`` envs of ``args.env_id`` with PPO's wrappers (see the module doc)."""
    env = make_env(args.env_id)  # a bad id or space fails here, with make_env's message, not in a sub-env
    action_space = env.action_space
    env.close()

    def sub_env(index: int):
        return lambda: RecordedEnv(gym.wrappers.ClipAction(make_env(args.env_id)), args.seed + index)

    sync = gym.vector.SyncVectorEnv([sub_env(i) for i in range(args.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs: gym.vector.VectorEnv = sync
    obs_norm = reward_norm = None
    if args.normalize_observation:
        envs = obs_norm = NormalizeObservation(envs)
    if args.normalize_reward:
        envs = reward_norm = gym.wrappers.vector.NormalizeReward(envs, gamma=args.gamma)
        envs = gym.wrappers.vector.ClipReward(envs, -NORMALIZATION_CLIP, NORMALIZATION_CLIP)
    return VectorEnvs(envs, sync, obs_norm, reward_norm, args.seed, action_space)


def crossed(step: int, freq: int, num_envs: int) -> bool:
    """Whether the last ``num_envs`` steps up to ``step`` passed a multiple of ``freq``."""
    return step // freq > (step - num_envs) // freq


# --------------------------------------------------------------------------------- the loop
def train_on_policy(args: Args, checkpoint: dict[str, Any] | None, out_dir: Path, command: str | None,
                    noise_record: dict[str, str]) -> dict[str, Any]:
    """``train``'s work for PPO, once the run folder is locked and ``args`` settled (a fresh run's, or
    the resumed ``checkpoint``'s); returns the summary."""
    vec = make_vector_env(args)
    eval_env = make_env(args.env_id)
    obs_dim = int(np.prod(vec.sync.single_observation_space.shape))
    act_dim = int(vec.action_space.shape[0])
    seed_everything(args.seed)
    agent: PPO = make_agent(args, obs_dim, vec.action_space)
    rollout = RolloutBuffer(args.num_steps, args.num_envs, obs_dim, act_dim)
    progress = Progress()
    if checkpoint is None:
        _write_json(out_dir / RUN_FILE, {**args.to_dict(), **noise_record})
        obs = vec.reset()
        logger = MetricLogger(out_dir, tensorboard=args.tensorboard, truncate_to=0)
    else:
        # restore first: a checkpoint that cannot be restored must leave the folder as it was
        obs = _restore(checkpoint, agent, rollout, vec, progress)
        _record_extension(out_dir, checkpoint, args, command, noise_record)
        logger = MetricLogger(out_dir, tensorboard=args.tensorboard, truncate_to=checkpoint["metrics_bytes"])
    executions_offset = progress.circuit_executions - agent.circuit_executions()
    session_start, wall_offset = time.perf_counter(), progress.wall_seconds
    rollout_size = args.num_steps * args.num_envs
    num_iterations = args.total_timesteps // rollout_size

    def save(final_timings: bool = False) -> None:
        if final_timings:  # a stop between logging steps: the timings and count since the last log
            _take_timings(agent, progress)
            progress.circuit_executions = executions_offset + agent.circuit_executions()
        progress.recent_returns = list(recent)
        progress.wall_seconds = wall_offset + time.perf_counter() - session_start
        with stop.saving():
            _checkpoint(out_dir, args, agent, rollout, vec, obs, logger, progress)

    recent = deque(progress.recent_returns, maxlen=RECENT_EPISODES)
    bar = _progress_bar(args, progress.global_step)
    window = _LogWindow(progress)
    stop = _StopSignals()
    try:
        stop.install()
        for global_step in range(progress.global_step, args.total_timesteps, args.num_envs):
            step_start = time.perf_counter()
            with agent.timer("act"):
                actions, logprobs, values = agent.act(obs)
            with agent.timer("env"):
                next_obs, rewards, terminations, truncations, infos = vec.envs.step(actions.numpy())
            with agent.timer("act"):
                final_values = _final_values(agent, infos, terminations, truncations)
            step = progress.global_step = global_step + args.num_envs
            rollout.add(obs=obs, actions=actions, logprobs=logprobs, values=values,
                        rewards=torch.as_tensor(rewards, dtype=torch.float32),
                        dones=torch.as_tensor(terminations | truncations, dtype=torch.float32),
                        final_values=final_values)
            obs = torch.as_tensor(next_obs, dtype=torch.float32)
            for episode_return, length in _finished_episodes(infos):
                progress.episodes += 1
                recent.append(episode_return)
                logger.log(step, {"charts/episodic_return": episode_return, "charts/episodic_length": length})

            if rollout.full:
                iteration = step // rollout_size
                lr = (annealed_learning_rate(args.learning_rate, iteration, num_iterations) if args.anneal_lr
                      else args.learning_rate)
                window.metrics.update(agent.update(rollout, agent.value(obs), lr))
                rollout.clear()

            step_seconds = time.perf_counter() - step_start
            progress.train_seconds += step_seconds
            progress.learning_steps += args.num_envs  # no warm-up: every step is part of learning
            progress.learning_seconds += step_seconds
            window.steps += args.num_envs
            if crossed(step, args.log_freq, args.num_envs) or step == args.total_timesteps:
                window.log(step, agent, logger, bar, recent, executions_offset)
            if crossed(step, args.eval_freq, args.num_envs) or step == args.total_timesteps:
                _evaluate(vec.acting_policy(agent.actor), eval_env, args, logger, progress, step)
            saved = crossed(step, args.checkpoint_freq, args.num_envs) or step == args.total_timesteps
            if saved:
                save()
            bar.update(args.num_envs)
            _stop_if_signalled(stop, saved, save, out_dir, step, args.total_timesteps)
    finally:
        stop.uninstall()
        bar.close()
        logger.close()
        vec.close()
        eval_env.close()
    progress.wall_seconds = wall_offset + time.perf_counter() - session_start
    return _finish(out_dir, args, progress)


def _final_values(agent: PPO, infos: dict[str, Any], terminations: np.ndarray,
                  truncations: np.ndarray) -> torch.Tensor:
    """[N]: V of the (normalised) final observation where an episode was truncated and not
    terminated, 0 elsewhere (``RolloutBuffer.final_values``); one critic call for those envs."""
    final_values = torch.zeros(len(terminations))
    bootstrapped = np.flatnonzero(truncations & ~terminations)
    if len(bootstrapped):
        final_obs = np.stack([infos["final_obs"][i] for i in bootstrapped])
        final_values[bootstrapped] = agent.value(torch.as_tensor(final_obs, dtype=torch.float32))
    return final_values


def _finished_episodes(infos: dict[str, Any]) -> list[tuple[float, int]]:
    """(return, length) of the episodes that ended in this step, in env order (raw rewards:
    ``RecordEpisodeStatistics`` sits inside the normalisation)."""
    if "final_info" not in infos:
        return []
    final = infos["final_info"]
    if "episode" not in final:
        return []
    episode, ended = final["episode"], final["_episode"]
    return [(float(episode["r"][i]), int(episode["l"][i])) for i in np.flatnonzero(ended)]


def _checkpoint(out_dir: Path, args: Args, agent: PPO, rollout: RolloutBuffer, vec: VectorEnvs, obs: torch.Tensor,
                logger: MetricLogger, progress: Progress) -> None:
    save_checkpoint(out_dir, {
        "args": args.to_dict(),
        "global_step": progress.global_step,
        "progress": vars(progress).copy(),
        "agent": agent.state_dict(),
        "rollout": rollout.state_dict(),
        "envs": vec.state_dict(obs),
        "normalization": vec.normalization_state(),
        "rng": {"global": global_rng_state()},
        "metrics_bytes": logger.flush(),
    })


def _restore(checkpoint: dict[str, Any], agent: PPO, rollout: RolloutBuffer, vec: VectorEnvs,
             progress: Progress) -> torch.Tensor:
    """Load everything from ``checkpoint``; returns the observations to continue from."""
    agent.load_state_dict(checkpoint["agent"])
    rollout.load_state_dict(checkpoint["rollout"])
    for key, value in checkpoint["progress"].items():
        setattr(progress, key, value)
    obs = vec.restore(checkpoint["envs"], checkpoint["normalization"])
    set_global_rng_state(checkpoint["rng"]["global"])
    return obs
