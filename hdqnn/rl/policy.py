"""A trained actor as a function you can use: observations -> actions, without the run folder.

``load_policy(DIR)`` rebuilds the actor of a ``hdqnn train`` run from its checkpoint (checksum
verified by ``load_checkpoint``) exactly as ``hdqnn eval`` does, and wraps it in a :class:`Policy`:

    policy = load_policy("runs/Pendulum-v1__hdqnn-td3__1__...")
    action = policy(obs)            # [obs_dim] -> [act_dim]; NumPy in, NumPy out
    actions = policy(batch)         # [B, obs_dim] -> [B, act_dim]; torch in, torch out
    policy.save("pendulum.policy")  # one self-contained, checksummed file
    policy = Policy.load("pendulum.policy")

Actions are the actor's deterministic output (no exploration noise), already scaled to the env's
action bounds by the actor (``networks._ScaledActor``), float32. A batch of B observations is one
actor call, so an hDQNN policy evaluates its PQC for all B rows in one circuit call.

What "deterministic" means per algorithm:

* ``td3``, ``fc-td3``, and the SAC actors (``sac``, ``fc-sac``: the squashed Gaussian's mean, as
  ``hdqnn eval`` acts): a pure function of the observation.
* ``hdqnn-td3``/``hdqnn-sac`` with exact expectations (``shots=0``, the default): a pure function too. With shots
  (the run's, or ``shots=`` here, or any hardware ``runner``) every call draws fresh shots: the
  actions carry shot noise. On the simulator the shot RNG starts from the checkpoint's state, so a
  freshly loaded policy repeats ``hdqnn eval``'s actions call for call.
* PPO's actors (``ppo``, ``hdqnn-ppo``, ``fc-ppo``, ``rbg-ppo``): the Gaussian mean clipped to the
  action bounds, on observations normalised with the run's statistics at its checkpoint, frozen
  (``ppo.NormalizedActor``; none where the run had ``normalize_observation`` off); otherwise as their
  TD3/SAC twins below.
* ``rbg-td3``/``rbg-sac``: by design its middle layer ignores the observation and emits fresh random +-1 bits on
  every call (the ablation's point). The bits come from the actor's own generator, whose state is
  loaded with the policy: a freshly loaded policy gives a reproducible *sequence* of actions, but
  the action for an observation depends on how many calls came before.

A policy saved after calls keeps its RNG states as they are then, so ``Policy.load`` of the file
continues the same sequence bit for bit.

Loading does not take the run folder's write lock: a run that is still training can be loaded.
Checkpoints are replaced by an atomic rename and read through one open file, so the policy is the
one of the latest complete checkpoint, never a torn one.

The policy file (``save``) is the checkpoint's format (``checkpoint.write_checksummed``: a SHA-256
header, then one ``torch.save`` payload read with ``weights_only=True``) holding the run's
arguments, the actor's state dict, the observation and action spaces, the hdqnn version, for
an hDQNN actor the PQC as OpenQASM 3, and for a PPO actor its frozen observation statistics.
Loading rebuilds the actor from the arguments and refuses a file whose stored PQC differs from the
one this hdqnn builds, so a changed ansatz never loads silently.

``export`` writes the purely classical actors (td3, fc-td3, sac, fc-sac, ppo, fc-ppo, with their
observation normalisation) in a form that needs torch only: a ``.pt2`` file is torch.export's
program (``torch.export.load(path).module()(obs)``, obs float32 [B, obs_dim], any B >= 1), the
format torch recommends; any other name gets TorchScript (``torch.jit.load(path)(obs)``, [obs_dim]
or [B, obs_dim]), which torch 2.13 deprecates but libtorch still loads from C++. The hDQNN actor's
PQC runs hdqnn's simulator (or a hardware runner) from Python, which neither format can hold, and
the RBG ablation's bits come from a stateful generator: their portable form is ``save``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .. import __version__
from ..autograd import CircuitRunner, QuantumLayer
from ..qasm import dumps as qasm_dumps
from .args import Args
from .checkpoint import (
    CheckpointError, check_saved_state, load_checkpoint, read_checksummed, write_checksummed,
)
from .envs import make_env
from .networks import RandomBitsMiddle, make_actor
from .ppo import NormalizedActor, ObservationNormalizer

FORMAT = "hdqnn-rl-policy"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "hdqnn_version", "args", "observation_space", "action_space", "actor",
                 "circuit")


class Policy:
    """A trained actor: ``policy(obs)`` -> actions in the env's bounds, without exploration noise.

    ``obs``: [obs_dim] -> [act_dim] or [B, obs_dim] -> [B, act_dim]; a NumPy array (or list) gives
    a float32 NumPy array, a torch tensor gives a float32 tensor on the input's device. Build one
    with :func:`load_policy` (a run folder) or :meth:`Policy.load` (a saved policy file).

    Attributes: ``actor`` (the nn.Module, in eval mode), ``args`` (the run's :class:`Args`),
    ``observation_space`` / ``action_space`` (Gymnasium Boxes), ``device``.
    """

    def __init__(self, actor: nn.Module, args: Args, observation_space: gym.spaces.Box,
                 action_space: gym.spaces.Box, device: torch.device):
        self.actor = actor
        self.args = args
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = device

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def act_dim(self) -> int:
        return int(self.action_space.shape[0])

    def __repr__(self) -> str:
        return (f"Policy(algo={self.args.algo!r}, env_id={self.args.env_id!r}, obs_dim={self.obs_dim}, "
                f"act_dim={self.act_dim}, device={str(self.device)!r})")

    # ------------------------------------------------------------------ acting
    def __call__(self, obs: Any) -> np.ndarray | torch.Tensor:
        batch, batched = self._observations(obs)
        with torch.no_grad():  # like hdqnn eval: no gradient tape, no qtDNN fit
            actions = self.actor(batch)
        if not batched:
            actions = actions[0]
        if isinstance(obs, torch.Tensor):
            return actions.to(obs.device)
        return actions.cpu().numpy()

    def _observations(self, obs: Any) -> tuple[torch.Tensor, bool]:
        """obs as a float32 batch [B, obs_dim] on the policy's device, and whether it was batched;
        TypeError/ValueError naming the problem for anything else."""
        if isinstance(obs, torch.Tensor):
            if obs.dtype.is_complex or obs.dtype == torch.bool:
                raise TypeError(f"observations must be real numbers, got a tensor of dtype {obs.dtype}")
            batch = obs.detach().to(device=self.device, dtype=torch.float32)
        else:
            array = np.asarray(obs)
            if array.dtype.kind not in "fiu":
                raise TypeError(f"observations must be real numbers, got an array of dtype {array.dtype}")
            # the same conversion as hdqnn eval's, so the actions are bit-identical to its actions
            batch = torch.as_tensor(array, dtype=torch.float32).to(self.device)
        if batch.ndim not in (1, 2) or batch.shape[-1] != self.obs_dim or batch.numel() == 0:
            raise ValueError(f"observations must have shape [{self.obs_dim}] or [B, {self.obs_dim}] with B >= 1 "
                             f"({self.args.env_id}'s observation space is {self.observation_space}); got shape "
                             f"{tuple(batch.shape)}")
        if not bool(torch.isfinite(batch).all()):
            raise ValueError("observations contain NaN or infinite values")
        return (batch, True) if batch.ndim == 2 else (batch.unsqueeze(0), False)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write this policy to one self-contained, checksummed file (atomically); returns its path.

        ``Policy.load(path)`` gives a policy whose actions are bit-identical to this one's from
        now on; it needs neither the run folder nor the environment.
        """
        return write_checksummed(path, {
            "format": FORMAT,
            "version": VERSION,
            "hdqnn_version": __version__,
            "args": self.args.to_dict(),
            "observation_space": _box_state(self.observation_space),
            "action_space": _box_state(self.action_space),
            "actor": {k: v.cpu() if isinstance(v, torch.Tensor) else v
                      for k, v in _actor(self.actor).state_dict().items()},
            "circuit": _circuit_qasm(self.actor),
            "observation_normalization": _normalization_state(self.actor),
        })

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None,
             runner: CircuitRunner | None = None, shots: int | None = None) -> "Policy":
        """The policy in a file ``save`` wrote; ``device``, ``runner``, ``shots`` as in
        :func:`load_policy`. CheckpointError (a ValueError) for a missing, damaged or foreign file."""
        if Path(path).is_dir():
            raise CheckpointError(f"{str(path)!r} is a folder, not a policy file (a run folder loads with "
                                  "load_policy(DIR))")
        if not Path(path).is_file():
            raise CheckpointError(f"no policy file {str(path)!r}")
        state = read_checksummed(path, what="policy file", headerless_ok=False)
        check_saved_state(state, path, "policy file",
                          "an hdqnn policy file (a run folder's checkpoint loads with load_policy(DIR))",
                          FORMAT, VERSION, REQUIRED_KEYS)
        try:
            args = Args.from_dict(state["args"])
        except ValueError as exc:
            raise CheckpointError(f"policy file {str(path)!r} (saved by hdqnn {state['hdqnn_version']}) has "
                                  f"arguments this hdqnn cannot read: {exc}") from exc
        policy = _restore(args, _box(state["observation_space"]), _box(state["action_space"]), state["actor"],
                          device, runner, shots, state.get("observation_normalization"))
        if _circuit_qasm(policy.actor) != state["circuit"]:
            raise CheckpointError(f"policy file {str(path)!r} was saved by hdqnn {state['hdqnn_version']}, whose "
                                  f"PQC for these arguments differs from the one hdqnn {__version__} builds; "
                                  "load it with the hdqnn that saved it")
        return policy

    def export(self, path: str | os.PathLike) -> Path:
        """Write the actor for use with torch alone: torch.export's program if ``path`` ends in
        ``.pt2``, else TorchScript (see the module doc); ValueError for the actors that cannot be."""
        if _quantum_layer(self.actor) is not None:
            reason = ("its PQC is a QuantumLayer that runs hdqnn's simulator (or a hardware runner) from "
                      "Python, which is not a torch op")
        elif _has_random_bits(self.actor):
            reason = "its random bits come from a stateful torch.Generator kept outside the graph"
        else:
            reason = None
        if reason is not None:
            raise ValueError(f"a {self.args.algo} policy cannot be exported to torch.export or TorchScript: "
                             f"{reason}. Use policy.save(PATH) and hdqnn.rl.Policy.load(PATH) instead (one "
                             "self-contained file); export covers the classical actors (td3, sac, ppo, fc-*)")
        actor = copy.deepcopy(self.actor).cpu().eval()
        path = Path(path)
        if path.suffix == ".pt2":
            _export_program(actor, self.obs_dim, path)
        else:
            _export_torchscript(actor, self.obs_dim, path)
        return path


def _export_program(actor: nn.Module, obs_dim: int, path: Path) -> None:
    """torch.export's program of ``actor`` for any batch size (traced at 2: torch specialises 0 and 1)."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(actor, (torch.zeros(2, obs_dim),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def _export_torchscript(actor: nn.Module, obs_dim: int, path: Path) -> None:
    """TorchScript of ``actor`` behind the unbatched form and a shape check."""
    example = torch.zeros(1, obs_dim)
    torch.jit.script(_TorchScriptPolicy(torch.jit.trace(actor, example), obs_dim)).save(str(path))


class _TorchScriptPolicy(nn.Module):
    """The exported module: the traced actor, plus the unbatched form and a shape check."""

    def __init__(self, actor: nn.Module, obs_dim: int):
        super().__init__()
        self.actor = actor
        self.obs_dim = obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() not in (1, 2) or obs.size(-1) != self.obs_dim:
            raise ValueError("observations must have shape [obs_dim] or [B, obs_dim] (see the module's obs_dim)")
        batch = obs.to(torch.float32)
        if obs.dim() == 1:
            return self.actor(batch.unsqueeze(0))[0]
        return self.actor(batch)


def load_policy(run_dir: str | os.PathLike, device: str | torch.device | None = None,
                runner: CircuitRunner | None = None, shots: int | None = None) -> Policy:
    """The deterministic policy of the run in ``run_dir`` (its latest checkpoint), as ``hdqnn eval`` runs it.

    device: where the actor's layers run (default CPU); the PQC's circuits run on the simulator or
        the ``runner`` whatever the device.
    runner: for an hDQNN actor, a :class:`hdqnn.CircuitRunner` that executes the PQC instead of the
        simulator, e.g. ``hdqnn.hardware.LocalSampler(seed)`` or a Qiskit/Braket adapter. Those
        sample shots, so a run trained on exact expectations needs ``shots`` with them.
    shots: for an hDQNN actor, the PQC's shots per evaluation (default: the run's own; 0 = exact).

    Does not take the run folder's lock (see the module doc); CheckpointError for a missing or
    damaged checkpoint, ValueError for a runner or shots the run's actor cannot use.
    """
    checkpoint = load_checkpoint(run_dir)
    args = Args.from_dict(checkpoint["args"])
    env = make_env(args.env_id)  # only for its spaces: the checkpoint stores the actor, not the env
    try:
        observation_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    normalization = checkpoint.get("normalization", {}).get("observation")  # PPO's running statistics
    return _restore(args, observation_space, action_space, checkpoint["agent"]["actor"], device, runner, shots,
                    normalization)


def _restore(args: Args, observation_space: gym.spaces.Box, action_space: gym.spaces.Box,
             actor_state: dict[str, Any], device: str | torch.device | None, runner: CircuitRunner | None,
             shots: int | None, normalization: dict[str, Any] | None = None) -> Policy:
    """The actor that ``make_actor`` builds for ``args``, with ``actor_state`` loaded, as a Policy;
    behind the observation normalisation ``normalization`` (its ``mean`` and ``var``) if given."""
    args = _acting_args(args, runner, shots)
    try:
        device = torch.device("cpu" if device is None else device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    actor = make_actor(args, int(np.prod(observation_space.shape)), action_space, runner=runner)
    if (runner is not None or shots is not None) and _quantum_layer(actor) is None:
        raise ValueError(f"runner= and shots= set how an hDQNN actor's PQC runs; this {args.algo} policy has "
                         "no PQC")
    if _has_random_bits(actor) and device.type != "cpu":
        raise ValueError(f"an {args.algo} policy runs on the CPU (its random bits come from a CPU "
                         f"torch.Generator); got device={str(device)!r}")
    actor.load_state_dict(actor_state)
    if normalization is not None:
        actor = NormalizedActor(ObservationNormalizer(normalization["mean"], normalization["var"]), actor)
    return Policy(actor.to(device).eval(), args, observation_space, action_space, device)


def _acting_args(args: Args, runner: CircuitRunner | None, shots: int | None) -> Args:
    """The run's arguments with the PQC's shots for acting; ValueError where they cannot apply."""
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 0):
        raise ValueError(f"shots must be a non-negative int (0 = exact expectations), got {shots!r}")
    if args.grad == "adjoint" and (runner is not None or shots):
        # the layer refuses both: its exact adjoint gradient needs the exact simulator
        raise ValueError("this run was trained with grad='adjoint', whose PQC layer runs on the exact "
                         "simulator only: its policy cannot take shots or a hardware runner")
    return args if shots is None else Args.from_dict({**args.to_dict(), "shots": shots})


def _quantum_layer(actor: nn.Module) -> QuantumLayer | None:
    return next((m for m in actor.modules() if isinstance(m, QuantumLayer)), None)


def _actor(actor: nn.Module) -> nn.Module:
    """The actor network of a policy's module (inside a PPO policy's observation normalisation)."""
    return actor.actor if isinstance(actor, NormalizedActor) else actor


def _normalization_state(actor: nn.Module) -> dict[str, torch.Tensor] | None:
    """A PPO policy's frozen observation statistics (``mean``, ``var``), or None."""
    if not isinstance(actor, NormalizedActor):
        return None
    return {"mean": actor.normalizer.mean.cpu(), "var": actor.normalizer.var.cpu()}


def _has_random_bits(actor: nn.Module) -> bool:
    return any(isinstance(m, RandomBitsMiddle) for m in actor.modules())


def _circuit_qasm(actor: nn.Module) -> str | None:
    """The hDQNN actor's PQC as OpenQASM 3 (free inputs ``in_i``), or None without a PQC."""
    layer = _quantum_layer(actor)
    return None if layer is None else qasm_dumps(layer.circuit, measure=False)


def _box_state(space: gym.spaces.Box) -> dict[str, Any]:
    """A Box as tensors and plain values (loadable with ``weights_only=True``)."""
    return {"low": torch.from_numpy(np.array(space.low)), "high": torch.from_numpy(np.array(space.high)),
            "dtype": str(space.dtype)}


def _box(state: dict[str, Any]) -> gym.spaces.Box:
    return gym.spaces.Box(low=state["low"].numpy(), high=state["high"].numpy(), dtype=np.dtype(state["dtype"]))


__all__ = ["Policy", "load_policy"]
