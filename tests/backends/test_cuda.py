"""The GPU engines: the compiled ``cuda`` backend (hdqnn._core_cuda) and the ``cupy`` backend (the
same kernel source through NVRTC).

Without a GPU (CI, development machines) this file still tests what a CPU can: the compiled module
imports and reports zero devices with the reason; asking for a GPU engine fails loudly and says
why; the Python mirrors (meta table, launch policy) agree with the compiled constants and policy;
Philox matches its known-answer vectors; the kernels' own code, run on the host by _core_cuda's
emulator with emulated threads, warps and blocks, matches the NumPy reference for every task; and
NVRTC compiles the kernel source when libnvrtc is installed. Tests marked ``gpu`` need a device and
skip with the reason 'no CUDA device' when the device count is 0.

``HDQNN_REQUIRE_CUDA_BUILD=1`` (CI with nvcc) turns a missing _core_cuda into a failure.
"""
from __future__ import annotations

import ctypes
import glob
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from hdqnn import Circuit, Input, Weight
from hdqnn.backends import device_program as dp
from hdqnn.backends import gpu_base, launch
from hdqnn.backends.numpy_ref import NumpyBackend
from hdqnn.circuits import GATES_BY_CODE, compile_observables
from tests.circuit_factory import random_circuit, random_paulis

TOL = {np.float64: 1e-10, np.float32: 1e-5}
COMPLEX = {np.float64: np.complex128, np.float32: np.complex64}
H100_SMEM_OPTIN = 232448  # cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100 / H200
H100_SMS = 132
#: (threads_per_sample, samples_per_block, warp, shared_state, grid): one thread; sub-warp groups
#: sharing a warp; groups spanning several warps; the global-memory path; fewer blocks than
#: sample groups (the grid-stride loop) with a partial last group.
EMULATED_LAUNCHES = [(1, 1, 32, True, 1), (2, 2, 2, True, 2), (4, 2, 2, True, 1), (4, 1, 2, False, 2),
                     (8, 2, 4, False, 1), (2, 3, 32, True, 2)]
KAT = [  # Random123's known-answer vectors for Philox4x32-10
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def core():
    """hdqnn._core_cuda; skipped when not built, failed when HDQNN_REQUIRE_CUDA_BUILD=1."""
    try:
        return importlib.import_module("hdqnn._core_cuda")
    except ImportError as exc:
        if os.environ.get("HDQNN_REQUIRE_CUDA_BUILD") == "1":
            pytest.fail(f"HDQNN_REQUIRE_CUDA_BUILD=1 but hdqnn._core_cuda does not import: {exc}")
        pytest.skip(f"hdqnn._core_cuda is not built (no nvcc at install time): {exc}")


def _cupy_device_count() -> int:
    try:
        import cupy
    except ImportError:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


def gpu_device_count() -> int:
    """CUDA devices seen by the compiled module or, when it is not built, by CuPy."""
    from hdqnn.backends.cuda import device_count

    return max(device_count(), _cupy_device_count())


@pytest.fixture(params=["cuda", "cupy"])
def gpu_engine(request):
    """Each GPU engine; skipped on machines without a device. With a device, the compiled engine
    must load (a GPU machine builds it); CuPy is optional and skipped with the reason."""
    if gpu_device_count() == 0:
        pytest.skip("no CUDA device")
    if request.param == "cuda":
        from hdqnn.backends.cuda import CudaBackend

        return CudaBackend()
    pytest.importorskip("cupy", reason="CuPy missing")
    from hdqnn.backends.cupy_backend import CupyBackend

    return CupyBackend()


@pytest.fixture
def registered():
    """The GPU engines in the registry (the lead adds them to _ENGINES; registering is idempotent)."""
    from hdqnn.backends import register_backend

    register_backend("cuda", "hdqnn.backends.cuda", "CudaBackend")
    register_backend("cupy", "hdqnn.backends.cupy_backend", "CupyBackend")


def _case(rng, n, batch, real, per_sample, n_terms=3):
    prog = random_circuit(rng, n).compile()
    x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(real)
    w = rng.uniform(-np.pi, np.pi, (batch, prog.n_weights) if per_sample else (prog.n_weights,)).astype(real)
    paulis = compile_observables(random_paulis(rng, n, n_terms) + [("Z", n - 1)], n)
    return prog, x, w, paulis


def _vjp_tol(real, prog, batch, per_sample):
    # gradients sum many slot terms (and over the batch for shared weights), as in test_backends
    return 10 * TOL[real] * max(1, prog.angle_src.shape[0] // 10) * (1 if per_sample else batch)


# ------------------------------------------------------------------- the module without a GPU
def test_module_imports_and_reports_devices(core):
    count, reason = core.device_status()
    assert core.device_count() == count >= 0
    assert (count == 0) == bool(reason), "a machine without devices must say why"
    assert core.runtime_version() >= 12000
    assert isinstance(core.driver_version(), int)


def test_cuda_backend_refuses_without_device(core):
    from hdqnn.backends.cuda import CudaBackend, unavailable_reason

    if core.device_count() > 0:
        pytest.skip("a CUDA device is present")
    assert unavailable_reason().startswith("no usable CUDA device: ")
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        CudaBackend()


def test_cupy_backend_refuses_without_cupy_or_device():
    from hdqnn.backends.cupy_backend import CupyBackend

    if _cupy_device_count() > 0:
        pytest.skip("CuPy sees a CUDA device")
    with pytest.raises((ImportError, RuntimeError), match="CuPy is missing|no usable CUDA device"):
        CupyBackend()


def test_cuda_request_fails_loudly_with_every_reason(registered):
    from hdqnn.sim import device

    if gpu_device_count() > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="CUDA was requested but no GPU engine can run") as info:
        device.gpu_backend()
    message = str(info.value)
    assert "'cuda' is unavailable" in message and "'cupy' is unavailable" in message
    with pytest.raises(ValueError, match="needs a GPU backend"):
        device.gpu_backend("numpy")


def test_wants_gpu():
    from hdqnn.sim.device import wants_gpu

    assert wants_gpu("cuda") and wants_gpu("cuda:1") and not wants_gpu("cpu")
    assert not wants_gpu(None, np.zeros(3), None)


# ------------------------------------------------------------------ mirrors of the C++ side
def test_constants_match_compiled(core):
    consts = core.constants()
    for name, value in consts.items():
        module = launch if hasattr(launch, name) else dp
        assert getattr(module, name) == value, name


def test_gate_shapes_match_shared_header(core):
    for code, spec in GATES_BY_CODE.items():
        assert core.gate_info(code) == (spec.n_wires, spec.n_angles, dp.gate_shape(code)), spec.name
    assert core.gate_info(99)[0] == 0


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(core, counter, key, expected):
    assert tuple(core.philox4x32(list(counter), list(key))) == expected


def test_shot_uniforms_are_uniform(core):
    u = np.array([core.shot_uniform(12345, sample, shot) for sample in range(4) for shot in range(2500)])
    assert np.all((u >= 0) & (u < 1))
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    expected = len(u) / 10
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


LAUNCH_GRID = [(n, task, real_bytes, slots, batch)
               for n in (1, 3, 4, 6, 8, 10, 11, 12, 13, 14, 16, 20)
               for task in range(5)
               for real_bytes in (4, 8)
               for slots, batch in ((40, 1), (200, 4096), (3000, 65536))]


@pytest.mark.parametrize("smem_limit,sm_count,workspace", [(H100_SMEM_OPTIN, H100_SMS, 2**33), (49152, 8, 2**24)])
def test_launch_policy_matches_compiled(core, smem_limit, sm_count, workspace):
    for n, task, real_bytes, slots, batch in LAUNCH_GRID:
        args = (n, task, real_bytes, slots, slots // 2, batch, smem_limit, sm_count, workspace)
        assert core.launch_config(*args) == vars(launch.choose_launch(*args)), args


def test_launch_policy_choices():
    def config(n, task, real_bytes=8, batch=256, slots=60, ops=30, workspace=2**33):
        return launch.choose_launch(n, task, real_bytes, slots, ops, batch, H100_SMEM_OPTIN, H100_SMS, workspace)

    small = config(4, dp.TASK_EXPVAL)
    assert small.shared_state and small.threads_per_sample == 8 and small.samples_per_block == 16
    assert small.grid == 16 and small.block_threads == launch.TARGET_BLOCK_THREADS
    assert config(12, dp.TASK_VJP).shared_state, "complex128 adjoint keeps n = 12 in shared memory"
    assert not config(13, dp.TASK_VJP).shared_state
    assert config(13, dp.TASK_VJP, real_bytes=4).shared_state, "complex64 keeps one more qubit"
    assert config(13, dp.TASK_EXPVAL).shared_state and not config(14, dp.TASK_EXPVAL).shared_state
    big = config(20, dp.TASK_VJP, batch=65536, workspace=2**40)
    assert big.grid == H100_SMS * launch.GLOBAL_BLOCKS_PER_SM and big.threads_per_sample == 256
    assert big.workspace_bytes == big.grid * 2 * 2**20 * 16
    tight = config(20, dp.TASK_VJP, batch=65536, workspace=3 * 2 * 2**20 * 16)
    assert tight.grid == 3, "the workspace budget bounds the persistent grid"
    assert config(20, dp.TASK_VJP, workspace=1).grid == 1
    assert not config(10, dp.TASK_EXPVAL, slots=20000, ops=10000).fits


# ------------------------------------------------------------------------- the meta table
def test_plan_fuses_like_the_cpu_engine():
    c = Circuit(3).ry(Input(0), 0).rz(Weight(0), 0).h(1).cx(1, 0).rx(0.3, 2).cz(0, 2).ry(Weight(1), 1)
    plan = dp.make_plan(c.compile())
    kinds = [op[0] for op in plan.ops]
    # blocks on wires 0, 1 (before their cx) and 2 (before the cz) act on |0>: prepared first
    assert plan.n_initial == 3 and kinds[:3] == [dp.OP_FUSED_1Q] * 3
    assert kinds[3:] == [dp.OP_CX, dp.OP_CZ, dp.OP_FUSED_1Q]
    block = {op[2]: op for op in plan.ops[:3]}  # initial blocks by wire
    assert plan.order[block[0][4]:block[0][5]] == [0, 1] and block[0][6] == 1  # ry, rz fused, trainable
    assert block[0][1] == dp.SHAPE_GENERAL, "real ry times diagonal rz is general"
    assert block[1][1] == dp.SHAPE_REAL and block[1][6] == 0  # h alone: real, no angles
    tail = dp.make_plan(Circuit(2).h(0).cx(0, 1).ry(Input(0), 1).cx(0, 1).compile())
    assert [op[0] for op in tail.ops] == [dp.OP_FUSED_1Q, dp.OP_CX, dp.OP_FUSED_1Q_CX]
    assert tail.ops[2][2:4] == [1, 0], "fused into the cx: wire0 = target, wire1 = control"


def test_pauli_masks():
    terms = dp.pauli_terms(compile_observables(["XYZI", "IIIZ"], 4), 4)
    assert terms.tolist() == [[0b1100, 0b0110, 1], [0, 0b0001, 0]]
    with pytest.raises(ValueError, match="codes are 0=I"):
        dp.pauli_terms(np.full((1, 2), 7, np.int8), 2)


def test_program_validation_errors():
    prog = Circuit(2).ry(Input(0), 0).crx(Weight(1), 1, 0).compile()
    with pytest.raises(ValueError, match="reads input column 0 but inputs have 0"):
        dp.build(prog, 0, 2, False)
    with pytest.raises(ValueError, match="reads weight 1 but there are 1"):
        dp.build(prog, 1, 1, False)
    bad = type(prog)(prog.n_qubits, prog.n_inputs, prog.n_weights, prog.gates.copy(), prog.angle_src, prog.angle_val)
    bad.gates[0, 1] = 5
    with pytest.raises(ValueError, match="wire 5 out of range"):
        dp.build(bad, 1, 2, False)


def test_meta_layout():
    prog = Circuit(2).ry(Input(0), 0).cx(0, 1).compile()
    d = dp.build(prog, 1, 0, False, compile_observables(None, 2))
    m = d.meta
    assert m.dtype == np.int32 and m[dp.H_VERSION] == dp.META_VERSION
    assert (m[dp.H_N_QUBITS], m[dp.H_N_OPS], m[dp.H_N_TERMS], m[dp.H_N_INPUTS]) == (2, 2, 2, 1)
    assert m[dp.H_INITIAL] + 2 == len(m), "the initial-op table ends the meta table"
    assert m[m[dp.H_INITIAL]:].tolist() == [0, -1]


# ----------------------------------------------------------------------- argument checks
class FakeDeviceArray:
    """Just enough __cuda_array_interface__ for the argument checks (never dereferenced)."""

    def __init__(self, shape, dtype, strides=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": np.dtype(dtype).str, "data": (4096, False),
                                         "version": 3, "strides": strides}


def test_prepare_call_checks():
    prog = Circuit(2).ry(Input(0), 0).rz(Weight(0), 1).compile()
    x, w = np.zeros((3, 1)), np.zeros(1)
    with pytest.raises(TypeError, match="all be on the host .* or all on the GPU"):
        gpu_base.prepare_call(dp.TASK_EXPVAL, prog, FakeDeviceArray((3, 1), np.float64), w, np.complex128,
                              compile_observables(None, 2))
    with pytest.raises(TypeError, match="complex64 simulation needs float32 inputs"):
        gpu_base.prepare_call(dp.TASK_STATEVECTOR, prog, x, w, np.complex64)
    with pytest.raises(ValueError, match="C-contiguous"):
        gpu_base.prepare_call(dp.TASK_STATEVECTOR, prog, FakeDeviceArray((3, 1), np.float64, (8, 32)),
                              FakeDeviceArray((1,), np.float64), np.complex128)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        gpu_base.prepare_call(dp.TASK_VJP, prog, x, w, np.complex128, compile_observables(None, 2), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="shots must be a positive int"):
        gpu_base.prepare_call(dp.TASK_SAMPLE, prog, x, w, np.complex128, shots=0)
    call = gpu_base.prepare_call(dp.TASK_VJP, prog, FakeDeviceArray((3, 1), np.float64),
                                 FakeDeviceArray((3, 1), np.float64), np.complex128, compile_observables(None, 2),
                                 FakeDeviceArray((3, 2), np.float64))
    assert call.on_device and call.outputs == {"out": ((3, 1), np.dtype(np.float64)),
                                               "grad_weights": ((3, 1), np.dtype(np.float64))}


# ------------------------------------------------ the GPU backends' dispatch, on emulated memory
class HostMemory:
    """Host memory posing as device memory: __cuda_array_interface__ over a NumPy array."""

    def __init__(self, array):
        self.array = array
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": array.dtype.str, "version": 3,
                                         "data": (array.ctypes.data, False), "strides": None, "stream": None}


class EmulatedBackend(gpu_base.GpuBackend):
    """GpuBackend's host/device dispatch with the kernels run by _core_cuda's emulator."""

    name = "emulated"

    def __init__(self, core):
        self.core = core
        self.memory = {}  # pointer -> NumPy array

    def adopt(self, array):
        self.memory[array.ctypes.data] = array
        return HostMemory(array)

    def _default_device(self):
        return 0

    def _device_of(self, ptr):
        return 0

    def _empty(self, shape, dtype, device, stream):
        return self.adopt(np.empty(shape, dtype))

    def _upload(self, array, device, stream):
        return self.adopt(array.copy())

    def _download(self, array, shape, dtype, device, stream):
        return array.array.copy()

    def _execute(self, call, pointers, device, stream):
        get = {k: self.memory.get(p) for k, p in pointers.items()}
        g = get.get("grad_output")
        result = self.core.emulate(call.task, call.program.meta, call.program.angle_val, get["inputs"],
                                   get["weights"], g, shots=call.shots, seed=call.seed, threads_per_sample=2,
                                   samples_per_block=2, warp=2)
        results = result if isinstance(result, tuple) else (result,)
        for name, value in zip([k for k in ("out", "grad_weights", "bits") if k in pointers], results):
            get[name][...] = value


@pytest.mark.parametrize("on_device", [False, True])
def test_gpu_backend_dispatch(core, rng, on_device):
    """NumPy in, NumPy out; device arrays in, device arrays out; shapes and dtypes of every task."""
    engine, reference = EmulatedBackend(core), NumpyBackend()
    prog, x, w, paulis = _case(rng, 3, 5, np.float32, per_sample=False)
    g = rng.normal(size=(5, paulis.shape[0])).astype(np.float32)
    args = [engine.adopt(a) for a in (x, w, g)] if on_device else [x, w, g]
    unwrap = (lambda a: a.array) if on_device else (lambda a: a)
    np.testing.assert_allclose(unwrap(engine.statevector(prog, *args[:2], np.complex64)),
                               reference.statevector(prog, x, w, np.complex64), atol=1e-5)
    ev = unwrap(engine.expval(prog, *args[:2], paulis, np.complex64))
    assert ev.dtype == np.float32 and ev.shape == (5, paulis.shape[0])
    gi, gw = (unwrap(a) for a in engine.vjp(prog, *args[:2], paulis, args[2], np.complex64))
    ri, rw = reference.vjp(prog, x, w, paulis, g, np.complex64)
    np.testing.assert_allclose(gi, ri, atol=1e-4)
    np.testing.assert_allclose(gw, rw, atol=1e-4)
    bits = unwrap(engine.sample(prog, *args[:2], 7, 3, np.complex64))
    assert bits.shape == (5, 7, 3) and bits.dtype == np.uint8


# ------------------------------------------------------- the kernels' code on the host (emulated)
def _emulate(core, task, prog, x, w, paulis=None, g=None, launch_shape=EMULATED_LAUNCHES[0], **kw):
    d = dp.build(prog, x.shape[1], w.shape[-1], w.ndim == 2, paulis)
    threads, samples, warp, shared, grid = launch_shape
    return core.emulate(task, d.meta, d.angle_val, x, w, g, threads_per_sample=threads, samples_per_block=samples,
                        warp=warp, shared_state=shared, grid=grid, **kw)


@pytest.mark.parametrize("real", [np.float64, np.float32])
@pytest.mark.parametrize("launch_shape", EMULATED_LAUNCHES)
def test_emulated_kernels_match_reference(core, rng, launch_shape, real):
    reference = NumpyBackend()
    for n, batch, per_sample in ((1, 3, False), (3, 5, True), (5, 4, False)):
        prog, x, w, paulis = _case(rng, n, batch, real, per_sample)
        cdt, tol = COMPLEX[real], TOL[real]
        np.testing.assert_allclose(_emulate(core, dp.TASK_STATEVECTOR, prog, x, w, launch_shape=launch_shape),
                                   reference.statevector(prog, x, w, cdt), atol=tol, rtol=0)
        np.testing.assert_allclose(_emulate(core, dp.TASK_PROBABILITIES, prog, x, w, launch_shape=launch_shape),
                                   reference.probabilities(prog, x, w, cdt), atol=tol, rtol=0)
        np.testing.assert_allclose(_emulate(core, dp.TASK_EXPVAL, prog, x, w, paulis, launch_shape=launch_shape),
                                   reference.expval(prog, x, w, paulis, cdt), atol=tol, rtol=0)
        g = rng.normal(size=(batch, paulis.shape[0])).astype(real)
        got = _emulate(core, dp.TASK_VJP, prog, x, w, paulis, g, launch_shape=launch_shape)
        want = reference.vjp(prog, x, w, paulis, g, cdt)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == real
            np.testing.assert_allclose(a, b, atol=_vjp_tol(real, prog, batch, per_sample), rtol=0)


def test_emulated_sampling(core, rng):
    shots = 20000
    prog, x, w, _ = _case(rng, 4, 3, np.float64, per_sample=False)
    bits = _emulate(core, dp.TASK_SAMPLE, prog, x, w, launch_shape=(4, 2, 2, True, 1), shots=shots, seed=11)
    assert bits.shape == (3, shots, 4) and bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 1}
    probs = NumpyBackend().probabilities(prog, x, w, np.complex128)
    index = (bits.astype(np.int64) << np.arange(3, -1, -1)).sum(axis=-1)
    freq = np.stack([np.bincount(row, minlength=16) for row in index]) / shots
    sigma = np.sqrt(probs * (1 - probs) / shots)
    assert np.all(np.abs(freq - probs) <= 5 * sigma + 1e-12)
    again = _emulate(core, dp.TASK_SAMPLE, prog, x, w, launch_shape=(1, 1, 32, False, 2), shots=shots, seed=11)
    assert np.array_equal(bits, again), "counter-based draws do not depend on the launch shape"
    other = _emulate(core, dp.TASK_SAMPLE, prog, x, w, launch_shape=(1, 1, 32, True, 1), shots=shots, seed=12)
    assert not np.array_equal(bits, other)


def test_emulator_rejects_bad_launches(core):
    prog = Circuit(1).h(0).compile()
    x, w = np.zeros((1, 0)), np.zeros(0)
    with pytest.raises(ValueError, match="power of two"):
        _emulate(core, dp.TASK_STATEVECTOR, prog, x, w, launch_shape=(3, 1, 32, True, 1))
    with pytest.raises(ValueError, match="emulated threads per block"):
        _emulate(core, dp.TASK_STATEVECTOR, prog, x, w, launch_shape=(64, 2, 32, True, 1))


# ------------------------------------------------------------------------------------ NVRTC
def _find_nvrtc() -> Path | None:
    candidates = []
    try:
        import nvidia

        for root in nvidia.__path__:
            candidates += glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so.*"))
    except ImportError:
        pass
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates += glob.glob(os.path.join(cuda_home, "lib64", "libnvrtc.so.*"))
    libs = [Path(c) for c in candidates if ".alt." not in c and "builtins" not in c]
    return libs[0] if libs else None


def test_nvrtc_compiles_the_kernel_source():
    """What the CuPy backend compiles at run time compiles here too (NVRTC needs no GPU)."""
    from hdqnn.backends import cupy_backend

    lib = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc, or set CUDA_HOME)")
    for builtins in glob.glob(str(lib.parent / "libnvrtc-builtins.so.*")):
        if ".alt." not in builtins:
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)  # nvrtc loads it by name
    nvrtc = ctypes.CDLL(str(lib))
    prog = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), cupy_backend.kernel_code().encode(), b"hdqnn.cu", 0,
                                    None, None) == 0
    options = [o.encode() for o in cupy_backend.nvrtc_options() + ("-arch=sm_90",)]
    status = nvrtc.nvrtcCompileProgram(prog, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    assert status == 0, log.value.decode()
    assert "warning" not in log.value.decode()
    nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    cubin = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    for name in ("hdqnn_execute_f32", "hdqnn_execute_f64", "hdqnn_sum_rows_f32", "hdqnn_sum_rows_f64"):
        assert name.encode() in cubin.raw
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


def test_kernel_code_names_a_digest_of_its_headers():
    from hdqnn.backends import cupy_backend

    code = cupy_backend.kernel_code()
    assert code.startswith("// hdqnn kernel sources ") and '#include "entry.cuh"' in code
    kernels, include = cupy_backend.kernel_dirs()
    assert (include / "hdqnn" / "gate_math.hpp").exists() and (kernels / "executor.cuh").exists()


# ------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("real", [np.float64, np.float32])
@pytest.mark.parametrize("n,batch", [(1, 3), (2, 1), (4, 17), (6, 5), (8, 3), (11, 2), (12, 2), (13, 2), (14, 1)])
def test_gpu_forward_matches_reference(gpu_engine, rng, n, batch, real):
    reference = NumpyBackend()
    prog, x, w, paulis = _case(rng, n, batch, real, per_sample=bool(rng.integers(2)))
    cdt, tol = COMPLEX[real], dict(atol=TOL[real], rtol=0)
    psi = gpu_engine.statevector(prog, x, w, cdt)
    assert psi.dtype == cdt and psi.shape == (batch, 2**n)
    np.testing.assert_allclose(psi, reference.statevector(prog, x, w, cdt), **tol)
    np.testing.assert_allclose(gpu_engine.probabilities(prog, x, w, cdt), reference.probabilities(prog, x, w, cdt),
                               **tol)
    np.testing.assert_allclose(gpu_engine.expval(prog, x, w, paulis, cdt), reference.expval(prog, x, w, paulis, cdt),
                               **tol)


@pytest.mark.gpu
@pytest.mark.parametrize("real", [np.float64, np.float32])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n,batch", [(1, 3), (3, 17), (5, 3), (8, 3), (12, 2), (13, 3)])
def test_gpu_vjp_matches_reference(gpu_engine, rng, n, batch, real, per_sample):
    prog, x, w, paulis = _case(rng, n, batch, real, per_sample)
    g = rng.normal(size=(batch, paulis.shape[0])).astype(real)
    got = gpu_engine.vjp(prog, x, w, paulis, g, COMPLEX[real])
    want = NumpyBackend().vjp(prog, x, w, paulis, g, COMPLEX[real])
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == real
        np.testing.assert_allclose(a, b, atol=_vjp_tol(real, prog, batch, per_sample), rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("n,batch", [(10, 4096), (13, 700)])
def test_gpu_large_batches_match_cpu(gpu_engine, n, batch):
    """Many blocks on the shared-memory path, and the global path's persistent grid looping over
    more samples than it has blocks; against the compiled CPU engine (or the reference)."""
    from hdqnn import get_backend

    rng = np.random.default_rng(n)
    cpu = get_backend()
    prog, x, w, paulis = _case(rng, n, batch, np.float64, per_sample=False)
    np.testing.assert_allclose(gpu_engine.expval(prog, x, w, paulis, np.complex128),
                               cpu.expval(prog, x, w, paulis, np.complex128), atol=1e-10, rtol=0)
    g = rng.normal(size=(batch, paulis.shape[0]))
    for a, b in zip(gpu_engine.vjp(prog, x, w, paulis, g, np.complex128),
                    cpu.vjp(prog, x, w, paulis, g, np.complex128)):
        np.testing.assert_allclose(a, b, atol=1e-10 * max(1, batch // 10), rtol=1e-9)


@pytest.mark.gpu
def test_gpu_sampling(gpu_engine, rng):
    shots = 50000
    prog, x, w, _ = _case(rng, 5, 4, np.float64, per_sample=False)
    bits = gpu_engine.sample(prog, x, w, shots, 2024, np.complex128)
    assert bits.shape == (4, shots, 5) and bits.dtype == np.uint8
    probs = NumpyBackend().probabilities(prog, x, w, np.complex128)
    index = (bits.astype(np.int64) << np.arange(4, -1, -1)).sum(axis=-1)
    freq = np.stack([np.bincount(row, minlength=32) for row in index]) / shots
    assert np.all(np.abs(freq - probs) <= 5 * np.sqrt(probs * (1 - probs) / shots) + 1e-12)
    assert np.array_equal(bits, gpu_engine.sample(prog, x, w, shots, 2024, np.complex128))


@pytest.mark.gpu
def test_gpu_engines_agree_bit_for_bit_on_samples(rng):
    """Both engines run the same kernel: the same seed gives the same bits."""
    if gpu_device_count() == 0:
        pytest.skip("no CUDA device")
    pytest.importorskip("cupy", reason="CuPy missing")
    from hdqnn.backends.cuda import CudaBackend
    from hdqnn.backends.cupy_backend import CupyBackend

    prog, x, w, _ = _case(rng, 6, 3, np.float64, per_sample=False)
    a = CudaBackend().sample(prog, x, w, 1000, 7, np.complex128)
    b = CupyBackend().sample(prog, x, w, 1000, 7, np.complex128)
    assert np.array_equal(a, b)


@pytest.mark.gpu
def test_torch_cuda_tensors_stay_on_the_device(registered, rng):
    """sim.device on CUDA tensors: results are CUDA tensors, computed on torch's current stream."""
    if gpu_device_count() == 0:
        pytest.skip("no CUDA device")
    torch = pytest.importorskip("torch")
    from hdqnn.sim import device

    prog_circuit = random_circuit(rng, 6)
    prog = prog_circuit.compile()
    x = torch.rand(64, prog.n_inputs, device="cuda", dtype=torch.float64)
    w = torch.rand(prog.n_weights, device="cuda", dtype=torch.float64)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        ev = device.expval(prog_circuit, x, w)
        gi, gw = device.vjp(prog_circuit, x, w, torch.ones_like(ev))
    stream.synchronize()
    assert ev.is_cuda and gi.is_cuda and gw.is_cuda and ev.dtype == torch.float64 and gw.shape == w.shape
    want = NumpyBackend().expval(prog, x.cpu().numpy(), w.cpu().numpy(), compile_observables(None, 6),
                                 np.complex128)
    np.testing.assert_allclose(ev.cpu().numpy(), want, atol=1e-10)
    psi32 = device.statevector(prog_circuit, x.float(), w.float())
    assert psi32.dtype == torch.complex64 and psi32.is_cuda


@pytest.mark.gpu
def test_cupy_arrays_stay_cupy(registered, rng):
    if gpu_device_count() == 0:
        pytest.skip("no CUDA device")
    cupy = pytest.importorskip("cupy", reason="CuPy missing")
    from hdqnn.sim import device

    circuit = random_circuit(rng, 4)
    prog = circuit.compile()
    x = cupy.asarray(rng.uniform(-1, 1, (8, prog.n_inputs)))
    w = cupy.asarray(rng.uniform(-1, 1, prog.n_weights))
    out = device.expval(circuit, x, w)
    assert isinstance(out, cupy.ndarray)
    want = NumpyBackend().expval(prog, x.get(), w.get(), compile_observables(None, 4), np.complex128)
    np.testing.assert_allclose(out.get(), want, atol=1e-10)
