"""hdqnn eval --video: one deterministic episode as MP4, and a clear error where rendering is impossible."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hdqnn.cli import EXIT_NO_VIDEO, EXIT_USAGE, main
from hdqnn.rl import evaluate_run, load_policy
from hdqnn.rl.train import train
from hdqnn.rl.video import VideoUnavailable, record_video

from ..qasm.optional import import_or_skip
from .conftest import tiny_args

#: Pendulum's episode: 200 steps (its TimeLimit), rendered at 500 x 500, 30 frames per second.
PENDULUM_STEPS, PENDULUM_FRAME, PENDULUM_FPS = 200, (500, 500, 3), 30


def falling_hopper(obs: np.ndarray) -> np.ndarray:
    """Full torque on every joint: the Hopper falls within a few dozen steps (a short episode to render)."""
    return np.ones(3, np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished TD3 run on Pendulum (its actor was updated: past learning_starts)."""
    args = tiny_args(tmp_path_factory.mktemp("video_run"), algo="td3", total_timesteps=100, tensorboard=False)
    train(args)
    return args.out_dir


@pytest.fixture
def render_env(monkeypatch):
    """MUJOCO_GL and SDL_VIDEODRIVER unset for the test, and restored after the defaults that
    record_video sets."""
    for name in ("MUJOCO_GL", "SDL_VIDEODRIVER"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def writer():
    """imageio's reader/writer with the FFmpeg plugin (the test extra installs imageio-ffmpeg)."""
    import_or_skip("imageio_ffmpeg", "test")
    return import_or_skip("imageio.v2", "test")


def test_pendulum_video_is_the_first_evaluation_episode(run_dir, render_env, writer, tmp_path):
    import_or_skip("pygame", "test")
    video = record_video(load_policy(run_dir), "Pendulum-v1", tmp_path / "episode.mp4", seed=1)

    assert video.frames == PENDULUM_STEPS + 1  # the reset's frame and one per step
    assert video.fps == PENDULUM_FPS
    reader = writer.get_reader(video.path)
    assert reader.count_frames() == video.frames
    assert reader.get_meta_data()["fps"] == PENDULUM_FPS
    frame = reader.get_data(0)
    assert frame.shape == PENDULUM_FRAME and frame.dtype == np.uint8 and frame.std() > 0
    reader.close()
    eval_returns, _ = evaluate_run(run_dir, episodes=1)
    assert video.episode_return == pytest.approx(eval_returns[0], abs=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode.mp4"]  # no temporary file left


def test_hdqnn_eval_video_flag(run_dir, render_env, writer, tmp_path, capsys):
    import_or_skip("pygame", "test")
    path = tmp_path / "eval.mp4"
    assert main(["eval", run_dir, "--episodes", "1", "--video", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"video: {path} ({PENDULUM_STEPS + 1} frames at {PENDULUM_FPS} fps" in out
    assert "1 deterministic episodes" in out
    assert writer.get_reader(path).count_frames() == PENDULUM_STEPS + 1


def test_video_needs_an_mp4_name(run_dir, tmp_path, capsys):
    assert main(["eval", run_dir, "--video", str(tmp_path / "episode.avi")]) == EXIT_USAGE
    assert "ending in .mp4" in capsys.readouterr().err


def test_missing_pygame_is_a_clear_message_not_a_traceback(run_dir, render_env, writer, tmp_path, capsys):
    render_env.setitem(sys.modules, "pygame", None)  # as if pygame were not installed
    path = tmp_path / "episode.mp4"
    with pytest.raises(VideoUnavailable, match="Pendulum-v1 cannot render offscreen here.*pygame"):
        record_video(load_policy(run_dir), "Pendulum-v1", path, seed=1)
    assert list(tmp_path.iterdir()) == []

    assert main(["eval", run_dir, "--video", str(path)]) == EXIT_NO_VIDEO
    captured = capsys.readouterr()
    assert "hdqnn eval: no video recorded: Pendulum-v1 cannot render offscreen here" in captured.err
    assert "pygame" in captured.err and "Traceback" not in captured.err
    assert "deterministic episodes" not in captured.out  # it stops before evaluating


def test_missing_ffmpeg_names_the_package(run_dir, render_env, tmp_path):
    render_env.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(VideoUnavailable, match=r"imageio-ffmpeg"):
        record_video(load_policy(run_dir), "Pendulum-v1", tmp_path / "episode.mp4", seed=1)


# gymnasium's viewer, whose context failed to open, raises in its __del__ (not ours to fix)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mujoco_without_its_opengl_platform_names_what_is_missing(render_env, writer, tmp_path):
    import_or_skip("mujoco", "mujoco")
    from gymnasium.envs.mujoco import mujoco_rendering

    def no_egl(width, height):
        raise ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")

    render_env.setitem(mujoco_rendering._ALL_RENDERERS, "egl", no_egl)
    with pytest.raises(VideoUnavailable, match=r"Hopper-v4 cannot render.*libEGL.so.1.*MUJOCO_GL=egl, which needs "
                                               r"libEGL.*MUJOCO_GL=osmesa needs libOSMesa"):
        record_video(falling_hopper, "Hopper-v4", tmp_path / "hopper.mp4", seed=1)
    assert list(tmp_path.iterdir()) == []


def test_mujoco_renders_offscreen_with_egl(render_env, writer, tmp_path):
    import_or_skip("mujoco", "mujoco")
    try:
        video = record_video(falling_hopper, "Hopper-v4", tmp_path / "hopper.mp4", seed=1)
    except VideoUnavailable as exc:
        pytest.skip(f"no offscreen OpenGL platform on this machine: {exc}")
    reader = writer.get_reader(video.path)
    assert reader.count_frames() == video.frames > 1
    assert video.fps == pytest.approx(125.0)  # Hopper's 1 / (frame_skip * timestep)
    assert reader.get_data(0).std() > 0  # a rendered scene, not a blank frame


def test_a_broken_mujoco_gl_is_a_message_from_the_command(run_dir, tmp_path):
    """mujoco loads MUJOCO_GL's platform on import (an unknown one raises there): the command
    reports it, in a fresh process where mujoco is not imported yet."""
    import_or_skip("mujoco", "mujoco")
    env = {**os.environ, "MUJOCO_GL": "no-such-platform"}
    done = subprocess.run([sys.executable, "-m", "hdqnn", "eval", run_dir, "--video", str(tmp_path / "e.mp4")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_NO_VIDEO, done.stderr
    assert "no video recorded: mujoco cannot load its OpenGL platform MUJOCO_GL=no-such-platform" in done.stderr
    assert "Traceback" not in done.stderr and "MUJOCO_GL=egl needs libEGL" in done.stderr
