"""Perturbed evaluation: a trained policy under changed dynamics and sensing (``hdqnn eval --perturb``).

Each perturbation is a name and a level; ``apply_perturbations(env, {"mass": 1.5, "obs_noise": 0.05})``
returns the env with all of them applied. The levels mean:

========================  =====================================================================  =====================
name                      what changes                                                           applies to
========================  =====================================================================  =====================
``mass=S``                every body's mass and rotational inertia times S (the same shapes      MuJoCo; Pendulum ``m``
                          made of an S-times denser material)
``friction=S``            every geom's friction coefficients (sliding, torsional, rolling)       MuJoCo
                          times S
``gain=S``                every actuator's gear times S: the force or torque per unit of         MuJoCo
                          action (the ``motor`` actuators of Gymnasium's MuJoCo envs)
``gravity=S``             the gravity vector times S                                             MuJoCo; Pendulum ``g``
``length=S``              the pole's length times S                                              Pendulum ``l``
``obs_noise=SIGMA``       Gaussian noise of standard deviation SIGMA, in the observation's own   every env
                          units (absolute), added to every observation component
``action_noise=F``        Gaussian noise of standard deviation F times the action's half-range   every env
                          ``(high - low) / 2`` per component, then clipped to the bounds
``action_delay=K``        the env executes the action chosen K steps earlier (an integer; the    every env
                          first K steps execute the middle of the action space)
========================  =====================================================================  =====================

Physical parameters are model edits (``env.unwrapped.model`` fields for MuJoCo, attributes of
Pendulum-v1's env) made from a copy of their ORIGINAL values kept per env: applying ``mass=1.5``
twice, or ``mass=1.5`` then ``mass=0.5``, to the same env gives 1.5 then 0.5 times the original,
never a compounded 2.25 or 0.75. ``restore_parameters(env)`` puts the originals back. Resets keep
the edits (MuJoCo and Pendulum reset their state, not their model).

Noise is deterministic: each noise wrapper re-seeds its generator from the seed of every seeded
``reset`` (its own stream per wrapper), so two evaluations with the same episode seeds agree
exactly, and every level of a sweep sees the same noise draws, scaled.
"""
from __future__ import annotations

import math
import numbers
import weakref
from collections import deque
from dataclasses import dataclass
from functools import reduce
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv

#: Noise streams: an episode seed s seeds each wrapper's generator with [s, stream].
OBS_NOISE_STREAM = 0x0B5
ACTION_NOISE_STREAM = 0xAC7


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: its kind of level, default sweep levels, and what it does."""

    name: str
    kind: str
    """"scale" (a factor > 0; 1 = unperturbed), "std" (>= 0; 0 = unperturbed) or "steps" (an int >= 0)"""
    levels: tuple[float, ...]
    """the default levels of ``hdqnn generalize``"""
    doc: str

    @property
    def neutral(self) -> float:
        """The level that changes nothing."""
        return 1.0 if self.kind == "scale" else 0.0


_SCALES = (0.5, 0.75, 1.25, 1.5)
PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("mass", "scale", _SCALES, "body masses and inertias times S (MuJoCo; Pendulum's m)"),
    Perturbation("friction", "scale", _SCALES, "geom friction coefficients times S (MuJoCo)"),
    Perturbation("gain", "scale", _SCALES, "actuator gears (force per unit of action) times S (MuJoCo)"),
    Perturbation("gravity", "scale", _SCALES, "gravity times S (MuJoCo; Pendulum's g)"),
    Perturbation("length", "scale", _SCALES, "pole length times S (Pendulum's l)"),
    Perturbation("obs_noise", "std", (0.01, 0.05, 0.1), "Gaussian observation noise, absolute std SIGMA"),
    Perturbation("action_noise", "std", (0.05, 0.1, 0.2),
                 "Gaussian action noise, std F times the action half-range, clipped to the bounds"),
    Perturbation("action_delay", "steps", (1, 2, 3), "actions executed K steps late"),
)}

#: Physical parameters: perturbation -> the MuJoCo model fields it scales.
MUJOCO_FIELDS = {"mass": ("body_mass", "body_inertia"), "friction": ("geom_friction",),
                 "gain": ("actuator_gear",), "gravity": ("opt.gravity",)}
#: Physical parameters: perturbation -> the Pendulum-v1 attribute it scales.
PENDULUM_ATTRS = {"mass": "m", "length": "l", "gravity": "g"}
#: Perturbations made by wrappers, which apply to every env (Box spaces, checked by make_env).
WRAPPED = ("obs_noise", "action_noise", "action_delay")

#: unwrapped env -> {(root, path): the parameter's original value}, kept while the env lives (the
#: values hold no reference to the env, or it would never be freed).
_ORIGINALS: "weakref.WeakKeyDictionary[gym.Env, dict[tuple[str, str], np.ndarray]]" = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------ parsing
def parse_perturbations(items: Sequence[str]) -> dict[str, float]:
    """``["mass=1.5", "action_delay=2"]`` -> ``{"mass": 1.5, "action_delay": 2.0}``; ValueError for
    bad syntax, an unknown name, a repeated one or an invalid level (see ``check_level``)."""
    spec: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise ValueError(f"perturbation {item!r} is not NAME=LEVEL (e.g. mass=1.5); known: {known_names()}")
        if name in spec:
            raise ValueError(f"perturbation {name!r} is given twice")
        spec[name] = check_level(name, _number(name, value))
    return spec


def parse_levels(items: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """``["mass=0.5,2", "gravity"]`` -> ``{"mass": (0.5, 2.0), "gravity": <its default levels>}``."""
    levels: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        _known(name)
        if name in levels:
            raise ValueError(f"perturbation {name!r} is given twice")
        if sep:
            parts = [v for v in values.split(",") if v.strip()]
            if not parts:
                raise ValueError(f"--levels {item!r} lists no levels (NAME=L1,L2,... or NAME for its defaults)")
            levels[name] = tuple(dict.fromkeys(check_level(name, _number(name, v)) for v in parts))
        else:
            levels[name] = PERTURBATIONS[name].levels
    return levels


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"perturbation {name}: level {text.strip()!r} is not a number") from None


def _known(name: str) -> Perturbation:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {known_names()}")
    return PERTURBATIONS[name]


def known_names() -> str:
    return ", ".join(PERTURBATIONS)


def check_level(name: str, level: float) -> float:
    """``level`` as a float if valid for ``name``: a scale is finite and > 0, a noise std finite
    and >= 0, a delay a whole number >= 0; ValueError otherwise (or for an unknown name)."""
    p = _known(name)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not math.isfinite(level):
        raise ValueError(f"perturbation {name}: level must be a finite number, got {level!r}")
    if p.kind == "scale" and level <= 0:
        raise ValueError(f"perturbation {name}: a scale must be > 0 (1 = unperturbed), got {level}")
    if p.kind == "std" and level < 0:
        raise ValueError(f"perturbation {name}: a noise std must be >= 0 (0 = none), got {level}")
    if p.kind == "steps" and (level < 0 or level != int(level)):
        raise ValueError(f"perturbation {name}: a delay is a whole number of steps >= 0, got {level}")
    return float(level)


def describe() -> str:
    """One line per perturbation (the CLI's help): name, what it does, default sweep levels."""
    return "\n".join(f"  {p.name:13s} {p.doc} (sweep levels {', '.join(f'{v:g}' for v in p.levels)})"
                     for p in PERTURBATIONS.values())


def format_spec(spec: Mapping[str, float]) -> str:
    """``{"mass": 1.5, "action_delay": 2.0}`` -> ``"mass=1.5 action_delay=2"``."""
    return " ".join(f"{name}={level:g}" for name, level in spec.items())


# ------------------------------------------------------------------------------------ which apply
def _mujoco_model(env: gym.Env) -> Any:
    """The env's MuJoCo model, or None for a non-MuJoCo env."""
    model = getattr(env.unwrapped, "model", None)
    return model if hasattr(model, "body_mass") and hasattr(model, "opt") else None


def _targets(name: str, env: gym.Env) -> list[tuple[str, str]]:
    """(root, dotted attribute path) of each parameter ``name`` scales in ``env``, the root "model"
    (the MuJoCo model) or "env" (the unwrapped env); [] if none."""
    model = _mujoco_model(env)
    if model is not None and name in MUJOCO_FIELDS:
        return [("model", path) for path in MUJOCO_FIELDS[name] if np.asarray(_read(model, path)).size]
    if isinstance(env.unwrapped, PendulumEnv) and name in PENDULUM_ATTRS:
        return [("env", PENDULUM_ATTRS[name])]
    return []


def _root(env: gym.Env, root: str) -> Any:
    return env.unwrapped.model if root == "model" else env.unwrapped


def supported(env: gym.Env) -> list[str]:
    """The perturbations that apply to ``env``, in ``PERTURBATIONS`` order."""
    return [name for name in PERTURBATIONS if name in WRAPPED or _targets(name, env)]


def _env_name(env: gym.Env) -> str:
    spec = env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


def check_perturbations(env: gym.Env, spec: Mapping[str, float]) -> None:
    """ValueError naming the env and what it supports if a name in ``spec`` is unknown or does not
    apply to ``env`` (friction on Pendulum, length on a MuJoCo env), or a level is invalid."""
    can = supported(env)
    for name, level in spec.items():
        if name not in can:
            what = f"unknown perturbation {name!r}" if name not in PERTURBATIONS else \
                f"perturbation {name!r} ({PERTURBATIONS[name].doc}) does not apply to {_env_name(env)}"
            raise ValueError(f"{what}; {_env_name(env)} supports: {', '.join(can)}")
        check_level(name, level)


# ------------------------------------------------------------------------------------ applying
def apply_perturbations(env: gym.Env, spec: Mapping[str, float]) -> gym.Env:
    """``env`` with every perturbation of ``spec`` (name -> level) applied: physical parameters
    edited in place from their originals (the ones ``spec`` leaves out are restored), then the
    wrappers (delay outermost, so noise is drawn when an action executes). See the module doc."""
    check_perturbations(env, spec)
    for name in PERTURBATIONS:
        if name not in WRAPPED and _targets(name, env):
            scale_parameter(env, name, spec.get(name, 1.0))
    if spec.get("obs_noise"):
        env = ObservationNoise(env, spec["obs_noise"])
    if spec.get("action_noise"):
        env = ActionNoise(env, spec["action_noise"])
    if spec.get("action_delay"):
        env = ActionDelay(env, int(spec["action_delay"]))
    return env


def scale_parameter(env: gym.Env, name: str, scale: float) -> None:
    """Set the parameters of perturbation ``name`` to ``scale`` times their original values."""
    targets = _targets(name, env)
    if not targets:
        raise ValueError(f"perturbation {name!r} does not apply to {_env_name(env)}; it supports: "
                         f"{', '.join(supported(env))}")
    check_level(name, scale)
    originals = _ORIGINALS.setdefault(env.unwrapped, {})
    for root, path in targets:
        target = _root(env, root)
        original = originals.setdefault((root, path), np.array(_read(target, path), copy=True))
        _write(target, path, original * scale)


def restore_parameters(env: gym.Env) -> None:
    """Put back the original value of every parameter a perturbation changed in ``env``."""
    for (root, path), original in _ORIGINALS.pop(env.unwrapped, {}).items():
        _write(_root(env, root), path, original)


def _read(target: Any, path: str) -> Any:
    return reduce(getattr, path.split("."), target)


def _write(target: Any, path: str, value: np.ndarray) -> None:
    """In place for arrays (MuJoCo fields are views of the model's memory), else a float attribute."""
    *parents, last = path.split(".")
    owner = reduce(getattr, parents, target)
    current = getattr(owner, last)
    if isinstance(current, np.ndarray):
        current[...] = value
    else:
        setattr(owner, last, float(value))


def _episode_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


class _SeededNoise:
    """Mixin: the noise generator ``rng``, re-seeded from every seeded reset (seed 0 until the first)."""

    stream: int

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        # Listed before the gym wrapper base, so super() is that wrapper's own reset.
        if seed is not None:
            self.rng = _episode_rng(seed, self.stream)
        return super().reset(seed=seed, options=options)


class ObservationNoise(_SeededNoise, gym.ObservationWrapper):
    """Adds N(0, std**2) noise, in the observation's units, to every observation component."""

    stream = OBS_NOISE_STREAM

    def __init__(self, env: gym.Env, std: float):
        super().__init__(env)
        self.std = check_level("obs_noise", std)
        self.rng = _episode_rng(0, self.stream)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation)
        return (obs + self.rng.normal(0.0, self.std, obs.shape)).astype(obs.dtype)


class ActionNoise(_SeededNoise, gym.ActionWrapper):
    """Adds N(0, (fraction * half-range)**2) noise to each action component, clipped to the bounds."""

    stream = ACTION_NOISE_STREAM

    def __init__(self, env: gym.Env, fraction: float):
        super().__init__(env)
        self.fraction = check_level("action_noise", fraction)
        space = env.action_space
        self.std = self.fraction * (space.high - space.low) / 2.0
        self.rng = _episode_rng(0, self.stream)

    def action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action)
        space = self.action_space
        noisy = a + self.std * self.rng.standard_normal(a.shape)
        return np.clip(noisy, space.low, space.high).astype(space.dtype)


class ActionDelay(gym.Wrapper):
    """The env executes the action chosen ``steps`` steps earlier; an episode's first ``steps``
    steps execute the middle of the action space (zero for symmetric bounds)."""

    def __init__(self, env: gym.Env, steps: int):
        super().__init__(env)
        self.steps = int(check_level("action_delay", steps))
        space = env.action_space
        self.neutral = ((space.low + space.high) / 2.0).astype(space.dtype)
        self.pending: deque[np.ndarray] = deque()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.pending = deque(self.neutral.copy() for _ in range(self.steps))
        return self.env.reset(seed=seed, options=options)

    def step(self, action: np.ndarray):
        self.pending.append(np.array(action, copy=True))
        return self.env.step(self.pending.popleft())


__all__ = ["PERTURBATIONS", "Perturbation", "apply_perturbations", "check_perturbations", "parse_perturbations",
           "parse_levels", "supported", "scale_parameter", "restore_parameters", "ObservationNoise", "ActionNoise",
           "ActionDelay", "format_spec", "describe"]
