"""The compiled CPU engine's own contract: argument checks of the binding, thread and policy
settings, and agreement of every execution path (lane widths, amplitude parallelism, instruction
sets) with the NumPy reference. Cross-engine comparisons live in test_backends.py."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from hdqnn import Circuit, Input, Weight
from hdqnn.backends.numpy_ref import NumpyBackend
from hdqnn.circuits import GATES, ansatz, compile_observables
from tests.circuit_factory import random_angle, random_circuit, random_paulis

LANES = (1, 2, 4, 8, 16)
TOL = {np.float64: 1e-10, np.float32: 1e-5}


@pytest.fixture
def restore_settings(core):
    """Put threads, policy and instruction set back after a test that changes them."""
    threads, isa = core.get_num_threads(), core.isa()
    yield
    core.set_num_threads(threads)
    core.set_policy(0, -1)
    core.set_isa(isa)


def _program_args(prog):
    return prog.gates, prog.angle_src, prog.angle_val, prog.n_qubits


def _small_case(dtype=np.float64, batch=3, per_sample=False):
    circuit = Circuit(2).ry(Input(0), 0).rz(Weight(0), 1).cx(0, 1).crx(Weight(1), 1, 0)
    prog = circuit.compile()
    x = np.linspace(0.1, 0.9, batch * prog.n_inputs).reshape(batch, prog.n_inputs).astype(dtype)
    w_shape = (batch, prog.n_weights) if per_sample else (prog.n_weights,)
    w = np.linspace(-0.5, 0.5, int(np.prod(w_shape))).reshape(w_shape).astype(dtype)
    paulis = compile_observables(["ZI", "XY"], 2)
    return prog, x, w, paulis


# ------------------------------------------------------------------------------ binding checks
def test_rejects_wrong_dtypes(core):
    prog, x, w, paulis = _small_case()
    args = _program_args(prog)
    with pytest.raises(TypeError, match="inputs must be float32"):
        core.expval(*args, x.astype(np.int64), w, paulis)
    with pytest.raises(TypeError, match="weights must have dtype float64"):
        core.expval(*args, x, w.astype(np.float32), paulis)
    with pytest.raises(TypeError, match="paulis must have dtype int8"):
        core.expval(*args, x, w, paulis.astype(np.int32))
    with pytest.raises(TypeError, match="gates must have dtype int32"):
        core.expval(prog.gates.astype(np.int64), *args[1:], x, w, paulis)
    with pytest.raises(TypeError, match="grad_output must have dtype float64"):
        core.vjp(*args, x, w, paulis, np.ones((3, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="must be a numpy.ndarray"):
        core.expval(*args, x.tolist(), w, paulis)


def test_rejects_wrong_shapes(core):
    prog, x, w, paulis = _small_case()
    args = _program_args(prog)
    with pytest.raises(ValueError, match="inputs must have 2 dimension"):
        core.expval(*args, x[0], w, paulis)
    with pytest.raises(ValueError, match="at least one sample"):
        core.expval(*args, x[:0], w, paulis)
    with pytest.raises(ValueError, match="weights has shape"):
        core.expval(*args, x, np.zeros((4, prog.n_weights)), paulis)
    with pytest.raises(ValueError, match="paulis has shape"):
        core.expval(*args, x, w, np.zeros((1, 3), dtype=np.int8))
    with pytest.raises(ValueError, match="grad_output has shape"):
        core.vjp(*args, x, w, paulis, np.ones((3, 3)))
    with pytest.raises(ValueError, match="n_qubits must be in"):
        core.expval(prog.gates, prog.angle_src, prog.angle_val, 31, x, w, paulis)


def test_rejects_non_contiguous_arrays(core):
    prog, x, w, paulis = _small_case(batch=4)
    args = _program_args(prog)
    with pytest.raises(ValueError, match="inputs must be C-contiguous"):
        core.expval(*args, np.asfortranarray(np.repeat(x, 2, axis=1)), w, paulis)
    with pytest.raises(ValueError, match="weights must be C-contiguous"):
        core.expval(*args, x, np.repeat(w, 2)[::2], paulis)


def test_rejects_inconsistent_programs(core):
    prog, x, w, paulis = _small_case()
    bad_wire = prog.gates.copy()
    bad_wire[0, 1] = 2
    with pytest.raises(ValueError, match="wire 2 out of range"):
        core.expval(bad_wire, prog.angle_src, prog.angle_val, 2, x, w, paulis)
    bad_code = prog.gates.copy()
    bad_code[1, 0] = 99
    with pytest.raises(ValueError, match="unknown gate code 99"):
        core.expval(bad_code, prog.angle_src, prog.angle_val, 2, x, w, paulis)
    bad_slot = prog.gates.copy()
    bad_slot[0, 3] = 50
    with pytest.raises(ValueError, match="angle slot 50 out of range"):
        core.expval(bad_slot, prog.angle_src, prog.angle_val, 2, x, w, paulis)
    with pytest.raises(ValueError, match="reads input column 0 but inputs have 0"):
        core.expval(*_program_args(prog), x[:, :0], w, paulis)
    with pytest.raises(ValueError, match="reads weight 1 but there are 1"):
        core.expval(*_program_args(prog), x, w[:1], paulis)
    with pytest.raises(ValueError, match="codes are 0=I"):
        core.expval(*_program_args(prog), x, w, np.full((1, 2), 5, dtype=np.int8))


def test_output_dtypes_and_shapes(core):
    for dtype, cdtype in ((np.float64, np.complex128), (np.float32, np.complex64)):
        prog, x, w, paulis = _small_case(dtype, per_sample=True)
        args = _program_args(prog)
        psi = core.statevector(*args, x, w)
        assert psi.dtype == cdtype and psi.shape == (3, 4) and psi.flags.c_contiguous
        assert core.probabilities(*args, x, w).dtype == dtype
        assert core.expval(*args, x, w, paulis).shape == (3, 2)
        gi, gw = core.vjp(*args, x, w, paulis, np.ones((3, 2), dtype=dtype))
        assert gi.shape == x.shape and gw.shape == w.shape and gi.dtype == gw.dtype == dtype


def test_backend_checks_requested_precision(core):
    from hdqnn.backends.cpp import CppBackend

    prog, x, w, paulis = _small_case()
    with pytest.raises(TypeError, match="complex64 simulation needs float32 inputs"):
        CppBackend().expval(prog, x, w, paulis, np.complex64)
    with pytest.raises(TypeError, match="dtype must be complex64 or complex128"):
        CppBackend().expval(prog, x, w, paulis, np.float64)


# --------------------------------------------------------------------------- threads, policy
def test_thread_setting(core, restore_settings):
    with pytest.raises(ValueError, match="number of threads must be >= 1"):
        core.set_num_threads(0)
    core.set_num_threads(3)
    assert core.get_num_threads() == 3
    assert isinstance(core.openmp_enabled(), bool) and core.max_threads() >= 1


def test_policy_choices(core, restore_settings):
    core.set_num_threads(2)
    assert core.policy("expval", 2, 1, 3)["threads"] == 1  # tiny work stays serial
    big = core.policy("vjp", 10, 256, 200)
    assert big["threads"] == 2 and not big["amplitude_parallel"] and big["lanes"] > 1
    assert core.policy("expval", 20, 1, 50)["amplitude_parallel"] == core.openmp_enabled()
    with pytest.raises(ValueError, match="lanes must be"):
        core.set_policy(3, -1)


def test_thread_counts_agree(core, restore_settings):
    rng = np.random.default_rng(7)
    prog = random_circuit(rng, 9, n_gates=60).compile()
    x = rng.uniform(-1, 1, (40, prog.n_inputs))
    w = rng.uniform(-1, 1, prog.n_weights)
    paulis = compile_observables(random_paulis(rng, 9), 9)
    g = rng.normal(size=(40, paulis.shape[0]))
    results = []
    for threads in (1, 2):
        core.set_num_threads(threads)
        results.append((core.expval(*_program_args(prog), x, w, paulis),
                        *core.vjp(*_program_args(prog), x, w, paulis, g)))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_concurrent_calls_and_fork(core, restore_settings):
    """Calls from several Python threads at once (the GIL is released) and from a forked child,
    whose worker pool is rebuilt, all return the same expectations."""
    import multiprocessing
    import threading

    rng = np.random.default_rng(11)
    prog = random_circuit(rng, 8, n_gates=40).compile()
    x = rng.uniform(-1, 1, (128, prog.n_inputs))
    w = rng.uniform(-1, 1, prog.n_weights)
    paulis = compile_observables(random_paulis(rng, 8), 8)
    core.set_num_threads(2)
    expected = core.expval(*_program_args(prog), x, w, paulis)
    results = [None] * 4

    def call(i):
        results[i] = core.expval(*_program_args(prog), x, w, paulis)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)
    if "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            np.testing.assert_array_equal(pool.apply(_expval_in_child, (prog, x, w, paulis)), expected)


def _expval_in_child(prog, x, w, paulis):
    core = importlib.import_module("hdqnn._core_cpu")
    return core.expval(*_program_args(prog), x, w, paulis)


# ---------------------------------------------------------------------- every execution path
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("amplitude_parallel", [0, 1])
@pytest.mark.parametrize("lanes", LANES)
def test_execution_paths_match_reference(core, restore_settings, lanes, amplitude_parallel, dtype):
    rng = np.random.default_rng(lanes * 10 + amplitude_parallel)
    core.set_num_threads(2)
    core.set_policy(lanes, amplitude_parallel)
    reference = NumpyBackend()
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    for n, batch, per_sample in ((1, 3, False), (4, 5, True), (6, 3, False)):
        prog = random_circuit(rng, n).compile()
        x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
        w_shape = (batch, prog.n_weights) if per_sample else (prog.n_weights,)
        w = rng.uniform(-np.pi, np.pi, w_shape).astype(dtype)
        paulis = compile_observables(random_paulis(rng, n, 4), n)
        g = rng.normal(size=(batch, paulis.shape[0])).astype(dtype)
        args = _program_args(prog)
        tol = TOL[dtype]
        np.testing.assert_allclose(core.statevector(*args, x, w),
                                   reference.statevector(prog, x, w, cdtype), atol=tol, rtol=0)
        np.testing.assert_allclose(core.expval(*args, x, w, paulis),
                                   reference.expval(prog, x, w, paulis, cdtype), atol=tol, rtol=0)
        for got, want in zip(core.vjp(*args, x, w, paulis, g), reference.vjp(prog, x, w, paulis, g, cdtype)):
            np.testing.assert_allclose(got, want, atol=50 * tol, rtol=0)


def test_instruction_sets_agree(core, restore_settings):
    rng = np.random.default_rng(3)
    prog = random_circuit(rng, 7).compile()
    x = rng.uniform(-1, 1, (9, prog.n_inputs))
    w = rng.uniform(-1, 1, prog.n_weights)
    paulis = compile_observables(random_paulis(rng, 7), 7)
    g = rng.normal(size=(9, paulis.shape[0]))
    assert core.isa() in core.available_isas()
    results = {}
    for isa in core.available_isas():
        core.set_isa(isa)
        results[isa] = (core.expval(*_program_args(prog), x, w, paulis),
                        *core.vjp(*_program_args(prog), x, w, paulis, g))
    first = results[core.available_isas()[0]]
    for isa, res in results.items():
        for a, b in zip(res, first):
            np.testing.assert_allclose(a, b, atol=1e-12, err_msg=isa)
    with pytest.raises(ValueError, match="not available"):
        core.set_isa("sse9")


#: /proc/cpuinfo flags engine.cpp checks before running a variant.
ISA_FLAGS = {"avx2": {"avx2", "fma", "bmi2", "popcnt"},
             "avx512": {"avx2", "fma", "bmi2", "popcnt", "avx512f", "avx512bw", "avx512dq", "avx512vl"}}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def test_runs_the_best_instruction_set_of_this_cpu(core):
    """Both builds, the portable one (HDQNN_CPU_VARIANTS=all, what scripts/test.sh and `pip install .`
    make) and the local one (host: base plus this CPU's best, what scripts/setup.sh makes), run the
    widest variant this CPU supports, and keep base as the fallback."""
    import platform

    flags = _cpu_flags()
    if not flags or platform.machine().lower() not in ("x86_64", "amd64") or core.isa() == "native":
        pytest.skip("needs an x86-64 Linux build with run-time variants")
    best = next((isa for isa in ("avx512", "avx2") if ISA_FLAGS[isa] <= flags), "base")
    assert core.isa() == best and core.available_isas()[0] == best
    assert core.available_isas()[-1] == "base"


@pytest.mark.parametrize("amplitude_parallel", [0, 1])
@pytest.mark.parametrize("lanes", (1, 8))
def test_many_z_terms_match_reference(core, restore_settings, lanes, amplitude_parallel):
    """Enough Z-only terms for the Walsh-Hadamard path of the expectations, mixed with X / Y terms."""
    rng = np.random.default_rng(40 + lanes + amplitude_parallel)
    core.set_num_threads(2)
    core.set_policy(lanes, amplitude_parallel)
    reference = NumpyBackend()
    for n in range(1, 9):
        prog = random_circuit(rng, n).compile()
        x = rng.uniform(-np.pi, np.pi, (5, prog.n_inputs))
        w = rng.uniform(-np.pi, np.pi, prog.n_weights)
        z_strings = ["".join(rng.choice(list("IZ"), size=n)) for _ in range(8)]
        paulis = compile_observables([("Z", q) for q in range(n)] + z_strings + random_paulis(rng, n, 2), n)
        g = rng.normal(size=(5, paulis.shape[0]))
        np.testing.assert_allclose(core.expval(*_program_args(prog), x, w, paulis),
                                   reference.expval(prog, x, w, paulis, np.complex128), atol=1e-10, rtol=0)
        for got, want in zip(core.vjp(*_program_args(prog), x, w, paulis, g),
                             reference.vjp(prog, x, w, paulis, g, np.complex128)):
            np.testing.assert_allclose(got, want, atol=50e-10, rtol=0)


# --------------------------------------------------------------------------- cache blocking
def _outputs(core, prog, x, w, paulis, g):
    """statevector, probabilities, expval, grad_inputs, grad_weights of one engine setting."""
    args = _program_args(prog)
    return (core.statevector(*args, x, w), core.probabilities(*args, x, w), core.expval(*args, x, w, paulis),
            *core.vjp(*args, x, w, paulis, g))


def _random_case(rng, n, batch, dtype, per_sample=False, n_gates=None):
    prog = random_circuit(rng, n, n_gates=n_gates).compile()
    x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
    w_shape = (batch, prog.n_weights) if per_sample else (prog.n_weights,)
    w = rng.uniform(-np.pi, np.pi, w_shape).astype(dtype)
    paulis = compile_observables(random_paulis(rng, n, 4), n)
    g = rng.normal(size=(batch, paulis.shape[0])).astype(dtype)
    return prog, x, w, paulis, g


def test_chunk_bits_setting(core, restore_settings):
    with pytest.raises(ValueError, match="chunk_bits must be"):
        core.set_policy(0, -1, 1)
    with pytest.raises(ValueError, match="chunk_bits must be"):
        core.set_policy(0, -1, -2)
    assert core.policy("expval", 10, 256, 100)["chunk_bits"] == 0  # fits in cache: plain passes
    assert core.policy("expval", 20, 8, 80, False)["chunk_bits"] > 0
    core.set_policy(0, -1, -1)
    assert core.policy("expval", 20, 8, 80, False)["chunk_bits"] == 0
    core.set_policy(0, -1, 3)
    assert core.policy("expval", 6, 4, 10)["chunk_bits"] == 3
    assert core.policy("expval", 3, 4, 10)["chunk_bits"] == 0  # one chunk would be the whole state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("amplitude_parallel", [0, 1])
@pytest.mark.parametrize("lanes", (1, 2, 8))
def test_cache_blocking_matches_reference(core, restore_settings, lanes, amplitude_parallel, dtype):
    """Chunks of 2 to 4 qubits force the blocked path (phases, reordering, chunk copies, per-chunk
    gradient sums) on small random circuits with every gate."""
    rng = np.random.default_rng(100 + lanes * 10 + amplitude_parallel)
    core.set_num_threads(2)
    reference = NumpyBackend()
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    tol = TOL[dtype]
    for n in range(1, 9):
        chunk_bits = 2 + n % 3
        core.set_policy(lanes, amplitude_parallel, chunk_bits)
        prog, x, w, paulis, g = _random_case(rng, n, 5, dtype, per_sample=n % 2 == 1)
        want = (reference.statevector(prog, x, w, cdtype), reference.probabilities(prog, x, w, cdtype),
                reference.expval(prog, x, w, paulis, cdtype), *reference.vjp(prog, x, w, paulis, g, cdtype))
        got = _outputs(core, prog, x, w, paulis, g)
        for what, a, b, scale in zip(("statevector", "probabilities", "expval", "grad_inputs", "grad_weights"),
                                     got, want, (1, 1, 1, 50, 50)):
            np.testing.assert_allclose(a, b, atol=scale * tol, rtol=0, err_msg=f"{what}, n={n}")


@pytest.mark.parametrize("threads", [1, 2])
def test_cache_blocking_matches_plain_passes(core, restore_settings, threads):
    """14 qubits in 9-qubit chunks (the automatic chunk size's regime, a quarter of the cost of a
    20-qubit run) against one full pass per op of the same engine."""
    rng = np.random.default_rng(21)
    core.set_num_threads(threads)
    prog, x, w, paulis, g = _random_case(rng, 14, 3, np.float64, n_gates=80)
    core.set_policy(0, -1, -1)
    plain = _outputs(core, prog, x, w, paulis, g)
    core.set_policy(0, -1, 9)
    for a, b in zip(_outputs(core, prog, x, w, paulis, g), plain):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cache_blocking_twenty_qubits(core, restore_settings, dtype):
    """The automatic blocking of a 20-qubit hardware-efficient ansatz against plain passes."""
    from hdqnn import ansatz

    n, batch = 20, 2
    rng = np.random.default_rng(5)
    prog = ansatz.hardware_efficient(n, 2).compile()
    x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
    w = rng.uniform(-np.pi, np.pi, prog.n_weights).astype(dtype)
    paulis = compile_observables(random_paulis(rng, n, 3) + [("Z", 0)], n)
    g = rng.normal(size=(batch, paulis.shape[0])).astype(dtype)
    assert core.policy("vjp", n, batch, 40, dtype == np.float64)["chunk_bits"] > 0
    blocked = _outputs(core, prog, x, w, paulis, g)
    core.set_policy(0, -1, -1)
    plain = _outputs(core, prog, x, w, paulis, g)
    for a, b, scale in zip(blocked, plain, (1, 1, 1, 50, 50)):
        np.testing.assert_allclose(a, b, atol=scale * TOL[dtype], rtol=0)


@pytest.mark.slow
def test_twenty_qubits_analytic(core, restore_settings):
    """H on every wire then rz(x) on wire 0: <X_0> = cos(x), <X_w> = 1, d<X_0>/dx = -sin(x)."""
    n = 20
    circuit = Circuit(n)
    for wire in range(n):
        circuit.h(wire)
    circuit.rz(Input(0), 0)
    prog = circuit.compile()
    x = np.array([[0.3], [1.1]])
    paulis = compile_observables([("X", 0), ("X", n - 1)], n)
    ev = core.expval(*_program_args(prog), x, np.zeros(0), paulis)
    np.testing.assert_allclose(ev, np.stack([np.cos(x[:, 0]), np.ones(2)], axis=1), atol=1e-10)
    gi, _ = core.vjp(*_program_args(prog), x, np.zeros(0), paulis, np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(gi[:, 0], -np.sin(x[:, 0]), atol=1e-10)


# ------------------------------------------------------------------ phase deferral, cx chains
DIAGONAL_GATES = ("rz", "p", "z", "s", "sdg", "t", "tdg")
MIXING_GATES = ("ry", "rx", "h", "u", "sx")
TWO_QUBIT_GATES = ("cx", "cx", "cx", "swap", "cz", "rzz", "crz", "cy", "rxx")


def _phase_heavy_circuit(rng, n, n_layers=6, n_inputs=3, n_weights=5):
    """Layers of random rotations that often end in diagonal gates, then random entanglers and ring
    cx's: the patterns phase deferral and chained cx passes act on, with every angle source."""
    c = Circuit(n)
    for i in range(n_inputs):
        c.ry(Input(i), i % n)
    for j in range(n_weights):
        c.rz(Weight(j), j % n)
    def add(name, wires):
        name = str(name)
        c.append(name, wires, tuple(random_angle(rng, n_inputs, n_weights) for _ in range(GATES[name].n_angles)))

    for _ in range(n_layers):
        for q in range(n):
            for name in rng.choice(MIXING_GATES + DIAGONAL_GATES, size=int(rng.integers(1, 4))):
                add(name, q)
        if n == 1:
            continue
        for name in rng.choice(TWO_QUBIT_GATES, size=int(rng.integers(0, 3))):
            add(name, tuple(int(w) for w in rng.choice(n, size=2, replace=False)))
        for q in range(n - 1 if rng.integers(2) else n):
            c.cx(q, (q + 1) % n)
    return c


def test_phase_deferral_policy(core, restore_settings):
    assert core.policy("expval", 10, 256, 100)["defer_phases"]
    assert core.policy("vjp", 10, 256, 100)["defer_phases"]  # the adjoint sweeps the same schedule back
    assert not core.policy("expval", 10, 4, 100)["defer_phases"]  # too few samples to pay for the tables
    assert not core.policy("expval", 16, 256, 100)["defer_phases"]  # tables of 2**16 entries
    core.set_policy(0, -1, 0, 0)
    assert not core.policy("expval", 10, 256, 100)["defer_phases"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("amplitude_parallel", [0, 1])
@pytest.mark.parametrize("lanes", (1, 2, 8, 16))
def test_phase_deferral_matches_reference(core, restore_settings, lanes, amplitude_parallel, dtype):
    """Deferred phases (peeled from fused blocks, moved through cx / swap / cz / rzz, applied in the
    next pass over their wires, in a table pass, or dropped when only magnitudes are read) give the
    reference's states, probabilities and expectations (Z-only and with X / Y terms), with shared
    weights (deferred) and per-sample weights (weight angles stay in place)."""
    rng = np.random.default_rng(300 + lanes * 10 + amplitude_parallel)
    core.set_num_threads(2)
    core.set_policy(lanes, amplitude_parallel)
    reference = NumpyBackend()
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    tol = TOL[dtype]
    for n in range(1, 9):
        per_sample = n % 3 == 0
        batch = 9 + n
        assert core.policy("expval", n, batch, 50, dtype == np.float64)["defer_phases"]
        prog = _phase_heavy_circuit(rng, n).compile()
        x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
        w_shape = (batch, prog.n_weights) if per_sample else (prog.n_weights,)
        w = rng.uniform(-np.pi, np.pi, w_shape).astype(dtype)
        args = _program_args(prog)
        z_only = compile_observables([("Z", q) for q in range(n)] + ["Z" * n], n)
        mixed = compile_observables(random_paulis(rng, n, 4), n)
        np.testing.assert_allclose(core.statevector(*args, x, w), reference.statevector(prog, x, w, cdtype),
                                   atol=tol, rtol=0, err_msg=f"statevector, n={n}")
        np.testing.assert_allclose(core.probabilities(*args, x, w), reference.probabilities(prog, x, w, cdtype),
                                   atol=tol, rtol=0, err_msg=f"probabilities, n={n}")
        for paulis in (z_only, mixed):
            np.testing.assert_allclose(core.expval(*args, x, w, paulis),
                                       reference.expval(prog, x, w, paulis, cdtype),
                                       atol=tol, rtol=0, err_msg=f"expval, n={n}")


def test_phase_deferral_on_the_rl_ansatz(core, restore_settings):
    """The hDQNN ansatz (ry encoding, ry / rz layers, cx ring): every layer's rz's are deferred into
    the next layer's first pass and the ring's cx-tail ops run in chained pairs; the same numbers
    with deferral switched off, and the reference's."""
    rng = np.random.default_rng(5)
    prog = ansatz.hardware_efficient(10, 4).compile()
    x = rng.uniform(-1, 1, (40, prog.n_inputs))
    w = rng.uniform(-np.pi, np.pi, prog.n_weights)
    paulis = compile_observables([("Z", q) for q in range(10)] + ["XXYYZZIIXY"], 10)
    args = _program_args(prog)
    deferred = core.statevector(*args, x, w), core.expval(*args, x, w, paulis)
    core.set_policy(0, -1, 0, 0)
    in_place = core.statevector(*args, x, w), core.expval(*args, x, w, paulis)
    want = (NumpyBackend().statevector(prog, x, w, np.complex128),
            NumpyBackend().expval(prog, x, w, paulis, np.complex128))
    for a, b, c in zip(deferred, in_place, want):
        np.testing.assert_allclose(a, c, atol=1e-10, rtol=0)
        np.testing.assert_allclose(b, c, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("amplitude_parallel", [0, 1])
@pytest.mark.parametrize("lanes", (1, 8))
def test_scaled_rotations_in_deep_circuits(core, restore_settings, lanes, amplitude_parallel, dtype):
    """Hundreds of ry blocks run as scaled rotations (both forms: angles near 0 and near pi), the
    state taking their factors every 64 of them; lanes with mixed forms fall back to the plain
    rotation. States and expectations stay at the reference's precision."""
    rng = np.random.default_rng(77 + lanes)
    core.set_num_threads(2)
    core.set_policy(lanes, amplitude_parallel)
    n, layers, batch = 4, 60, 12
    c = Circuit(n)
    for q in range(n):
        c.ry(Input(q), q)
    for layer in range(layers):
        for q in range(n):
            c.ry(Weight(2 * (layer * n + q)), q).rz(Weight(2 * (layer * n + q) + 1), q)
        for q in range(n):
            c.cx(q, (q + 1) % n)
    prog = c.compile()
    w = rng.uniform(-np.pi, np.pi, prog.n_weights)
    w[::4] = np.pi - rng.uniform(0, 0.1, w[::4].shape)  # |sin| > |cos|: the cotangent form
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    for x in (rng.uniform(-1, 1, (batch, n)),                   # shared angles: one form per block
              np.repeat(rng.uniform(-1, 1, (1, n)), batch, 0)):
        x, ww = x.astype(dtype), w.astype(dtype)
        paulis = compile_observables([("Z", q) for q in range(n)] + ["XYZX"], n)
        args = _program_args(prog)
        np.testing.assert_allclose(core.statevector(*args, x, ww), NumpyBackend().statevector(prog, x, ww, cdtype),
                                   atol=20 * TOL[dtype], rtol=0)
        np.testing.assert_allclose(core.expval(*args, x, ww, paulis),
                                   NumpyBackend().expval(prog, x, ww, paulis, cdtype), atol=20 * TOL[dtype], rtol=0)
    # ry angles read from inputs differ per lane: half the lanes near pi, so a block's lanes
    # disagree on the larger entry and run the plain rotation
    c = Circuit(n)
    for layer in range(layers):
        for q in range(n):
            c.ry(Input(q), q).rz(Weight(layer * n + q), q)
        for q in range(n):
            c.cx(q, (q + 1) % n)
    prog = c.compile()
    x = rng.uniform(-0.5, 0.5, (batch, n))
    x[::2] += np.pi
    x, w = x.astype(dtype), rng.uniform(-np.pi, np.pi, prog.n_weights).astype(dtype)
    np.testing.assert_allclose(core.statevector(*_program_args(prog), x, w),
                               NumpyBackend().statevector(prog, x, w, cdtype), atol=20 * TOL[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("amplitude_parallel", [0, 1])
@pytest.mark.parametrize("lanes", (1, 2, 16))
def test_phase_deferral_vjp_matches_reference(core, restore_settings, lanes, amplitude_parallel, dtype):
    """The adjoint sweep over a deferred schedule: tables undone on the way back, deferred gates
    differentiated at the blocks they left, dropped ones (Z-only terms) with zero gradient, ry
    blocks undone as scaled rotations, and the product-state gradients contracted from lambda
    through the absorbed first cx layer. Inputs and weight gradients agree with the reference and
    with the sweep without deferral, for Z-only and X / Y terms, shared and per-sample weights."""
    rng = np.random.default_rng(900 + lanes * 10 + amplitude_parallel)
    core.set_num_threads(2)
    reference = NumpyBackend()
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    tol = 50 * TOL[dtype]
    for n in range(1, 6):
        per_sample = n % 3 == 0
        batch = 9 + n
        core.set_policy(lanes, amplitude_parallel)
        assert core.policy("vjp", n, batch, 50, dtype == np.float64)["defer_phases"]
        prog = _phase_heavy_circuit(rng, n, n_layers=3).compile()
        x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
        w_shape = (batch, prog.n_weights) if per_sample else (prog.n_weights,)
        w = rng.uniform(-np.pi, np.pi, w_shape).astype(dtype)
        args = _program_args(prog)
        for paulis in (compile_observables([("Z", q) for q in range(n)] + ["Z" * n], n),
                       compile_observables(random_paulis(rng, n, 3), n)):
            g = rng.normal(size=(batch, paulis.shape[0])).astype(dtype)
            want = reference.vjp(prog, x, w, paulis, g, cdtype)
            core.set_policy(lanes, amplitude_parallel)
            deferred = core.vjp(*args, x, w, paulis, g)
            core.set_policy(lanes, amplitude_parallel, 0, 0)
            in_place = core.vjp(*args, x, w, paulis, g)
            for got, plain, ref in zip(deferred, in_place, want):
                np.testing.assert_allclose(got, ref, atol=tol, rtol=0, err_msg=f"n={n}")
                np.testing.assert_allclose(got, plain, atol=tol, rtol=0, err_msg=f"n={n}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vjp_on_the_rl_ansatz_and_deep_circuits(core, restore_settings, dtype):
    """The hDQNN ansatz's VJP (every rz deferred, every ry block a scaled rotation, the first ring
    absorbed into the product state) against the reference, and a 40-layer circuit whose backward
    sweep takes its rotations' factors every 64 of them (both scaled forms: angles near 0 and pi)."""
    rng = np.random.default_rng(11)
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    tol = 50 * TOL[dtype]
    prog = ansatz.hardware_efficient(8, 3).compile()
    x = rng.uniform(-1, 1, (9, prog.n_inputs)).astype(dtype)
    w = rng.uniform(-np.pi, np.pi, prog.n_weights).astype(dtype)
    paulis = compile_observables([("Z", q) for q in range(8)], 8)
    g = rng.normal(size=(9, 8)).astype(dtype)
    for got, want in zip(core.vjp(*_program_args(prog), x, w, paulis, g),
                         NumpyBackend().vjp(prog, x, w, paulis, g, cdtype)):
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)
    n, layers, batch = 3, 40, 8
    c = Circuit(n)
    for q in range(n):
        c.ry(Input(q), q)
    for layer in range(layers):
        for q in range(n):
            c.ry(Weight(2 * (layer * n + q)), q).rz(Weight(2 * (layer * n + q) + 1), q)
        for q in range(n):
            c.cx(q, (q + 1) % n)
    prog = c.compile()
    w = rng.uniform(-np.pi, np.pi, prog.n_weights)
    w[::4] = np.pi - rng.uniform(0, 0.1, w[::4].shape)  # |sin| > |cos|: the cotangent form
    x = np.repeat(rng.uniform(-1, 1, (1, n)), batch, 0)
    paulis = compile_observables([("Z", q) for q in range(n)] + ["XYZ"], n)
    g = rng.normal(size=(batch, paulis.shape[0]))
    x, w, g = x.astype(dtype), w.astype(dtype), g.astype(dtype)
    for got, want in zip(core.vjp(*_program_args(prog), x, w, paulis, g),
                         NumpyBackend().vjp(prog, x, w, paulis, g, cdtype)):
        np.testing.assert_allclose(got, want, atol=10 * tol, rtol=0)


#: SIMD register bytes of each variant (engine.cpp's variant table; CMake's HDQNN_*_VECTOR_BYTES).
VECTOR_BYTES = {"base": 16, "avx2": 32, "avx512": 64, "native": 32}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chained_passes_of_every_instruction_set(core, restore_settings, dtype):
    """Chained cx passes are compiled for one lane count per variant, the one that fills its vector
    registers, which the engine picks for a batch that wide (block_runner.hpp, kChainedPasses):
    every available variant runs them, forward and adjoint, on the hDQNN ansatz and on phase-heavy
    random circuits (every pair of block shapes), with the reference's results; other lane counts
    run the same ops one pass each."""
    rng = np.random.default_rng(2024)
    core.set_num_threads(1)
    reference = NumpyBackend()
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    tol = 50 * TOL[dtype]
    batch = 35  # several full blocks and a partial one at every lane count
    circuits = [ansatz.hardware_efficient(6, 3)] + [_phase_heavy_circuit(rng, n, n_layers=3) for n in (3, 5, 7)]
    for isa in core.available_isas():
        core.set_isa(isa)
        for circuit in circuits:
            prog = circuit.compile()
            n = prog.n_qubits
            lanes = core.policy("vjp", n, batch, 50, dtype == np.float64)["lanes"]
            assert lanes == VECTOR_BYTES[isa] // np.dtype(dtype).itemsize, isa
            x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
            w = rng.uniform(-np.pi, np.pi, prog.n_weights).astype(dtype)
            paulis = compile_observables([("Z", q) for q in range(n)] + random_paulis(rng, n, 2), n)
            g = rng.normal(size=(batch, paulis.shape[0])).astype(dtype)
            args = _program_args(prog)
            np.testing.assert_allclose(core.expval(*args, x, w, paulis), reference.expval(prog, x, w, paulis, cdtype),
                                       atol=TOL[dtype], rtol=0, err_msg=f"{isa} expval, n={n}")
            for got, want in zip(core.vjp(*args, x, w, paulis, g), reference.vjp(prog, x, w, paulis, g, cdtype)):
                np.testing.assert_allclose(got, want, atol=tol, rtol=0, err_msg=f"{isa} vjp, n={n}")


# ---------------------------------------------- final states handed from expval to the adjoint sweep
# (setting of the expval call, setting of the vjp call): (lanes, amplitude_parallel, chunk_bits),
# 0 / -1 automatic; the pairs hand states between different plans (lanes, blocking, deferral)
STATE_HANDOFF_SETTINGS = [
    ((0, -1, 0), (0, -1, 0)),
    ((1, 0, 0), (8, 1, 0)),
    ((16, 0, 0), (2, 0, 3)),
    ((8, 1, 3), (16, 0, 0)),
    ((2, 1, 4), (1, 1, 2)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("settings", STATE_HANDOFF_SETTINGS, ids=lambda s: f"{s[0]}->{s[1]}")
def test_vjp_from_kept_states_matches_vjp(core, restore_settings, settings, dtype):
    """expval_state gives expval's values and the true final states (statevector's), whatever the
    plan; vjp from them gives the gradients of a vjp that runs its own forward pass, on random
    circuits with every gate and on phase-heavy ones (trailing diagonal gates a Z-only readout
    would drop), shared and per-sample weights, with the two calls under different plans."""
    rng = np.random.default_rng(900 + 10 * STATE_HANDOFF_SETTINGS.index(settings))
    core.set_num_threads(2)
    tol = TOL[dtype]
    for n in range(1, 9):
        batch = 3 + 5 * n
        if n % 2:
            prog, x, w, paulis, g = _random_case(rng, n, batch, dtype, per_sample=n % 3 == 0)
        else:
            prog = _phase_heavy_circuit(rng, n).compile()
            x = rng.uniform(-np.pi, np.pi, (batch, prog.n_inputs)).astype(dtype)
            w = rng.uniform(-np.pi, np.pi, prog.n_weights).astype(dtype)
            paulis = compile_observables([("Z", q) for q in range(n)], n)
            g = rng.normal(size=(batch, n)).astype(dtype)
        args = _program_args(prog)
        core.set_policy(0, -1)
        want_out, want_state, want_vjp = core.expval(*args, x, w, paulis), core.statevector(*args, x, w), \
            core.vjp(*args, x, w, paulis, g)
        core.set_policy(*settings[0])
        out, states = core.expval_state(*args, x, w, paulis)
        core.set_policy(*settings[1])
        got_vjp = core.vjp(*args, x, w, paulis, g, states)
        np.testing.assert_allclose(out, want_out, atol=tol, rtol=0, err_msg=f"expval, n={n}")
        np.testing.assert_allclose(states, want_state, atol=tol, rtol=0, err_msg=f"states, n={n}")
        for what, a, b in zip(("grad_inputs", "grad_weights"), got_vjp, want_vjp):
            np.testing.assert_allclose(a, b, atol=50 * tol, rtol=0, err_msg=f"{what}, n={n}")


def test_vjp_starts_from_the_states_it_is_given(core):
    """The sweep really starts from final_state (no forward pass of its own): the states of other
    inputs change the gradients."""
    prog = ansatz.hardware_efficient(4, 2).compile()
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (6, prog.n_inputs))
    w = rng.uniform(-np.pi, np.pi, prog.n_weights)
    paulis = compile_observables(None, 4)
    g = rng.normal(size=(6, 4))
    args = _program_args(prog)
    _, other_states = core.expval_state(*args, x + 0.5, w, paulis)
    gi, _ = core.vjp(*args, x, w, paulis, g, other_states)
    assert np.abs(gi - core.vjp(*args, x, w, paulis, g)[0]).max() > 1e-3


def test_final_state_checks(core):
    prog, x, w, paulis = _small_case()
    args = _program_args(prog)
    g = np.ones((3, 2))
    _, states = core.expval_state(*args, x, w, paulis)
    assert states.dtype == np.complex128 and states.shape == (3, 4)
    with pytest.raises(TypeError, match="final_state must have dtype complex128"):
        core.vjp(*args, x, w, paulis, g, states.astype(np.complex64))
    with pytest.raises(ValueError, match="final_state has shape \\(2, 4\\); axis 0 must be the batch size"):
        core.vjp(*args, x, w, paulis, g, states[:2].copy())
    with pytest.raises(ValueError, match="final_state must be C-contiguous"):
        core.vjp(*args, x, w, paulis, g, np.asfortranarray(states))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    out32, states32 = core.expval_state(*args, x32, w32, paulis)
    assert out32.dtype == np.float32 and states32.dtype == np.complex64
