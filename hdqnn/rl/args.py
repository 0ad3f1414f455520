"""Arguments of a training run: one dataclass, a docstring per field (CleanRL style, SB3 names).

The defaults are the quick demo that ``hdqnn train`` runs with no flags: a real hDQNN-TD3 training on
Pendulum-v1 with a small PQC that finishes in a few minutes on one CPU core. ``PRESETS["paper"]``
holds the paper's settings (TD3 defaults of Fujimoto et al., 10 qubits x 10 layers, Humanoid-v4).

``hdqnn train``'s flags are defined here too (``add_train_arguments``), one per field, so that the
command (``hdqnn/cli.py``) and the sweep (``hdqnn/sweep``, which must not import the command nor
torch) read them from one place.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

#: Every agent: TD3, SAC and PPO with a classical actor, and each with the hybrid actor (``hdqnn-``: the
#: PQC in the middle) and its two ablations (``fc-``: a dense layer, ``rbg-``: random bits instead).
ALGOS = ("td3", "hdqnn-td3", "fc-td3", "rbg-td3", "sac", "hdqnn-sac", "fc-sac", "rbg-sac",
         "ppo", "hdqnn-ppo", "fc-ppo", "rbg-ppo")
#: Algorithms whose actor is PreDNN -> middle layer -> PostDNN (-> tanh, a tanh-squashed Gaussian, or
#: the mean of PPO's Gaussian).
HYBRID_ALGOS = ("hdqnn-td3", "fc-td3", "rbg-td3", "hdqnn-sac", "fc-sac", "rbg-sac", "hdqnn-ppo", "fc-ppo", "rbg-ppo")
#: Algorithms whose actor's middle layer is the PQC.
QUANTUM_ALGOS = ("hdqnn-td3", "hdqnn-sac", "hdqnn-ppo")
#: ``ent_coef`` values besides a fixed positive number: tuned automatically from 1 or from the given start.
AUTO_ENT_COEF = "auto"
GRAD_MODES = ("qtdnn", "adjoint", "parameter-shift")
QTDNN_PRESETS = ("auto", "default", "paper", "normalized", "sobolev", "sobolev-fast")


@dataclass
class Args:
    algo: str = "hdqnn-td3"
    """agent: td3, sac or ppo (classical), hdqnn-td3, hdqnn-sac or hdqnn-ppo (PQC in the actor), fc-td3,
    fc-sac or fc-ppo (PQC replaced by a dense layer), rbg-td3, rbg-sac or rbg-ppo (PQC replaced by random
    +-1 bits)"""
    env_id: str = "Pendulum-v1"
    """Gymnasium environment id with Box observation and action spaces"""
    total_timesteps: int = 10_000
    """environment steps of the whole run"""
    seed: int = 1
    """seed of every random stream (Python, NumPy, torch, environment, replay buffer, PQC shots)"""
    out_dir: str = ""
    """run folder (logs, checkpoint, plots); empty: runs/<env>__<algo>__<seed>__<time>"""
    tag: str = ""
    """label that groups this run with its other seeds in `hdqnn compare` (empty: the algo)"""
    threads: int = 1
    """torch and engine threads; 1 lets several runs share the cores without fighting"""

    learning_rate: float = 3e-4
    """Adam learning rate of the actor and the critics (PPO: of the actor and the value network; the
    start of the decay with anneal_lr)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (its storage grows as it fills)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak coefficient of the target networks"""
    batch_size: int = 256
    """minibatch size of each update of TD3 and SAC (PPO's minibatches: num_minibatches)"""
    learning_starts: int = 1_000
    """random-action steps before the first update (TD3 and SAC; PPO updates after each rollout and ignores it)"""
    exploration_noise: float = 0.1
    """TD3: std of the Gaussian exploration noise, as a fraction of the action range's half-width (SAC
    explores by sampling its policy)"""
    policy_delay: int = 2
    """critic updates per actor (and TD3 target) update; SAC then makes that many actor steps at once
    (CleanRL's policy_frequency)"""
    target_network_frequency: int = 1
    """SAC: critic updates per Polyak update of the target critics"""
    ent_coef: str = AUTO_ENT_COEF
    """SAC entropy coefficient alpha: a fixed number, 'auto' (tuned towards the target entropy
    -act_dim, starting from 1) or 'auto_X' (tuned, starting from X)"""
    target_policy_noise: float = 0.2
    """TD3: std of the target policy smoothing noise (fraction of the half-width)"""
    target_noise_clip: float = 0.5
    """TD3: clip of the target policy smoothing noise (fraction of the half-width)"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden widths of the critics and of the classical actor (PPO: of its value network and classical
    actor, tanh layers as CleanRL's; CleanRL and SB3 use 64 64)"""

    num_envs: int = 1
    """PPO: environments stepped together (gymnasium.vector.SyncVectorEnv); each of their steps is num_envs
    env steps, and the actor acts on all of them in one batched call (one circuit call); TD3 and SAC: 1"""
    num_steps: int = 2048
    """PPO: steps of each environment per rollout (SB3's n_steps); a rollout holds num_steps * num_envs
    transitions, and the steps after the last full rollout of a run are not learnt from"""
    gae_lambda: float = 0.95
    """PPO: lambda of the generalized advantage estimate"""
    num_minibatches: int = 32
    """PPO: minibatches per pass over the rollout (CleanRL's; SB3's batch_size is num_steps * num_envs /
    num_minibatches, 64 by default)"""
    update_epochs: int = 10
    """PPO: passes over each rollout (SB3's n_epochs)"""
    norm_adv: bool = True
    """PPO: normalize the advantages of each minibatch (SB3's normalize_advantage)"""
    clip_coef: float = 0.2
    """PPO: clip of the probability ratio in the surrogate objective (SB3's clip_range), and of the value
    change with clip_vloss"""
    clip_vloss: bool = True
    """PPO: clip the value loss as CleanRL does (SB3's clip_range_vf = clip_coef)"""
    ppo_ent_coef: float = 0.0
    """PPO: weight of the entropy bonus in the loss (SB3's ent_coef of PPO; ent_coef is SAC's and stays
    'auto' for PPO)"""
    vf_coef: float = 0.5
    """PPO: weight of the value loss in the loss"""
    max_grad_norm: float = 0.5
    """PPO: clip of the global gradient norm of each minibatch step"""
    target_kl: float = 0.0
    """PPO: end an update after the epoch whose last minibatch's approximate KL divergence exceeds this
    (CleanRL's check); 0 = never"""
    anneal_lr: bool = True
    """PPO: decay the learning rate linearly towards 0 over the run's rollouts"""
    normalize_observation: bool = True
    """PPO: normalize observations by their running mean and variance (shared by the envs, clipped to
    +-10, as CleanRL's); evaluations and policies apply the statistics frozen"""
    normalize_reward: bool = True
    """PPO: scale rewards by the running std of the discounted return (gymnasium's NormalizeReward,
    clipped to +-10, as CleanRL's)"""

    pre_hidden: tuple[int, ...] = (256,)
    """hidden widths of the PreDNN (observation -> PQC inputs) of the hybrid actors"""
    post_hidden: tuple[int, ...] = (256,)
    """hidden widths of the PostDNN (PQC outputs -> action) of the hybrid actors"""
    qubits: int = 4
    """PQC qubits (= PQC inputs and Pauli-Z outputs)"""
    layers: int = 2
    """PQC layers of trainable rotations and entanglers"""
    encoding: str = "ry"
    """angle-encoding gate of the PQC inputs (rx, ry, rz)"""
    entangler: str = "ring"
    """CNOT pattern of each layer (ring, linear, all, none)"""
    reupload: bool = False
    """re-encode the inputs before every layer (data re-uploading)"""
    angle_scale: float = 1.0
    """PQC input angle = angle_scale * tanh(PreDNN output), radians; the qtDNN surrogate is a local
    model, so a small spread of angles over a minibatch keeps its gradient faithful"""
    train_pqc: bool = False
    """also train the PQC's rotation angles; off by default, as in the paper: the rotations are fixed
    random angles and the PreDNN learns the PQC's inputs (a minibatch shares one weight vector, so
    the qtDNN's gradient for the weights is poor, and they widen the surrogate's input)"""
    shots: int = 0
    """measurement shots per PQC evaluation; 0 = exact expectations"""
    noise: str = ""
    """noisy device the PQC runs on (hdqnn- algos): a fake IBM device of qiskit_ibm_runtime.fake_provider
    (fake_manila or FakeManilaV2, any case: its calibrated gate, relaxation and readout errors on qubits
    0..qubits-1) or a NoiseModel JSON file (NoiseModel.to_json); resolved once at the start and kept in the
    run folder (noise.json); empty: a perfect device"""
    grad: str = "qtdnn"
    """gradient through the PQC: qtdnn (the paper's surrogate), adjoint (exact) or parameter-shift"""
    qtdnn_preset: str = "auto"
    """qtDNN surrogate: auto (sobolev-fast when the PQC's outputs are exact expectations, default with
    shots, whose noise ruins measured derivatives; bench/RESULTS.md, issue 15); default (the
    QuantumLayer's defaults); paper (the paper's: hidden 2**(n+1), 32 fit steps);
    normalized (inputs scaled per minibatch, no extra circuit runs); sobolev (normalized, 64 fit steps,
    fitted on 12 measured directional derivatives per update: 24 extra circuit runs; the best gradient
    in bench/qtdnn_options.md, exact expectations only); sobolev-fast (the same with the default 16
    fit steps: nearly the same gradient in RL at ~3x less fit time)"""
    qtdnn_hidden: int = 0
    """qtDNN hidden width; 0 = the preset's"""
    qtdnn_fit_steps: int = 0
    """qtDNN Adam steps per actor update; 0 = the preset's"""

    eval_freq: int = 2_000
    """environment steps between deterministic evaluations"""
    eval_episodes: int = 5
    """episodes per evaluation"""
    log_freq: int = 250
    """environment steps between loss and timing log lines"""
    fidelity_freq: int = 250
    """actor updates between measurements of the qtDNN gradient against the exact adjoint"""
    checkpoint_freq: int = 5_000
    """environment steps between checkpoints (one is always written at the end)"""
    save_buffer: bool = True
    """store the replay buffer in checkpoints (needed for an exact resume)"""
    tensorboard: bool = True
    """also write TensorBoard event files"""
    progress: bool = True
    """show a progress bar"""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(self.hidden_sizes)
        self.pre_hidden = tuple(self.pre_hidden)
        self.post_hidden = tuple(self.post_hidden)
        validate(self)

    @property
    def label(self) -> str:
        """Name of the configuration this run belongs to (seeds of one label are compared)."""
        return self.tag or self.algo

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Args":
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training arguments: {', '.join(sorted(unknown))}")
        return cls(**values)


#: Named argument sets; a preset's values are applied before the explicit ones.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(
        env_id="Humanoid-v4", total_timesteps=1_000_000, learning_starts=25_000, qubits=10, layers=10,
        qtdnn_preset="paper", eval_freq=10_000, checkpoint_freq=50_000, log_freq=1_000,
    ),
}

_POSITIVE = ("total_timesteps", "buffer_size", "batch_size", "policy_delay", "target_network_frequency", "qubits",
             "num_envs", "num_steps", "num_minibatches", "update_epochs", "eval_freq",
             "eval_episodes", "log_freq", "fidelity_freq", "checkpoint_freq", "threads")
#: Fields with a fixed set of values.
CHOICES = {"algo": ALGOS, "grad": GRAD_MODES, "qtdnn_preset": QTDNN_PRESETS,
            "encoding": ("rx", "ry", "rz"), "entangler": ("ring", "linear", "all", "none")}


def resolved_qtdnn_preset(args: Args) -> str:
    """The preset ``args.qtdnn_preset`` names, "auto" resolved: "sobolev-fast" for exact expectations
    (hDQNN-TD3 10 x 10 on Hopper-v4 over 55,000 steps: mean gradient cosine 0.974-0.982 against the
    plain surrogate's 0.847-0.902, +3.1% circuit executions, 0.83-0.86x its steps per second;
    bench/RESULTS.md), "default" with shots (their noise ruins the measured derivatives)."""
    if args.qtdnn_preset != "auto":
        return args.qtdnn_preset
    return "default" if args.shots else "sobolev-fast"


def check_training_surrogate(args: Args) -> None:
    """Refuse to train a Sobolev surrogate on shots: measured, shot noise in the directional
    derivatives turns the fit's gradients away (cosine 0.1). A training check only: a policy trained
    on exact expectations may act with shots (it never fits)."""
    if args.shots and args.grad == "qtdnn" and resolved_qtdnn_preset(args).startswith("sobolev"):
        raise ValueError(f"qtdnn_preset={args.qtdnn_preset!r} fits on directional derivatives that shot noise "
                         "ruins; with shots use 'normalized' (bench/qtdnn_options.md)")


def validate(args: Args) -> None:
    """Raise ValueError naming the first argument that is out of range."""
    for name, allowed in CHOICES.items():
        value = getattr(args, name)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    for name in _POSITIVE:
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    for name in ("learning_starts", "layers", "shots", "qtdnn_hidden", "qtdnn_fit_steps"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    if not 0.0 < args.tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1]; got {args.tau}")
    if not 0.0 <= args.gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1]; got {args.gamma}")
    for name in ("learning_rate", "angle_scale"):
        if not getattr(args, name) > 0:
            raise ValueError(f"{name} must be > 0; got {getattr(args, name)}")
    for name in ("exploration_noise", "target_policy_noise", "target_noise_clip"):
        if not getattr(args, name) >= 0:
            raise ValueError(f"{name} must be >= 0; got {getattr(args, name)}")
    for name in ("ppo_ent_coef", "vf_coef", "target_kl"):
        if not 0 <= getattr(args, name) < float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0; got {getattr(args, name)}")
    for name in ("clip_coef", "max_grad_norm"):
        if not 0 < getattr(args, name) < float("inf"):
            raise ValueError(f"{name} must be a finite number > 0; got {getattr(args, name)}")
    if not 0.0 <= args.gae_lambda <= 1.0:
        raise ValueError(f"gae_lambda must be in [0, 1]; got {args.gae_lambda}")
    for name in ("hidden_sizes", "pre_hidden", "post_hidden"):
        sizes = getattr(args, name)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"{name} must be positive integers; got {sizes!r}")
    parse_ent_coef(args.ent_coef)
    _validate_ppo(args)
    if args.noise and args.algo not in QUANTUM_ALGOS:
        raise ValueError(f"noise={args.noise!r} simulates the PQC on a noisy device: it needs an algo with a PQC "
                         f"({', '.join(QUANTUM_ALGOS)}), not {args.algo!r}")
    if args.shots and args.grad == "adjoint":
        raise ValueError("grad='adjoint' is exact and cannot be used with shots; use qtdnn or parameter-shift")


def _validate_ppo(args: Args) -> None:
    """The PPO arguments that depend on the algorithm or on each other."""
    if base_algo(args.algo) != "ppo":
        if args.num_envs != 1:
            raise ValueError(f"num_envs is PPO's (vectorised environments); {args.algo} acts in one environment, "
                             f"so num_envs must be 1; got {args.num_envs}")
        return
    if str(args.ent_coef) != AUTO_ENT_COEF:
        raise ValueError(f"ent_coef is SAC's entropy coefficient (got {args.ent_coef!r}); PPO's entropy bonus is "
                         "ppo_ent_coef (--ppo-ent-coef)")
    if args.total_timesteps % args.num_envs:
        raise ValueError(f"total_timesteps ({args.total_timesteps}) must be a multiple of num_envs "
                         f"({args.num_envs}): each step of the vectorised environments is num_envs env steps")
    rollout = args.num_steps * args.num_envs
    if rollout % args.num_minibatches:
        raise ValueError(f"num_minibatches ({args.num_minibatches}) must divide the rollout of num_steps * "
                         f"num_envs = {rollout} transitions into equal minibatches")
    if args.norm_adv and rollout // args.num_minibatches < 2:
        raise ValueError(f"norm_adv normalizes the advantages of each minibatch, which needs 2 transitions or more; "
                         f"num_minibatches ({args.num_minibatches}) leaves 1 of the rollout's {rollout}")


def parse_ent_coef(ent_coef: str) -> tuple[bool, float]:
    """(tuned automatically, initial value) of an ``ent_coef`` setting (SB3's spellings: ``auto``,
    ``auto_0.1``, ``0.2``); ValueError naming it unless the value is a positive finite number."""
    text = str(ent_coef)
    auto = text == AUTO_ENT_COEF or text.startswith(AUTO_ENT_COEF + "_")
    number = "1" if text == AUTO_ENT_COEF else text.removeprefix(AUTO_ENT_COEF + "_")
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < float("inf"):
        raise ValueError(f"ent_coef must be a positive number, 'auto' or 'auto_X' (X > 0); got {ent_coef!r}")
    return auto, value


def base_algo(algo: str) -> str:
    """The learning algorithm of ``algo`` whatever its actor: ``td3``, ``sac`` or ``ppo``."""
    return algo.rsplit("-", 1)[-1]


def resolve_env_id(env_id: str) -> str:
    """The registered id ``gym.make(env_id)`` makes: an unversioned id names the latest version
    (``HalfCheetah`` -> ``HalfCheetah-v5``), so a run is labelled with what it really ran.
    ValueError for an unknown id; ``module:id`` (registered on import) is left to ``gym.make``.
    Cheap (makes no environment), and here, torch-free, for the sweep's checks too."""
    import gymnasium as gym
    from gymnasium.envs.registration import find_highest_version, get_env_id, parse_env_id

    if ":" in env_id:
        return env_id
    try:
        namespace, name, version = parse_env_id(env_id)
        if version is None and (latest := find_highest_version(namespace, name)) is not None:
            env_id = get_env_id(namespace, name, latest)
        return gym.spec(env_id).id
    except gym.error.Error as exc:
        raise ValueError(f"unknown Gymnasium environment id {env_id!r}: {exc}") from None


def field_docs(cls: type = Args) -> dict[str, str]:
    """Field name -> its docstring (the string literal under it), for ``--help``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


# ------------------------------------------------------------------------ hdqnn train's flags
#: Short flag names for the most used arguments (the long field names work too).
ALIASES = {"total_timesteps": ["--steps"], "env_id": ["--env"], "out_dir": ["--out"]}
#: Namespace attribute where the parser records each given field's flag as it was typed.
TYPED_FLAGS = "typed_flags"
TRAIN_DESCRIPTION = (
    "Train TD3, SAC, PPO, hDQNN-TD3, hDQNN-SAC, hDQNN-PPO or an ablation on a Gymnasium environment. With no flags: a "
    "short real hDQNN-TD3 run on Pendulum-v1. Writes metrics.jsonl, TensorBoard files (tb/), learning_curve.png, "
    "checkpoint.pt and summary.json in the run folder.")


def _record_flag(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    if option_string is not None:
        typed = getattr(namespace, TYPED_FLAGS, None) or {}
        typed[dest] = option_string
        setattr(namespace, TYPED_FLAGS, typed)


class _StoreTyped(argparse.Action):
    """``store``, remembering the flag's spelling (an error about a value names the flag typed)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _record_flag(namespace, self.dest, option_string)


class _BooleanTyped(argparse.BooleanOptionalAction):
    """``--x/--no-x``, remembering which was typed."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _record_flag(namespace, self.dest, option_string)


def _flag_kwargs(f: dataclasses.Field, hint: Any, help_text: str, suppress_defaults: bool) -> dict[str, Any]:
    """argparse settings for one Args field (``suppress_defaults``: absent flags stay out of the
    namespace, which then holds exactly what was given)."""
    default = f.default
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS if suppress_defaults else default, "help": help_text,
                              "dest": f.name, "action": _StoreTyped}
    if hint is bool:
        kwargs["action"] = _BooleanTyped
        kwargs["help"] += f" (default: {default})"
    elif typing.get_origin(hint) is tuple:
        kwargs.update(type=int, nargs="+", metavar="N", help=help_text + f" (default: {' '.join(map(str, default))})")
    else:
        kwargs.update(type=hint, metavar=hint.__name__.upper(), help=help_text + f" (default: {default!r})")
    return kwargs


def add_train_arguments(p: argparse.ArgumentParser, suppress_defaults: bool) -> argparse.ArgumentParser:
    """One flag per field of :class:`Args`, plus --preset and --resume."""
    p.add_argument("--preset", choices=sorted(PRESETS), default=argparse.SUPPRESS,
                   help="named argument set applied before the other flags ('paper': the paper's TD3 "
                        "settings, 10 qubits x 10 layers on Humanoid-v4)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its checkpoint (its arguments are kept; flags that "
                        "repeat them are accepted, --steps may extend it)")
    docs = field_docs(Args)
    hints = typing.get_type_hints(Args)
    for f in dataclasses.fields(Args):
        kwargs = _flag_kwargs(f, hints[f.name], docs.get(f.name, ""), suppress_defaults)
        if f.name in CHOICES:
            kwargs.update(choices=CHOICES[f.name], metavar="{" + ",".join(CHOICES[f.name]) + "}")
        p.add_argument(*flag_names(f.name), **kwargs)
    return p


def flag_names(name: str) -> list[str]:
    """The flags that set field ``name``, the short alias first (``env_id`` -> ``--env``, ``--env-id``)."""
    return ALIASES.get(name, []) + [f"--{name.replace('_', '-')}"]


def train_parser() -> argparse.ArgumentParser:
    """``hdqnn train``'s arguments as a parser of its own, with the real defaults (the sweep checks
    trial options with it)."""
    parser = argparse.ArgumentParser(prog="hdqnn train", description=TRAIN_DESCRIPTION)
    return add_train_arguments(parser, suppress_defaults=False)


__all__ = ["Args", "ALGOS", "AUTO_ENT_COEF", "CHOICES", "HYBRID_ALGOS", "QUANTUM_ALGOS", "GRAD_MODES",
           "QTDNN_PRESETS", "PRESETS", "validate", "base_algo", "parse_ent_coef", "field_docs", "resolve_env_id",
           "ALIASES", "TYPED_FLAGS", "TRAIN_DESCRIPTION", "add_train_arguments", "flag_names", "train_parser"]
