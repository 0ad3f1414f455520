"""Build hook: compiles hdqnn._core_cpu (and hdqnn._core_cuda where nvcc is found) with CMake.

Package metadata lives in pyproject.toml; this file only drives CMake (the pattern of qsim and
PennyLane Lightning). Environment knobs:
  HDQNN_SKIP_EXT=1            install without compiling (the Numba / NumPy engines only)
  HDQNN_CUDA=AUTO|ON|OFF      build the CUDA engine (default AUTO: when nvcc is found)
  HDQNN_NATIVE=1              compile the CPU kernels with -march=native (not portable)
  HDQNN_CPU_VARIANTS=all|host x86-64 kernel variants (default all: portable; host: base and the best
                              this CPU runs, fewer compiles, as scripts/setup.sh does)
  CMAKE_BUILD_PARALLEL_LEVEL  parallel compile jobs (default: one per CPU)
  CMAKE_ARGS                  extra CMake arguments
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()
TRUTHY = ("1", "on", "true", "yes")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


def _cmake_executable() -> str:
    """The cmake of the pip `cmake` package when installed (build requirement), else PATH's."""
    try:
        from cmake import CMAKE_BIN_DIR  # type: ignore[import-not-found]

        candidate = Path(CMAKE_BIN_DIR) / "cmake"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("cmake")
    if found is None:
        raise RuntimeError("CMake is required to build hdqnn's C++ engine (pip install cmake), "
                           "or set HDQNN_SKIP_EXT=1 to install without it")
    return found


class CMakeExtension(Extension):
    """An extension whose sources CMake knows; setuptools only names the output."""

    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        ext_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        config = "Debug" if self.debug else "Release"
        # a fixed folder (not setuptools' temporary one) so that rebuilds are incremental
        build_dir = ROOT / "build" / f"cmake-{sysconfig.get_config_var('SOABI') or 'py'}-{config.lower()}"
        stamp = "\n".join([str(ROOT), sys.executable, pybind11.get_cmake_dir()])
        _reset_if_stale(build_dir, stamp)
        cmake = _cmake_executable()
        configure = [
            cmake, "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_BUILD_TYPE={config}",
            f"-DHDQNN_OUTPUT_DIR={ext_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DHDQNN_CUDA={os.environ.get('HDQNN_CUDA', 'AUTO').upper()}",
            f"-DHDQNN_NATIVE={'ON' if _env_flag('HDQNN_NATIVE') else 'OFF'}",
            f"-DHDQNN_CPU_VARIANTS={os.environ.get('HDQNN_CPU_VARIANTS', 'ALL').upper()}",
            *shlex.split(os.environ.get("CMAKE_ARGS", "")),
        ]
        subprocess.run(configure, check=True)
        build = [cmake, "--build", str(build_dir), "--config", config]
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:  # CMake's own default is one job
            build += ["--parallel", str(self.parallel or os.cpu_count() or 1)]
        subprocess.run(build, check=True)
        (build_dir / "hdqnn-stamp.txt").write_text(stamp)
        if self.inplace or getattr(self, "editable_mode", False):
            _copy_companions(ext_dir, Path(self.get_ext_fullpath(ext.name)).name)


def _copy_companions(ext_dir: Path, own_name: str) -> None:
    """Editable installs copy only the declared module into the source tree; CMake may also have
    built _core_cuda next to it, which must follow."""
    package_dir = ROOT / "hdqnn"
    if ext_dir == package_dir:
        return
    for module in ext_dir.glob("_core_*" + sysconfig.get_config_var("EXT_SUFFIX")):
        if module.name != own_name:
            shutil.copy2(module, package_dir / module.name)


def _reset_if_stale(build_dir: Path, stamp: str) -> None:
    """A CMake cache from another source tree or interpreter cannot be reused: start afresh."""
    stamp_file = build_dir / "hdqnn-stamp.txt"
    if build_dir.exists() and (not stamp_file.exists() or stamp_file.read_text() != stamp):
        shutil.rmtree(build_dir)


ext_modules = [] if _env_flag("HDQNN_SKIP_EXT") else [CMakeExtension("hdqnn._core_cpu")]
setup(ext_modules=ext_modules, cmdclass={"build_ext": CMakeBuild})
