"""One deterministic episode of a trained policy as an MP4 video (``hdqnn eval DIR --video FILE.mp4``).

The episode is ``hdqnn eval``'s first: the env reset with the evaluation seed (run seed +
``EVAL_SEED_OFFSET``), the policy acting without exploration, one frame after the reset and one
after every step, at the env's ``render_fps``. Frames are written as they come (a 1,000-step MuJoCo
episode is 0.7 GB of raw frames), into a temporary file renamed on success.

Rendering is offscreen (``render_mode="rgb_array"``). MuJoCo picks its OpenGL platform from
``MUJOCO_GL``; unset, Gymnasium would try GLFW first, which needs a display, so this module sets
``egl`` (headless, through libEGL) unless the variable is given: ``MUJOCO_GL=osmesa`` (software,
libOSMesa) or ``glfw`` (a display) choose the others. Pendulum and the other classic-control envs
draw with pygame. Whatever is missing (imageio-ffmpeg to write MP4, pygame, an OpenGL platform) is
a :class:`VideoUnavailable` naming it, raised before the episode starts.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import gymnasium as gym
import numpy as np

from .evaluate import EVAL_SEED_OFFSET

#: MuJoCo's offscreen OpenGL platform when MUJOCO_GL is unset: headless EGL.
DEFAULT_MUJOCO_GL = "egl"
#: Frame rate of an env whose metadata has no ``render_fps``.
DEFAULT_FPS = 30
VIDEO_SUFFIX = ".mp4"
#: What each MuJoCo OpenGL platform needs, for the error message.
MUJOCO_GL_NEEDS = {
    "egl": "libEGL with a Mesa or NVIDIA driver (Debian: apt-get install libegl1 libgl1-mesa-dri)",
    "osmesa": "libOSMesa (Debian: apt-get install libosmesa6)",
    "glfw": "a display (X11 or Wayland) and glfw",
}


class VideoUnavailable(RuntimeError):
    """This machine cannot render the env or write the video; the message names what is missing."""


@dataclass(frozen=True)
class Video:
    """A recorded episode: the file, its frame count (steps + 1) and rate, and the episode's return."""

    path: Path
    frames: int
    fps: float
    episode_return: float


def record_video(policy: Callable[[np.ndarray], np.ndarray], env_id: str, path: str | os.PathLike, seed: int,
                 perturb: Mapping[str, float] | None = None) -> Video:
    """Record one deterministic episode of ``policy`` (one observation -> one action, e.g. a
    :class:`hdqnn.rl.Policy`) on ``env_id`` from hdqnn eval's first episode seed to ``path`` (.mp4).

    ``perturb``: perturbation name -> level applied to the env as ``hdqnn eval --perturb`` does.
    VideoUnavailable (before the episode) where rendering or MP4 writing is not possible here.
    """
    from .perturb import apply_perturbations

    path = Path(path)
    if path.suffix.lower() != VIDEO_SUFFIX:
        raise ValueError(f"the video is written as MP4: give a file name ending in {VIDEO_SUFFIX}, got {str(path)!r}")
    imageio = _mp4_writer_module()
    env = _render_env(env_id)
    tmp = path.with_name(path.name + ".part" + VIDEO_SUFFIX)
    try:
        env = apply_perturbations(env, perturb or {})
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET)
        first = _first_frame(env, env_id)
        fps = float(env.metadata.get("render_fps") or DEFAULT_FPS)
        # macro_block_size=2: H.264 needs even sizes; the default 16 would rescale 500x500 frames
        with imageio.get_writer(tmp, fps=fps, macro_block_size=2) as writer:
            writer.append_data(first)
            frames, episode_return, done = 1, 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                writer.append_data(env.render())
                frames, episode_return, done = frames + 1, episode_return + float(reward), terminated or truncated
        os.replace(tmp, path)
    finally:
        env.close()
        tmp.unlink(missing_ok=True)
    return Video(path, frames, fps, episode_return)


def check_mujoco_gl() -> None:
    """With ``MUJOCO_GL`` set, importing mujoco loads that OpenGL platform and fails there when its
    library is missing (before any env is made): import it now, so that the failure is a
    VideoUnavailable naming what is missing. Nothing to do without MUJOCO_GL, without mujoco, or
    once mujoco is imported."""
    backend = os.environ.get("MUJOCO_GL")
    if backend is None or sys.modules.get("mujoco") is not None or importlib.util.find_spec("mujoco") is None:
        return
    try:
        import mujoco  # noqa: F401
    # Broad on purpose: RuntimeError (an unknown MUJOCO_GL), ImportError, or AttributeError from
    # PyOpenGL when the platform's library is absent.
    except Exception as exc:  # noqa: BLE001
        raise VideoUnavailable(f"mujoco cannot load its OpenGL platform MUJOCO_GL={backend}: {type(exc).__name__}: "
                               f"{exc}. {_platform_needs(backend)} (unset MUJOCO_GL for an env without "
                               "MuJoCo)") from None


def _mp4_writer_module():
    """imageio's v2 API with its FFmpeg plugin's binary, or VideoUnavailable naming the package."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg
    except ImportError as exc:
        raise VideoUnavailable(f"writing MP4 needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg, "
                               f"or pip install 'hdqnn[mujoco]'): {exc}") from None
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise VideoUnavailable(f"imageio-ffmpeg found no ffmpeg binary: {exc}") from None
    return imageio


def _render_env(env_id: str) -> gym.Env:
    """``env_id`` made to render RGB frames offscreen (MUJOCO_GL defaulted for MuJoCo envs)."""
    os.environ.setdefault("MUJOCO_GL", DEFAULT_MUJOCO_GL)
    # pygame's display driver: no window is opened, and the dummy one needs no display server
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except gym.error.Error as exc:
        raise VideoUnavailable(f"{env_id} cannot be made to render RGB frames: {exc}") from None
    return env


def _first_frame(env: gym.Env, env_id: str) -> np.ndarray:
    """The frame after reset: the first render is where a missing renderer shows."""
    try:
        frame = env.render()
    # Broad on purpose: a missing renderer surfaces as DependencyNotInstalled (pygame), RuntimeError
    # or KeyError (MUJOCO_GL), mujoco.FatalError (no OpenGL context), or AttributeError/ImportError
    # from PyOpenGL (libOSMesa or libEGL absent), depending on the platform.
    except Exception as exc:  # noqa: BLE001
        raise VideoUnavailable(f"{env_id} cannot render offscreen here: {type(exc).__name__}: {exc}"
                               f"{_mujoco_hint(env)}") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise VideoUnavailable(f"{env_id} rendered {type(frame).__name__}, not an RGB frame")
    return frame


def _mujoco_hint(env: gym.Env) -> str:
    """For a MuJoCo env: which OpenGL platform it tried, what that needs, and the alternatives."""
    if not hasattr(env.unwrapped, "mujoco_renderer"):
        return ""
    return f". {_platform_needs(os.environ.get('MUJOCO_GL', ''))}"


def _platform_needs(backend: str) -> str:
    """What MuJoCo's OpenGL platform ``backend`` needs, and the alternatives."""
    needs = MUJOCO_GL_NEEDS.get(backend, f"is not one of {', '.join(MUJOCO_GL_NEEDS)}")
    others = "; ".join(f"MUJOCO_GL={name} needs {what}" for name, what in MUJOCO_GL_NEEDS.items() if name != backend)
    verb = "" if backend not in MUJOCO_GL_NEEDS else "needs "
    return f"MuJoCo renders through MUJOCO_GL={backend}, which {verb}{needs}; {others}"


__all__ = ["Video", "VideoUnavailable", "check_mujoco_gl", "record_video", "DEFAULT_MUJOCO_GL"]
