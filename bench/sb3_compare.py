"""hdqnn's classical TD3 and SAC (and PPO) side by side with Stable-Baselines3's (issue 14, item 2).

Each (library, algorithm, seed) trains in its own process with one torch thread, ``--jobs`` at a
time, with the same hyperparameters (``sb3_kwargs`` maps hdqnn's :class:`hdqnn.rl.Args` to SB3's
constructor arguments), the same seeds and the same budget. Jobs are ordered so that the two
libraries' runs of one (algorithm, seed) run at the same time: with ``--jobs 2`` they share the
machine's load, and their steps per second compare.

Evaluation is one protocol for both libraries (``evaluate_policy``): deterministic actions (TD3's
actor, SAC's squashed mean, PPO's Gaussian mean on observations normalised by the frozen running
statistics) on hdqnn's evaluation episodes (``env.reset(seed=run seed +
EVAL_SEED_OFFSET + episode)``, the env made by ``hdqnn.rl.make_env``). The learning curve is
evaluated every ``eval_freq`` steps with ``eval_episodes`` episodes (hdqnn's defaults, 2,000 and
5: hdqnn's own evaluations during training, and an SB3 callback that evaluates the same way), the
final score with ``--final-episodes`` episodes after training. For hdqnn the script also checks
that the shared evaluation reproduces hdqnn's own final evaluation (``protocol_check``, 0 when
the protocols agree).

Steps per second: env steps / seconds of training, evaluations excluded (hdqnn's ``summary.sps``:
acting, env steps and updates; SB3: the time in ``learn`` less the callback's evaluations).

Statistics per algorithm over seeds (the final score of a seed is its mean return over the final
episodes): mean with a 95% t-interval, IQM (``hdqnn.rl.compare.iqm``, which is the plain mean for
fewer than 4 seeds), the difference of means (hdqnn - SB3) with its Welch 95% interval, Welch's
t-test and the exact Mann-Whitney U test. With 3 seeds per side these tests have little power
(the exact two-sided Mann-Whitney p-value cannot go below 0.1): a large p-value says the data do
not show a difference, not that there is none; the interval of the difference says how large a
difference the data still allow.

Usage::

    python bench/sb3_compare.py --env Pendulum-v1 --algos td3 sac --seeds 1 2 3 --steps 10000 \\
        --jobs 2 --out bench/out/sb3_pendulum
    python bench/sb3_compare.py --env Hopper-v4 --algos td3 sac --steps 15000 \\
        --set learning_starts=5000 --out bench/out/sb3_hopper

PPO's budget must be a whole number of rollouts (num_envs * num_steps; SB3 finishes the rollout it
is in). Writes ``OUT.md`` (the report, also printed), ``OUT.json`` (every run's record), ``OUT.png``
(learning curves), and one small record per run in ``OUT_runs/`` (a re-run skips the runs
recorded there; ``--force`` re-runs them). hdqnn's run folders live in a temporary folder.
Needs ``pip install stable-baselines3`` (``pip install -e .[bench]``) and scipy.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

LIBRARIES = ("hdqnn", "sb3")
#: Algorithms compared; ``ppo`` only where hdqnn's Args has PPO's fields (see ``ppo_available``).
ALGOS = ("td3", "sac", "ppo")
CONFIDENCE = 0.95
#: Episodes of the final evaluation (``hdqnn eval``'s default).
FINAL_EPISODES = 10
#: hdqnn settings that the comparison changes from hdqnn's defaults, and why: SB3's SAC steps its
#: actor (and entropy coefficient) once with every critic step; hdqnn's default (CleanRL's
#: policy_frequency=2) makes the same number of actor steps, two at a time.
COMPARISON_OVERRIDES: dict[str, dict[str, Any]] = {"sac": {"policy_delay": 1}}
#: Where the implementations differ beyond the hyperparameters (printed with the report).
KNOWN_DIFFERENCES = {
    "off-policy": ["SB3 makes its first gradient step one env step later than hdqnn (after learning_starts + 1 "
                   "transitions), so one update fewer in total",
                   "SB3's critics take actions scaled to [-1, 1]; hdqnn's take them in env units (Pendulum: "
                   "[-2, 2])"],
    "sac": ["SB3 steps the entropy coefficient and the actor before the critics in each update (CleanRL, "
            "and so hdqnn, the critics first); SB3's coefficient loss is linear in log(alpha), hdqnn's in alpha",
            "log-std bounds: SB3 clips to [-20, 2], hdqnn maps tanh into [-5, 2] (CleanRL's)"],
    "ppo": ["SB3 sets each rollout's learning rate from the progress after collecting it, CleanRL (hdqnn) "
            "before",
            "value clipping: SB3 takes the loss of the clipped value only, CleanRL (hdqnn) the larger of the "
            "clipped and unclipped losses",
            "target_kl (off by default): SB3 stops within an epoch at 1.5 x target_kl, CleanRL (hdqnn) after "
            "the epoch",
            "reward normalisation: SB3's VecNormalize restarts its running discounted return at every episode "
            "end; gymnasium's vector NormalizeReward (hdqnn's) in its default autoreset mode not at a truncation"],
}
POWER_NOTE = ("With {n} seeds per library the tests have little power: the exact two-sided Mann-Whitney "
              "p-value cannot go below {mw_floor}, and Welch's test detects only differences of a few "
              "standard deviations. A large p-value means the data do not show a difference, not that the "
              "libraries are equivalent; the 95% interval of the difference bounds what the data still allow.")


# ---------------------------------------------------------------------------------- statistics
def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (at least 2 values)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {x.size}")
    half = stats.t.ppf(0.5 + confidence / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


@dataclasses.dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of mean(a) - mean(b)."""

    difference: float
    t: float
    df: float
    p_value: float
    ci: tuple[float, float]


def welch_test(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> WelchResult:
    """Welch's t-test (two-sided) and the confidence interval of mean(a) - mean(b), with the
    Welch-Satterthwaite degrees of freedom. Two samples of at least 2 values, not both constant."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's test needs at least 2 values per sample, got {x.size} and {y.size}")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0.0:
        raise ValueError("Welch's test is undefined for two constant samples")
    difference = float(x.mean() - y.mean())
    se = math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    t = difference / se
    half = stats.t.ppf(0.5 + confidence / 2.0, df) * se
    return WelchResult(difference, t, df, float(2.0 * stats.t.sf(abs(t), df)), (difference - half, difference + half))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (scipy's; exact for small samples without ties)."""
    from scipy import stats

    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def mann_whitney_floor(n_a: int, n_b: int) -> float:
    """The smallest two-sided exact Mann-Whitney p-value of samples of n_a and n_b values."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


# ---------------------------------------------------------------------------------- hyperparameters
def ppo_available() -> bool:
    """Whether this hdqnn trains PPO (its Args has PPO's algorithm and fields)."""
    from hdqnn.rl.args import ALGOS as HDQNN_ALGOS, Args

    return "ppo" in HDQNN_ALGOS and all(hasattr(Args, f) for f in PPO_FIELDS)


#: hdqnn's PPO fields (CleanRL's names) that map onto SB3's PPO.
PPO_FIELDS = ("num_envs", "num_steps", "gae_lambda", "clip_coef", "clip_vloss", "update_epochs", "num_minibatches",
              "norm_adv", "ppo_ent_coef", "vf_coef", "max_grad_norm", "target_kl", "anneal_lr",
              "normalize_observation", "normalize_reward")


def hdqnn_args(algo: str, env_id: str, seed: int, steps: int, out_dir: str,
               overrides: dict[str, Any] | None = None):
    """hdqnn's Args of one comparison run: hdqnn's defaults, ``COMPARISON_OVERRIDES``, then
    ``overrides`` (``--set``); one thread, no progress bar, no TensorBoard, one checkpoint."""
    from hdqnn.rl import Args

    return Args(**{"algo": algo, "env_id": env_id, "seed": seed, "total_timesteps": steps, "out_dir": out_dir,
                   "threads": 1, "progress": False, "tensorboard": False, "checkpoint_freq": steps,
                   **COMPARISON_OVERRIDES.get(algo, {}), **(overrides or {})})


def sb3_kwargs(args, act_dim: int) -> dict[str, Any]:
    """SB3's constructor arguments (besides the policy and env) equal to hdqnn's ``args``.

    Off-policy: train_freq=1 and gradient_steps=1 (hdqnn updates once per env step), the same
    networks (ReLU MLPs of ``hidden_sizes`` for actor and critics), learning rate, buffer,
    batch, learning_starts, gamma, tau, seed; TD3 its policy delay, target smoothing noise and
    Gaussian exploration noise (both libraries give them as fractions of the action range's
    half-width); SAC its entropy coefficient and target update interval. ValueError for an
    algorithm or setting SB3 cannot reproduce.
    """
    from hdqnn.rl.args import parse_ent_coef

    if args.algo not in ALGOS:
        raise ValueError(f"only the classical algorithms {', '.join(ALGOS)} have an SB3 twin; got {args.algo!r}")
    hidden = list(args.hidden_sizes)
    if args.algo == "ppo":
        return _sb3_ppo_kwargs(args, hidden)
    common = dict(learning_rate=args.learning_rate, buffer_size=args.buffer_size, learning_starts=args.learning_starts,
                  batch_size=args.batch_size, tau=args.tau, gamma=args.gamma, train_freq=1, gradient_steps=1,
                  seed=args.seed, device="cpu")
    if args.algo == "td3":
        from stable_baselines3.common.noise import NormalActionNoise

        noise = NormalActionNoise(mean=np.zeros(act_dim), sigma=args.exploration_noise * np.ones(act_dim))
        return {**common, "policy_delay": args.policy_delay, "target_policy_noise": args.target_policy_noise,
                "target_noise_clip": args.target_noise_clip, "action_noise": noise,
                "policy_kwargs": {"net_arch": {"pi": hidden, "qf": hidden}}}
    if args.policy_delay != 1:
        raise ValueError(f"SB3's SAC steps its actor once per critic step; hdqnn's SAC with policy_delay="
                         f"{args.policy_delay} has no SB3 twin (compare with policy_delay=1)")
    auto, initial = parse_ent_coef(args.ent_coef)
    return {**common, "ent_coef": str(args.ent_coef) if auto else initial, "target_entropy": "auto",
            "target_update_interval": args.target_network_frequency, "policy_kwargs": {"net_arch": hidden}}


class LinearSchedule:
    """SB3's learning-rate schedule for CleanRL's annealing: the rate falls linearly to 0 over the run."""

    def __init__(self, initial: float):
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial

    def __repr__(self) -> str:
        return f"linear({self.initial:g} -> 0)"


def _sb3_ppo_kwargs(args, hidden: list[int]) -> dict[str, Any]:
    """SB3's PPO arguments of hdqnn's PPO (CleanRL's names -> SB3's): a rollout of num_steps per env,
    minibatches of num_envs * num_steps / num_minibatches, separate tanh policy and value MLPs with
    orthogonal initialisation (SB3's default, CleanRL's gains), the value loss weighted alike."""
    import torch

    batch = args.num_envs * args.num_steps
    if batch % args.num_minibatches:
        raise ValueError(f"SB3's PPO needs equal minibatches: num_envs * num_steps = {batch} is not a multiple of "
                         f"num_minibatches = {args.num_minibatches}")
    return dict(
        learning_rate=LinearSchedule(args.learning_rate) if args.anneal_lr else args.learning_rate,
        n_steps=args.num_steps, batch_size=batch // args.num_minibatches, n_epochs=args.update_epochs,
        gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_coef,
        clip_range_vf=args.clip_coef if args.clip_vloss else None, normalize_advantage=args.norm_adv,
        ent_coef=args.ppo_ent_coef,
        vf_coef=args.vf_coef / 2.0,  # SB3's value loss is the plain MSE; CleanRL's (hdqnn's) is half of it
        max_grad_norm=args.max_grad_norm, target_kl=args.target_kl or None, seed=args.seed, device="cpu",
        policy_kwargs={"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": torch.nn.Tanh})


def sb3_env(args):
    """SB3's training env for ``args``: the env itself (TD3, SAC: SB3 wraps it), or for PPO num_envs
    copies, seeded from the run's seed, under VecNormalize as hdqnn normalises (clips 10, eps 1e-8)."""
    import gymnasium as gym

    if args.algo != "ppo":
        return gym.make(args.env_id)
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = make_vec_env(args.env_id, n_envs=args.num_envs, seed=args.seed)
    if not (args.normalize_observation or args.normalize_reward):
        return venv
    return VecNormalize(venv, norm_obs=args.normalize_observation, norm_reward=args.normalize_reward, clip_obs=10.0,
                        clip_reward=10.0, gamma=args.gamma, epsilon=1e-8)


def check_budget(args) -> None:
    """PPO learns from whole rollouts, and SB3 finishes the rollout it is in: a budget that is not a
    whole number of rollouts would give SB3 one more update than hdqnn. ValueError naming the nearest."""
    if args.algo != "ppo":
        return
    rollout = args.num_envs * args.num_steps
    if args.total_timesteps % rollout:
        below = args.total_timesteps // rollout * rollout
        nearest = " or ".join(str(n) for n in (below, below + rollout) if n)
        raise ValueError(f"PPO's budget must be a multiple of num_envs * num_steps = {rollout} (SB3 completes its "
                         f"last rollout): --steps {nearest}")


# ---------------------------------------------------------------------------------- evaluation
def evaluate_policy(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns [episodes] of the deterministic ``act`` (one observation -> one action) on hdqnn's
    evaluation episodes: ``hdqnn.rl.make_env(env_id)`` reset with ``seed + EVAL_SEED_OFFSET + e``."""
    from hdqnn.rl import make_env
    from hdqnn.rl.evaluate import EVAL_SEED_OFFSET

    env = make_env(env_id)
    returns = np.zeros(episodes)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                returns[episode] += float(reward)
                done = terminated or truncated
    finally:
        env.close()
    return returns


# ---------------------------------------------------------------------------------- one run (worker)
@dataclasses.dataclass
class Job:
    library: str
    algo: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.library}_{self.algo}_{self.seed}"


def run_hdqnn(job: Job, env_id: str, steps: int, final_episodes: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train hdqnn in a temporary run folder; its curve, final returns and speed."""
    from hdqnn.rl import load_policy, train
    from hdqnn.rl.metrics import read_metrics

    with tempfile.TemporaryDirectory(prefix="sb3_compare_") as tmp:
        args = hdqnn_args(job.algo, env_id, job.seed, steps, str(Path(tmp) / "run"), overrides)
        start = time.perf_counter()
        summary = train(args)
        wall = time.perf_counter() - start
        curve = [(r["step"], r["eval/mean_return"]) for r in read_metrics(args.out_dir) if "eval/mean_return" in r]
        policy = load_policy(args.out_dir)
        # the shared protocol must reproduce hdqnn's own last evaluation
        check = evaluate_policy(policy, args.env_id, args.eval_episodes, args.seed).mean() - summary["final_eval"]
        final = evaluate_policy(policy, args.env_id, final_episodes, args.seed)
    return {"curve": curve, "final_returns": final.tolist(), "sps": summary["sps"],
            "train_seconds": summary["train_seconds"], "wall_seconds": wall, "protocol_check": float(check),
            "hyperparameters": args.to_dict()}


def run_sb3(job: Job, env_id: str, steps: int, final_episodes: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train SB3's twin of the hdqnn run; evaluations every eval_freq steps by a callback, timed
    apart from training."""
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    args = hdqnn_args(job.algo, env_id, job.seed, steps, "", overrides)
    env = sb3_env(args)
    kwargs = sb3_kwargs(args, env.action_space.shape[0])
    recorded = {k: v for k, v in copy.deepcopy(kwargs).items() if k != "action_noise"}  # SB3 edits policy_kwargs
    if "action_noise" in kwargs:
        recorded["action_noise_sigma"] = args.exploration_noise
    model = getattr(stable_baselines3, job.algo.upper())("MlpPolicy", env, verbose=0, **kwargs)
    # PPO's policy sees normalised observations: the statistics as they are, frozen (as hdqnn evaluates)
    normalize = env.normalize_obs if isinstance(env, VecNormalize) else (lambda obs: obs)
    act = lambda obs: model.predict(normalize(obs), deterministic=True)[0]  # noqa: E731

    class Curve(BaseCallback):
        """hdqnn's evaluation schedule: where the env steps cross a multiple of eval_freq (the last
        point after training); ``eval_seconds`` is their time, not training's."""

        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []
            self.eval_seconds = 0.0
            self.last_step = 0

        def _on_step(self) -> bool:
            crossed = self.num_timesteps // args.eval_freq > self.last_step // args.eval_freq
            self.last_step = self.num_timesteps
            if crossed and self.num_timesteps < steps:
                start = time.perf_counter()
                returns = evaluate_policy(act, args.env_id, args.eval_episodes, args.seed)
                self.points.append((self.num_timesteps, float(returns.mean())))
                self.eval_seconds += time.perf_counter() - start
            return True

    curve = Curve()
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=curve)
    wall = time.perf_counter() - start
    train_seconds = wall - curve.eval_seconds
    curve.points.append((steps, float(evaluate_policy(act, args.env_id, args.eval_episodes, args.seed).mean())))
    final = evaluate_policy(act, args.env_id, final_episodes, args.seed)
    env.close()
    return {"curve": curve.points, "final_returns": final.tolist(), "sps": steps / train_seconds,
            "train_seconds": train_seconds, "wall_seconds": wall, "protocol_check": None,
            "hyperparameters": recorded, "sb3_version": stable_baselines3.__version__}


def run_job(job: Job, env_id: str, steps: int, final_episodes: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """One run in this process (one torch thread), as a JSON-ready record."""
    import torch

    import hdqnn

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    runner = run_hdqnn if job.library == "hdqnn" else run_sb3
    record = runner(job, env_id, steps, final_episodes, overrides)
    return {**dataclasses.asdict(job), "env_id": env_id, "steps": steps, "overrides": overrides, **record,
            "final_mean": float(np.mean(record["final_returns"])), "hdqnn_version": hdqnn.__version__,
            "torch_version": torch.__version__, "load": [load_before, os.getloadavg()[0]]}


# ---------------------------------------------------------------------------------- report
def scores(records: list[dict[str, Any]], library: str, algo: str) -> list[dict[str, Any]]:
    return sorted((r for r in records if r["library"] == library and r["algo"] == algo), key=lambda r: r["seed"])


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (algo, library): seeds, final-score mean, 95% t-interval, IQM, SPS."""
    from hdqnn.rl.compare import iqm

    rows = []
    for algo in dict.fromkeys(r["algo"] for r in records):
        for library in LIBRARIES:
            runs = scores(records, library, algo)
            if not runs:
                continue
            finals = [r["final_mean"] for r in runs]
            rows.append({"algo": algo, "library": library, "seeds": [r["seed"] for r in runs],
                         "mean": float(np.mean(finals)), "ci": t_interval(finals) if len(finals) > 1 else None,
                         "iqm": iqm(finals), "sps": float(np.mean([r["sps"] for r in runs])),
                         "finals": finals})
    return rows


def comparisons(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per algorithm with both libraries: hdqnn - SB3 (Welch), Mann-Whitney, SPS ratio."""
    out = []
    for algo in dict.fromkeys(r["algo"] for r in records):
        ours = [r["final_mean"] for r in scores(records, "hdqnn", algo)]
        theirs = [r["final_mean"] for r in scores(records, "sb3", algo)]
        if len(ours) < 2 or len(theirs) < 2:
            continue
        welch = welch_test(ours, theirs)
        sps_ratio = (np.mean([r["sps"] for r in scores(records, "hdqnn", algo)])
                     / np.mean([r["sps"] for r in scores(records, "sb3", algo)]))
        out.append({"algo": algo, "n": (len(ours), len(theirs)), "welch": dataclasses.asdict(welch),
                    "mann_whitney_p": mann_whitney_p(ours, theirs), "sps_ratio": float(sps_ratio)})
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown_report(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    rows, tests = summarize(records), comparisons(records)
    lines = [f"## hdqnn vs Stable-Baselines3 on {meta['env_id']}: {meta['steps']:,} steps, seeds "
             f"{' '.join(map(str, meta['seeds']))}", "",
             f"Final score of a seed: mean return of {meta['final_episodes']} deterministic episodes after "
             "training, the same episodes (hdqnn's evaluation seeds) for both libraries. SPS: env steps per "
             "second of training time (evaluations excluded), one torch thread per run, "
             f"{meta['jobs']} runs at a time. Load average (1 min) at the runs' starts and ends: "
             f"{meta['load'][0]:.1f} to {meta['load'][1]:.1f}; {meta['cpus']} CPUs. stable-baselines3 "
             f"{meta['sb3_version']}, hdqnn "
             f"{meta['hdqnn_version']}, torch {meta['torch_version']}.", "",
             "| algo | library | final return: mean | 95% CI (t) | IQM | per seed | SPS |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        ci = "-" if row["ci"] is None else f"[{row['ci'][0]:.1f}, {row['ci'][1]:.1f}]"
        lines.append(f"| {row['algo']} | {row['library']} | {row['mean']:.1f} | {ci} | {row['iqm']:.1f} | "
                     f"{', '.join(f'{x:.0f}' for x in row['finals'])} | {row['sps']:.1f} |")
    if tests:
        lines += ["", "| algo | hdqnn - SB3 | 95% CI (Welch) | Welch p | Mann-Whitney p | SPS hdqnn / SB3 |",
                  "|---|---|---|---|---|---|"]
        for t in tests:
            w = t["welch"]
            lines.append(f"| {t['algo']} | {w['difference']:.1f} | [{w['ci'][0]:.1f}, {w['ci'][1]:.1f}] | "
                         f"{w['p_value']:.2f} | {t['mann_whitney_p']:.2f} | {t['sps_ratio']:.2f} |")
        n = min(min(t["n"]) for t in tests)
        floor = mann_whitney_floor(n, n)  # 0.10 with 3 seeds, 0.0022 with 6: two significant digits
        lines += ["", POWER_NOTE.format(n=n, mw_floor=f"{floor:.2f}" if floor >= 0.01 else f"{floor:.2g}")]
        if n < 4:
            lines[-1] += f" The IQM of {n} seeds trims none of them: it is their mean."
    checks = [r["protocol_check"] for r in records if r.get("protocol_check") is not None]
    if checks:
        lines += ["", f"Protocol check: the shared evaluation reproduces hdqnn's own final evaluation within "
                      f"{max(abs(c) for c in checks):.2g} (largest difference of {len(checks)} runs)."]
    changed = "; ".join(f"{algo}: {v}" for algo, v in COMPARISON_OVERRIDES.items() if algo in meta["algos"])
    lines += ["", "Hyperparameters (hdqnn's defaults" + (f", with --set {meta['overrides']}" if meta["overrides"] else "")
              + (f"; changed for the comparison: {changed}" if changed else "") + "):"]
    for algo in meta["algos"]:
        sb3 = next((r["hyperparameters"] for r in records if r["algo"] == algo and r["library"] == "sb3"), None)
        if sb3 is not None:
            lines.append(f"- {algo} (SB3's arguments; seed: the run's): "
                         + ", ".join(f"{k}={v}" for k, v in sb3.items() if k != "seed"))
    lines += ["", "Implementation differences beyond the hyperparameters:"]
    off_policy = ["off-policy"] if {"td3", "sac"} & set(meta["algos"]) else []
    for key in (*off_policy, *meta["algos"]):
        lines += [f"- {key}: {text}" for text in KNOWN_DIFFERENCES.get(key, [])]
    return "\n".join(lines) + "\n"


def plot_curves(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Mean evaluation return over seeds against env steps, min-max shaded, one panel per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(dict.fromkeys(r["algo"] for r in records))
    fig, axes = plt.subplots(1, len(algos), figsize=(5 * len(algos), 3.6), squeeze=False)
    for ax, algo in zip(axes[0], algos):
        for library, color in zip(LIBRARIES, ("tab:blue", "tab:orange")):
            runs = scores(records, library, algo)
            if not runs:
                continue
            steps = [s for s, _ in runs[0]["curve"]]
            values = np.array([[v for _, v in r["curve"]] for r in runs if len(r["curve"]) == len(steps)])
            ax.plot(steps, values.mean(axis=0), color=color, label=f"{library} ({len(values)} seeds)")
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)
        ax.set(title=algo, xlabel="env steps", ylabel="eval return (mean; band: min-max over seeds)")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------- driver
def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` overrides of hdqnn's Args, values parsed as JSON where they are (else strings)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def _json_name(value: Any) -> str:
    """JSON for the objects among SB3's arguments (a schedule, an activation class): their name."""
    return getattr(value, "__name__", None) or repr(value)


def read_record(path: Path, env_id: str, steps: int, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The run recorded in ``path`` if it is one of this configuration (env, steps, --set), else None."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    same = (record["env_id"], record["steps"], record.get("overrides", {})) == (env_id, steps, overrides)
    return record if same else None


def jobs_of(algos: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """Both libraries of one (algo, seed) next to each other: with 2 jobs they run at the same time."""
    return [Job(lib, algo, seed) for algo, seed, lib in itertools.product(algos, seeds, LIBRARIES)]


def launch(job: Job, ns: argparse.Namespace, result: Path) -> None:
    """Run ``job`` in a child process with one thread; its stderr goes to ``result``.log on failure."""
    command = [sys.executable, __file__, "--worker", job.library, job.algo, str(job.seed), "--env", ns.env,
               "--steps", str(ns.steps), "--final-episodes", str(ns.final_episodes), "--result", str(result)]
    command += [x for item in ns.set for x in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        result.with_suffix(".log").write_text(done.stdout + done.stderr)
        raise RuntimeError(f"{job.name} failed (exit {done.returncode}); its output: {result.with_suffix('.log')}")
    print(f"{job.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--algos", nargs="+", default=["td3", "sac"], choices=ALGOS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=10_000, help="env steps per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--final-episodes", type=int, default=FINAL_EPISODES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an hdqnn Args field for both libraries, VALUE in JSON where it is not a plain string, "
                        "e.g. learning_starts=5000 or hidden_sizes=[64,64]")
    p.add_argument("--out", default="bench/out/sb3_compare", help="output prefix: OUT.md, OUT.json, OUT.png")
    p.add_argument("--force", action="store_true", help="re-run runs already recorded in OUT_runs/")
    p.add_argument("--worker", nargs=3, metavar=("LIB", "ALGO", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    overrides = parse_sets(ns.set)
    from hdqnn.rl.args import resolve_env_id

    env_id = resolve_env_id(ns.env)
    if ns.worker:
        job = Job(ns.worker[0], ns.worker[1], int(ns.worker[2]))
        record = run_job(job, env_id, ns.steps, ns.final_episodes, overrides)
        Path(ns.result).write_text(json.dumps(record, default=_json_name) + "\n")
        return 0

    if "ppo" in ns.algos and not ppo_available():
        p.error("this hdqnn has no PPO (hdqnn.rl.args.ALGOS has no 'ppo'); compare td3 and sac")
    for algo in ns.algos:
        try:
            check_budget(hdqnn_args(algo, env_id, ns.seeds[0], ns.steps, "", overrides))
        except ValueError as exc:
            p.error(str(exc))
    out = Path(ns.out)
    runs_dir = out.with_name(out.name + "_runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    recorded = {job.name: record for job in jobs_of(ns.algos, ns.seeds)
                if (record := read_record(runs_dir / f"{job.name}.json", env_id, ns.steps, overrides)) is not None}
    todo = [job for job in jobs_of(ns.algos, ns.seeds) if ns.force or job.name not in recorded]
    print(f"{len(todo)} runs to do, {ns.jobs} at a time; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=ns.jobs) as pool:
        futures = {pool.submit(launch, job, ns, runs_dir / f"{job.name}.json"): job for job in todo}
        for future in concurrent.futures.as_completed(futures):
            if future.exception() is not None:
                failures.append(str(future.exception()))
    records = [record for job in jobs_of(ns.algos, ns.seeds)
               if (record := read_record(runs_dir / f"{job.name}.json", env_id, ns.steps, overrides)) is not None]
    sb3_version = next((r["sb3_version"] for r in records if "sb3_version" in r), "-")
    meta = {"env_id": env_id, "steps": ns.steps, "seeds": ns.seeds, "algos": ns.algos, "jobs": ns.jobs,
            "final_episodes": ns.final_episodes, "overrides": overrides,
            "load": [min((x for r in records for x in r["load"]), default=math.nan),
                     max((x for r in records for x in r["load"]), default=math.nan)],
            "cpus": os.cpu_count(), "sb3_version": sb3_version,
            "hdqnn_version": records[0]["hdqnn_version"] if records else "-",
            "torch_version": records[0]["torch_version"] if records else "-"}
    report = markdown_report(records, meta)
    print(report)
    out.with_suffix(".md").write_text(report)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summarize(records),
                                                    "tests": comparisons(records), "runs": records}, indent=1) + "\n")
    if records:
        plot_curves(records, out.with_suffix(".png"), f"hdqnn vs SB3 on {env_id}, {ns.steps:,} steps")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
