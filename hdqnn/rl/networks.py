"""Actors and critics of TD3, SAC, PPO and their hybrid (hDQNN) variants.

The hybrid actor is PreDNN -> middle -> PostDNN -> tanh, where the middle is the PQC (``hdqnn-td3``),
a dense layer of the same widths (``fc-td3``) or a random-bit generator (``rbg-td3``): the paper's
model and its two ablations differ in that one module only. SAC's actors (``sac``, ``hdqnn-sac``,
``fc-sac``, ``rbg-sac``) are the same networks with twice the outputs: the mean and log-std of a
tanh-squashed Gaussian. PPO's actors (``ppo``, ``hdqnn-ppo``, ...) output the mean of a Gaussian over
the action itself, with a log-std parameter of its own (CleanRL's); their actions are clipped to the
bounds. Called on observations, every actor returns its deterministic action.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ..autograd import CircuitRunner, QtDNNConfig, QuantumLayer
from ..circuits import Circuit, Weight, ansatz
from .args import Args, base_algo, resolved_qtdnn_preset
from .device_noise import actor_noise

#: Bounds of the Gaussian policy's log-std (CleanRL's): the network's output is mapped into them by tanh.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
#: Keeps the log of the tanh's Jacobian finite where tanh saturates (CleanRL's constant).
SQUASH_EPS = 1e-6


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear/``activation`` stack: in_dim -> hidden... -> out_dim (no activation on the output)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """Critic Q(s, a): obs [B, obs_dim], actions [B, act_dim] -> [B, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=1))


def gaussian_params(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian actor's output [B, 2 * act_dim] -> (mean, log_std), each [B, act_dim], the log-std
    in [LOG_STD_MIN, LOG_STD_MAX]."""
    mean, log_std = raw.chunk(2, dim=1)
    return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)


def squashed_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, scale: torch.Tensor,
                             bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample ``a = tanh(u) * scale + bias``, u ~ N(mean, exp(log_std)), and its
    log-density [B] in action units: the Gaussian's minus log|da/du| = log(scale * (1 - tanh(u)^2))
    per dimension (the change of variables of the squashing and scaling)."""
    normal = torch.distributions.Normal(mean, log_std.exp())
    u = normal.rsample()
    y = torch.tanh(u)
    log_prob = normal.log_prob(u) - torch.log(scale * (1.0 - y.pow(2)) + SQUASH_EPS)
    return y * scale + bias, log_prob.sum(dim=1)


class _ScaledActor(nn.Module):
    """Shared action scaling: tanh output in [-1, 1] -> the env's [low, high].

    The network's output (``raw``) is the action before tanh, or, for a ``gaussian`` actor (SAC),
    the mean and the log-std of a Gaussian over it (``out_dim`` = 2 * act_dim). A ``clipped_gaussian``
    actor (PPO, CleanRL's) outputs the mean of a Gaussian over the action itself, whose log-std is the
    parameter ``actor_logstd`` [1, act_dim], the same for every observation; its deterministic action
    is the mean clipped to the bounds, as the env clips PPO's sampled actions (``ClipAction``).
    """

    def __init__(self, action_space: gym.spaces.Box, gaussian: bool = False, clipped_gaussian: bool = False):
        super().__init__()
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)
        self.act_dim = int(action_space.shape[0])
        self.gaussian = gaussian
        self.clipped_gaussian = clipped_gaussian
        self.out_dim = 2 * self.act_dim if gaussian else self.act_dim
        if clipped_gaussian:
            self.register_buffer("action_low", low)
            self.register_buffer("action_high", high)
            self.actor_logstd = nn.Parameter(torch.zeros(1, self.act_dim))

    def squash(self, pre_tanh: torch.Tensor) -> torch.Tensor:
        return torch.tanh(pre_tanh) * self.action_scale + self.action_bias

    def raw(self, obs: torch.Tensor) -> torch.Tensor:
        """The network's output [B, out_dim] for observations [B, obs_dim]."""
        raise NotImplementedError

    def deterministic(self, raw: torch.Tensor) -> torch.Tensor:
        """The action without exploration: the squashed output, the squashed Gaussian mean (SAC) or the
        clipped Gaussian mean (PPO)."""
        if self.clipped_gaussian:
            return torch.clamp(raw, self.action_low, self.action_high)
        return self.squash(raw[:, :self.act_dim])

    def sample(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A Gaussian actor's reparameterised actions [B, act_dim] and their log-densities [B]."""
        if not self.gaussian:
            raise TypeError("sample() needs a Gaussian (SAC) actor; this one is deterministic")
        return squashed_gaussian_sample(*gaussian_params(raw), self.action_scale, self.action_bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.deterministic(self.raw(obs))


class Actor(_ScaledActor):
    """Classical actor: obs [B, obs_dim] -> actions [B, act_dim] in the env's bounds (an MLP whose
    output is the action before tanh, or a Gaussian over it)."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden: Sequence[int], gaussian: bool = False,
                 clipped_gaussian: bool = False, activation: type[nn.Module] = nn.ReLU):
        super().__init__(action_space, gaussian, clipped_gaussian)
        self.net = mlp(obs_dim, hidden, self.out_dim, activation)

    def raw(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class DenseMiddle(nn.Module):
    """FC ablation: the PQC replaced by a dense layer of the same widths; tanh keeps the output in
    [-1, 1] like Pauli-Z expectations, so the PostDNN sees the same range."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))


class RandomBitsMiddle(nn.Module):
    """RBG ablation: the PQC replaced by fresh uniform random +-1 values per wire.

    The output does not depend on the input, so no gradient reaches the PreDNN. The generator's
    state is a buffer, so it travels with ``state_dict`` (exact resume) and with ``deepcopy``.
    """

    def __init__(self, width: int, seed: int):
        super().__init__()
        self.width = width
        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("generator_state", self.generator.get_state())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.generator.set_state(self.generator_state)
        bits = torch.randint(0, 2, (x.shape[0], self.width), generator=self.generator)
        self.generator_state.copy_(self.generator.get_state())
        return (2 * bits - 1).to(x.dtype)


class HybridActor(_ScaledActor):
    """PreDNN -> middle -> PostDNN -> tanh: obs [B, obs_dim] -> actions [B, act_dim] (a
    ``gaussian`` one's PostDNN gives the mean and log-std, a ``clipped_gaussian`` one's the mean).

    The PreDNN's output passes through tanh, so the middle's inputs lie in [-1, 1]; the PQC's
    encoding turns them into angles (``Args.angle_scale`` radians at most).
    """

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, width: int, middle: nn.Module,
                 pre_hidden: Sequence[int], post_hidden: Sequence[int], gaussian: bool = False,
                 clipped_gaussian: bool = False):
        super().__init__(action_space, gaussian, clipped_gaussian)
        self.pre = mlp(obs_dim, pre_hidden, width)
        self.middle = middle
        self.post = mlp(width, post_hidden, self.out_dim)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """The middle layer's inputs, [B, width] in [-1, 1]."""
        return torch.tanh(self.pre(obs))

    def raw(self, obs: torch.Tensor) -> torch.Tensor:
        return self.post(self.middle(self.encode(obs)))

    @property
    def quantum_layer(self) -> nn.Module | None:
        """The QuantumLayer, or None for the FC and RBG ablations."""
        return self.middle if isinstance(self.middle, QuantumLayer) else None


#: The qtDNN presets beyond the layer's defaults and the paper's: the options that measured best in
#: bench/qtdnn_options.md (10 qubits x 10 layers, input spread 0.3/0.5 rad and an RL PreDNN's
#: per-wire spreads: cosine 0.94/0.77/0.86 plain, 0.96/0.82/0.91 normalized, 0.98/0.92/0.97 sobolev).
QTDNN_PRESET_OPTIONS = {
    "normalized": dict(normalize=True),
    "sobolev": dict(normalize=True, n_fit_steps=64, sobolev_samples=12, sobolev_weight=4.0),
    "sobolev-fast": dict(normalize=True, sobolev_samples=12, sobolev_weight=4.0),
}


def qtdnn_config(args: Args) -> QtDNNConfig:
    """The surrogate's settings: the preset, with ``qtdnn_hidden``/``qtdnn_fit_steps`` if set."""
    preset = resolved_qtdnn_preset(args)
    config = QtDNNConfig.paper(args.qubits) if preset == "paper" else QtDNNConfig()
    config = dataclasses.replace(config, **QTDNN_PRESET_OPTIONS.get(preset, {}))
    overrides = {"hidden": args.qtdnn_hidden, "n_fit_steps": args.qtdnn_fit_steps}
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})


def bind_weights(circuit: Circuit, values: np.ndarray) -> Circuit:
    """A copy of ``circuit`` whose ``Weight(j)`` angles are the constants ``scale * values[j]``."""
    bound = Circuit(circuit.n_qubits)
    for op in circuit.operations:
        angles = tuple(a.scale * float(values[a.index]) if isinstance(a, Weight) else a for a in op.angles)
        bound.append(op.name, op.wires, angles)
    return bound


def actor_circuit(args: Args) -> Circuit:
    """The actor's PQC: the hardware-efficient ansatz on ``args.qubits`` inputs.

    Unless ``args.train_pqc``, its rotation angles are fixed constants drawn uniformly from
    [-pi, pi) with the run's seed (as in the paper, the PQC then has no trainable weights: the
    PreDNN learns the angles, and the qtDNN surrogate models inputs -> outputs only).
    """
    circuit = ansatz.hardware_efficient(
        args.qubits, args.layers, encoding=args.encoding, entangler=args.entangler,
        reupload=args.reupload, input_scale=args.angle_scale,
    )
    if args.train_pqc:
        return circuit
    angles = np.random.default_rng(args.seed).uniform(-np.pi, np.pi, circuit.n_weights)
    return bind_weights(circuit, angles)


def quantum_layer(args: Args, runner: CircuitRunner | None = None) -> QuantumLayer:
    """The actor's QuantumLayer from ``args`` (circuit, shots, gradient mode, qtDNN settings, and the
    noisy device of ``args.noise``, see ``device_noise.actor_noise``); ``runner`` (a hardware backend,
    which brings its own noise) executes its circuits instead of the simulator."""
    qtdnn = qtdnn_config(args) if args.grad == "qtdnn" else None
    noise = actor_noise(args) if runner is None else None
    return QuantumLayer(actor_circuit(args), grad=args.grad, shots=args.shots or None, qtdnn=qtdnn, seed=args.seed,
                        runner=runner, noise=noise)


def make_actor(args: Args, obs_dim: int, action_space: gym.spaces.Box,
               runner: CircuitRunner | None = None) -> nn.Module:
    """The actor of ``args.algo``: a classical MLP or a hybrid actor with the matching middle
    (``runner``: where an hdqnn- actor's PQC runs, see ``quantum_layer``); SAC's actors are
    tanh-squashed Gaussians, PPO's clipped Gaussians (its classical actor with tanh layers, CleanRL's)."""
    algo = base_algo(args.algo)
    gaussian, clipped_gaussian = algo == "sac", algo == "ppo"
    kind = args.algo.split("-")[0]
    if kind == algo:
        activation = nn.Tanh if clipped_gaussian else nn.ReLU
        return Actor(obs_dim, action_space, args.hidden_sizes, gaussian, clipped_gaussian, activation)
    width = args.qubits
    if kind == "hdqnn":
        middle: nn.Module = quantum_layer(args, runner)
    elif kind == "fc":
        middle = DenseMiddle(width)
    else:
        middle = RandomBitsMiddle(width, seed=args.seed)
    return HybridActor(obs_dim, action_space, width, middle, args.pre_hidden, args.post_hidden, gaussian,
                       clipped_gaussian)


def box_dims(env: gym.Env) -> tuple[int, int]:
    """(obs_dim, act_dim) of a flat-Box env (checked by ``envs.make_env``)."""
    return int(np.prod(env.observation_space.shape)), int(env.action_space.shape[0])
