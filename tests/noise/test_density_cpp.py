"""The compiled density-matrix engine (hdqnn._core_cpu.density) against the NumPy reference, finite
differences and its Numba twin: every basis (rho's entries, or Pauli coefficients), lane count,
checkpoint stride, pass mode (Hermitian half passes or full ones) and thread count."""
from __future__ import annotations

import numpy as np
import pytest

import hdqnn
from hdqnn.backends import density
from hdqnn.backends.base import sample_angles
from hdqnn.circuits import compile_observables
from hdqnn import Circuit, Input, Weight
from hdqnn.circuits import GATES
from hdqnn.noise import (NoiseModel, amplitude_damping, depolarizing, kraus, pauli_channel, phase_damping,
                         reference, thermal_relaxation)
from hdqnn.noise.compiled import compile_noise
from tests.circuit_factory import random_angle, random_circuit, random_paulis
from tests.conftest import _engine_or_skip
from tests.noise.factory import random_noise_model

ATOL = 1e-10
#: Not a multiple of any lane count: the last lane block is partly padding.
BATCH = 5
LANES = (1, 4, 8)
#: (pauli, hermitian) hooks: rho's entries with passes over half of them, mirroring the rest (small
#: states), or over all of them; and the Pauli-transfer basis (real coefficients, every entry).
MODES = ((0, 1), (0, 0), (1, 0))


@pytest.fixture
def core():
    """The compiled module (skipped where it is not built; a failure under HDQNN_REQUIRE_BACKENDS=cpp)."""
    _engine_or_skip("cpp")
    module = density._compiled()
    assert module is not None, "hdqnn._core_cpu is built without the density engine"
    return module


def _one_qubit_noise_only() -> NoiseModel:
    """Channels after one-qubit gates only: every two-qubit gate takes the noiseless path (U on the
    rows, conj(U) on the columns)."""
    return NoiseModel().add(depolarizing(0.1), ["ry", "rx", "h"]).add(amplitude_damping(0.2), ["rz", "u", "ry"])


def _case(rng, n, model=None, batch=BATCH):
    circuit = random_circuit(rng, n)
    x = rng.uniform(-np.pi, np.pi, (batch, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    model = random_noise_model(rng, n, readout=False) if model is None else model
    return circuit, x, w, model, compile_noise(circuit.compile(), model)


def _run(core, task, circuit, x, w, tables, paulis=None, grad=None, lanes=0, stride=0, hermitian=-1, pauli=-1):
    """One call of the compiled engine, straight through the binding (lanes, stride, basis and pass
    mode forced)."""
    program = circuit.compile()
    superops = tables.superops if len(tables.superops) else np.zeros((1, 16, 16), dtype=np.complex128)
    return core.density(task, program.n_qubits, program.gates.astype(np.int32), density._constant_gates(program),
                        np.ascontiguousarray(tables.channel_index, dtype=np.int32), superops,
                        sample_angles(program, x, w), paulis, grad, lanes, stride, hermitian, pauli)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("noise_kind", ["random", "one_qubit_only"])
def test_states_probabilities_and_expectations_match_the_reference(core, rng, n, noise_kind):
    """Every gate and channel kind (all-wire and per-wire rules, asymmetric two-qubit channels), for
    every lane count, basis and pass mode (the state only in rho's basis)."""
    model = None if noise_kind == "random" else _one_qubit_noise_only()
    circuit, x, w, model, tables = _case(rng, n, model)
    strings = random_paulis(rng, n, k=4)
    paulis = compile_observables(strings, n)
    want_state = reference.density_matrix(circuit, x, w, noise=model)
    want_probs = reference.probabilities(circuit, x, w, noise=model, readout=False)
    want_expval = reference.expval(circuit, x, w, noise=model, observables=strings, readout=False)
    for lanes in LANES:
        for pauli, mode in MODES:
            kw = dict(lanes=lanes, hermitian=mode, pauli=pauli)
            if not pauli:
                np.testing.assert_allclose(_run(core, "state", circuit, x, w, tables, **kw), want_state, atol=ATOL)
            np.testing.assert_allclose(_run(core, "probabilities", circuit, x, w, tables, **kw), want_probs,
                                       atol=ATOL)
            np.testing.assert_allclose(_run(core, "expval", circuit, x, w, tables, paulis, **kw), want_expval,
                                       atol=ATOL)


def test_public_calls_run_the_compiled_engine_and_agree_with_numba(core, rng):
    circuit, x, w, model, tables = _case(rng, 3)
    program = circuit.compile()
    assert density.density_engine() == "cpp"
    args = (program, x, w, tables.channel_index, tables.superops)
    np.testing.assert_allclose(density.density_matrix(*args, engine="cpp"),
                               density.density_matrix(*args, engine="numba"), atol=ATOL)
    np.testing.assert_allclose(density.density_probabilities(*args, engine="cpp"),
                               density.density_probabilities(*args, engine="numba"), atol=ATOL)


def test_backend_variable_picks_the_numba_twin(core, monkeypatch):
    monkeypatch.setenv("HDQNN_BACKEND", "numba")
    assert density.density_engine() == "numba"
    with pytest.raises(ValueError, match="unknown density engine"):
        density.density_engine("gpu")


def _finite_difference(f, values, eps=1e-6):
    grad = np.zeros_like(values)
    for i in np.ndindex(values.shape):
        up, down = values.copy(), values.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("noise_kind", ["random", "one_qubit_only"])
def test_vjp_matches_finite_differences_and_numba(core, rng, noise_kind):
    """The exact adjoint through every gate and channel kind, in every lane count, basis and pass
    mode, and with checkpoint segments (stride 2 and 3: several segments, a short last one)."""
    model = None if noise_kind == "random" else _one_qubit_noise_only()
    circuit, x, w, model, tables = _case(rng, 3, model, batch=3)
    program = circuit.compile()
    strings = random_paulis(rng, 3, k=3)
    paulis = compile_observables(strings, 3)
    g = rng.normal(size=(3, len(strings)))

    def loss(xx, ww):
        return float((reference.expval(circuit, xx, ww, noise=model, observables=strings, readout=False) * g).sum())

    want_gi = _finite_difference(lambda v: loss(v, w), x)
    want_gw = _finite_difference(lambda v: loss(x, v), w)
    gi, gw = density.density_vjp(program, x, w, tables.channel_index, tables.superops, paulis, g, engine="cpp")
    np.testing.assert_allclose(gi, want_gi, atol=1e-7)
    np.testing.assert_allclose(gw, want_gw, atol=1e-7)
    numba_gi, numba_gw = density.density_vjp(program, x, w, tables.channel_index, tables.superops, paulis, g,
                                             engine="numba")
    np.testing.assert_allclose(gi, numba_gi, atol=ATOL)
    np.testing.assert_allclose(gw, numba_gw, atol=ATOL)
    g_theta = _run(core, "vjp", circuit, x, w, tables, paulis, g)
    for lanes in LANES:
        for stride in (0, 2, 3):
            for pauli, mode in MODES:
                got = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes, stride, mode, pauli)
                np.testing.assert_allclose(got, g_theta, atol=ATOL)


def _clifford_circuit() -> hdqnn.Circuit:
    """Every fixed two-qubit Clifford gate among rotations, beside a constant non-Clifford gate (crz)
    and one with a weight (rzz): the Pauli basis' covariant passes and its general ones. The forward
    joins the one-qubit runs before a covariant gate to its pass: two runs per wire (multiplied), runs
    on both wires, on the first only, on the second only, on neither; a Clifford outside the compiled
    list (rzz(pi / 2)); runs left over for passes of their own (before crz, and at the end)."""
    c = hdqnn.Circuit(3)
    for q in range(3):
        c.ry(Input(q), q)
    for q in range(3):
        c.rz(Weight(q), q)
    c.cx(0, 1).cy(1, 2)
    c.rx(Weight(4), 2)
    c.cz(2, 0)
    c.ry(Weight(5), 2)
    c.swap(0, 2).cx(2, 1)
    c.ry(Weight(6), 0)
    c.rzz(np.pi / 2, 0, 1)
    c.crz(0.7, 1, 0)
    c.rzz(Weight(3), 0, 2)
    for q in range(3):
        c.rx(Weight(q), q)
    return c


def test_clifford_gates_with_phase_covariant_channels_match_the_reference(core, rng):
    """A fixed Clifford gate with phase-covariant channels runs as a permuted, fixed-pattern pass in
    the Pauli basis (forward and adjoint); a coherent error (rx after cx) breaks the pattern and takes
    the general pass. Both against the reference, and the VJP against rho's basis."""
    two = depolarizing(0.05, n_qubits=2)
    local = thermal_relaxation(50.0, 40.0, 3.0).tensor(phase_damping(0.1))
    for extra in (None, "coherent"):
        model = (NoiseModel().add(amplitude_damping(0.1), ["ry", "rx"]).add(pauli_channel(0.02, 0.03, 0.04), "rz")
                 .add(two, ["cx", "cy", "cz", "swap", "crz", "rzz"]).add(local, ["cx", "cz", "swap"])
                 .add(amplitude_damping(0.2).tensor(amplitude_damping(0.05)), "cy"))
        if extra == "coherent":
            model = model.add(kraus_rx(0.3).tensor(kraus_rx(-0.2)), "cx")
        circuit = _clifford_circuit()
        x = rng.uniform(-np.pi, np.pi, (BATCH, circuit.n_inputs))
        w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
        tables = compile_noise(circuit.compile(), model)
        strings = random_paulis(rng, 3, k=5)
        paulis = compile_observables(strings, 3)
        want = reference.expval(circuit, x, w, noise=model, observables=strings, readout=False)
        want_probs = reference.probabilities(circuit, x, w, noise=model, readout=False)
        g = rng.normal(size=(BATCH, len(strings)))
        rho_vjp = _run(core, "vjp", circuit, x, w, tables, paulis, g, pauli=0)
        for lanes in LANES:
            kw = dict(lanes=lanes, pauli=1)
            np.testing.assert_allclose(_run(core, "expval", circuit, x, w, tables, paulis, **kw), want, atol=ATOL)
            np.testing.assert_allclose(_run(core, "probabilities", circuit, x, w, tables, **kw), want_probs, atol=ATOL)
            np.testing.assert_allclose(_run(core, "vjp", circuit, x, w, tables, paulis, g, **kw), rho_vjp, atol=ATOL)


@pytest.mark.parametrize("n", [4, 5])
def test_spread_states_match_the_reference_and_the_lanes(core, rng, n):
    """One sample's state across the lanes (lanes=-1): its index bits move between lanes and entries
    as the passes need them, and the VJP brings lam to each kept state's layout. Random circuits
    (every gate kind) and noise models against the reference, the VJP against lanes of samples, with
    checkpoint segments (their states kept in the layouts they had)."""
    circuit, x, w, model, tables = _case(rng, n)
    strings = random_paulis(rng, n, k=4)
    paulis = compile_observables(strings, n)
    want_probs = reference.probabilities(circuit, x, w, noise=model, readout=False)
    want_expval = reference.expval(circuit, x, w, noise=model, observables=strings, readout=False)
    np.testing.assert_allclose(_run(core, "probabilities", circuit, x, w, tables, lanes=-1), want_probs, atol=ATOL)
    np.testing.assert_allclose(_run(core, "expval", circuit, x, w, tables, paulis, lanes=-1), want_expval,
                               atol=ATOL)
    g = rng.normal(size=(BATCH, len(strings)))
    want = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=1, pauli=1)
    for stride in (0, 2, 3):
        got = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=-1, stride=stride)
        np.testing.assert_allclose(got, want, atol=ATOL)


@pytest.mark.parametrize("coherent", [False, True])
def test_spread_states_through_chains_match_the_lanes(core, rng, coherent):
    """The hardware-efficient ansatz with phase-covariant noise: its runs join the cx passes (chains),
    the passes that move the most bits; a coherent error on cx takes the general two-qubit pass
    instead. Spread states against the reference and against lanes of samples (VJP)."""
    n = 5
    circuit = hdqnn.ansatz.hardware_efficient(n, 3)
    model = (NoiseModel().add(depolarizing(0.01), ["ry", "rz"]).add(amplitude_damping(0.02), ["ry", "rz"])
             .add(depolarizing(0.03, n_qubits=2), "cx"))
    if coherent:
        model = model.add(kraus_rx(0.3).tensor(kraus_rx(-0.2)), "cx")
    x = rng.uniform(-np.pi, np.pi, (BATCH, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    tables = compile_noise(circuit.compile(), model)
    strings = random_paulis(rng, n, k=3) + ["Z" * n]
    paulis = compile_observables(strings, n)
    want = reference.expval(circuit, x, w, noise=model, observables=strings, readout=False)
    np.testing.assert_allclose(_run(core, "expval", circuit, x, w, tables, paulis, lanes=-1), want, atol=ATOL)
    g = rng.normal(size=(BATCH, len(strings)))
    want_vjp = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=8)
    for stride in (0, 4):
        got = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=-1, stride=stride)
        np.testing.assert_allclose(got, want_vjp, atol=ATOL)


def test_checkpointed_vjp_on_the_programs_stride_matches_the_plans(core, rng):
    """At 10 qubits, 10 layers a VJP that keeps states keeps checkpoints (its states would pass 256
    MiB); the engine then takes the stride whose segments end between layers (20 blocks) over the
    plan's 15 (its states fit in the plan's). A reset on one wire (amplitude damping with gamma = 1)
    rules out the inverse sweep. Same gradients as the plan's stride and as a short one."""
    n = 10
    circuit = hdqnn.ansatz.hardware_efficient(n, 10)
    model = (NoiseModel().add(depolarizing(0.01), ["ry", "rz"]).add(depolarizing(0.02, n_qubits=2), "cx")
             .add(amplitude_damping(1.0), "rz", wires=[0]))
    tables = compile_noise(circuit.compile(), model)
    program, chan_idx = density.grouped(circuit.compile(), tables.channel_index)
    x = rng.uniform(-np.pi, np.pi, (1, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    blocks, stored = density.block_counts(circuit.compile())
    assert core.density_plan("vjp", n, blocks, stored, 1)["stride"] == 15
    paulis = compile_observables(["Z" + "I" * (n - 1), "I" * (n - 1) + "Z"], n)
    g = rng.normal(size=(1, 2))

    def vjp(stride):
        return core.density("vjp", n, program.gates.astype(np.int32), density._constant_gates(program),
                            np.ascontiguousarray(chan_idx, dtype=np.int32), tables.superops,
                            sample_angles(program, x, w), paulis, g, 0, stride)

    automatic = vjp(0)
    np.testing.assert_allclose(automatic, vjp(15), atol=1e-12)
    np.testing.assert_allclose(automatic, vjp(7), atol=1e-12)


def _invertible_case(rng, n, batch=BATCH):
    """Every gate kind, the two-qubit ones with constant angles (the inverse sweep differentiates
    one-qubit runs only), after channels of every kind at device-like strengths (invertible, little
    rounding growth): coherent Kraus errors on cz and rzz make those blocks general passes."""
    circuit = Circuit(n)
    for i in range(3):
        circuit.ry(Input(i, float(rng.uniform(0.5, 1.5))), i % n)
    for j in range(4):
        circuit.rx(Weight(j), j % n)
    for name, spec in GATES.items():
        wires = tuple(int(q) for q in rng.choice(n, size=spec.n_wires, replace=False))
        angles = tuple(float(rng.uniform(-np.pi, np.pi)) if spec.n_wires == 2 else random_angle(rng, 3, 4)
                       for _ in range(spec.n_angles))
        circuit.append(name, wires, angles)
    one = [g for g in GATES if GATES[g].n_wires == 1]
    two = [g for g in GATES if GATES[g].n_wires == 2]
    model = (NoiseModel().add(depolarizing(0.02), one).add(amplitude_damping(0.03), one[::2])
             .add(phase_damping(0.04), one[1::2]).add(thermal_relaxation(1.5, 1.2, 0.02), one[::3])
             .add(pauli_channel(0.01, 0.02, 0.005), one[1::3]).add(kraus_rx(0.2), one[2::3])
             .add(depolarizing(0.03, n_qubits=2), two)
             .add(amplitude_damping(0.02).tensor(thermal_relaxation(1.0, 1.5, 0.02)), ["cx", "swap"])
             .add(kraus_rx(0.3).tensor(kraus_rx(-0.2)), ["cz", "rzz"]))
    x = rng.uniform(-np.pi, np.pi, (batch, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    return circuit, x, w, model, compile_noise(circuit.compile(), model)


@pytest.mark.parametrize("n", [4, 5])
def test_inverse_sweep_matches_the_kept_states(core, rng, n):
    """stride=-1: the VJP keeps no inputs but undoes each block on the final state as it steps lam
    back (a chain's runs and cx in one pass, fixed and general two-qubit blocks by their inverse, a
    run per sample). Against kept states, for lanes of samples and spread states."""
    circuit, x, w, model, tables = _invertible_case(rng, n)
    strings = random_paulis(rng, n, k=3)
    paulis = compile_observables(strings, n)
    g = rng.normal(size=(BATCH, len(strings)))
    want = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=1, pauli=1)
    for lanes in (1, 4, 8, -1):
        got = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=lanes, stride=-1)
        np.testing.assert_allclose(got, want, atol=ATOL)


@pytest.mark.parametrize("n", [5, 8])
def test_inverse_sweep_through_the_ansatz_matches_finite_differences(core, rng, n):
    """The hardware-efficient ansatz with a device-like model (depolarizing and amplitude damping
    after every gate): every cx pass a chain with the runs before it. The inverse sweep (forced at 5
    qubits, the automatic choice at 8) against kept states and, at 5 qubits, finite differences of
    the forward."""
    circuit = hdqnn.ansatz.hardware_efficient(n, 2)
    model = (NoiseModel().add(depolarizing(0.01), ["ry", "rz"]).add(amplitude_damping(0.02), ["ry", "rz"])
             .add(depolarizing(0.03, n_qubits=2), "cx")
             .add(amplitude_damping(0.02).tensor(amplitude_damping(0.01)), "cx"))
    batch = 2
    x = rng.uniform(-np.pi, np.pi, (batch, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    tables = compile_noise(circuit.compile(), model)
    strings = ["Z" + "I" * (n - 1), "X" * n]
    paulis = compile_observables(strings, n)
    g = rng.normal(size=(batch, len(strings)))
    kept = _run(core, "vjp", circuit, x, w, tables, paulis, g, stride=1000)
    got = _run(core, "vjp", circuit, x, w, tables, paulis, g, stride=-1 if n == 5 else 0)
    np.testing.assert_allclose(got, kept, atol=ATOL)
    if n > 5:
        return
    program = circuit.compile()
    theta = sample_angles(program, x, w)

    def loss(t):
        return float(np.sum(g * core.density("expval", n, program.gates.astype(np.int32),
                                             density._constant_gates(program),
                                             np.ascontiguousarray(tables.channel_index, dtype=np.int32),
                                             tables.superops, t, paulis)))

    numeric = _finite_difference(loss, theta)
    np.testing.assert_allclose(got, numeric, atol=1e-7)


def test_inverse_sweep_near_its_rounding_budget_keeps_the_digits(core, rng):
    """Noise ten times a device's (p = 0.12 after every gate) on 6 qubits, 4 layers: the bound on the
    inverses' rounding growth is ~1e11, just inside the budget (1e12), yet the gradients agree with
    kept states' to 1e-12 of their largest (the errors the inverses amplify pair with lam's damped
    components)."""
    n, p = 6, 0.12
    circuit = hdqnn.ansatz.hardware_efficient(n, 4)
    model = (NoiseModel().add(depolarizing(p), ["ry", "rz"]).add(amplitude_damping(p), ["ry", "rz"])
             .add(depolarizing(2 * p, n_qubits=2), "cx"))
    x = rng.uniform(-np.pi, np.pi, (3, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    tables = compile_noise(circuit.compile(), model)
    paulis = compile_observables(["Z" * n, "ZZ" + "I" * (n - 2)], n)
    g = rng.normal(size=(3, 2))
    kept = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=-1, stride=1000)
    got = _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=-1, stride=-1)
    np.testing.assert_allclose(got, kept, atol=1e-12 * np.abs(kept).max())


def test_inverse_sweep_refuses_what_it_cannot_undo(core, rng):
    """A two-qubit gate with an angle to differentiate, a channel that cannot be undone (amplitude
    damping with gamma = 1) or one whose inverse would grow rounding errors past the budget (near
    full depolarizing on every gate: a bound of ~1e26): stride=-1 is a clear error, and the
    automatic plan keeps states (same gradients as a forced stride)."""
    n = 4
    circuit = hdqnn.ansatz.hardware_efficient(n, 2)
    paulis = compile_observables(["ZIII"], n)
    x = rng.uniform(-np.pi, np.pi, (2, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    g = rng.normal(size=(2, 1))
    rzz = hdqnn.ansatz.hardware_efficient(n, 2).rzz(Weight(0), 0, 1)
    mild = NoiseModel().add(depolarizing(0.01), ["ry", "rz"])
    cases = [(rzz, mild, w),
             (circuit, NoiseModel().add(amplitude_damping(1.0), "rz", wires=[2]), w),
             (circuit, NoiseModel().add(depolarizing(0.95), ["ry", "rz"]), w)]
    for c, model, weights in cases:
        tables = compile_noise(c.compile(), model)
        with pytest.raises(ValueError, match=r"stride=-1 \(the inverse sweep\) needs"):
            _run(core, "vjp", c, x, weights, tables, paulis, g, stride=-1)
        np.testing.assert_allclose(_run(core, "vjp", c, x, weights, tables, paulis, g, lanes=-1),
                                   _run(core, "vjp", c, x, weights, tables, paulis, g, lanes=-1, stride=3),
                                   atol=ATOL)
    tables = compile_noise(circuit.compile(), mild)
    with pytest.raises(ValueError, match="needs the Pauli basis"):
        _run(core, "vjp", circuit, x, w, tables, paulis, g, stride=-1, pauli=0)


def test_vjp_memory_check_counts_the_inverse_sweeps_two_states(core, rng, monkeypatch):
    """At 10 qubits the VJP's kept states (all of them, 2 layers: 23 of 8 MiB per worker) would not
    fit in the memory given here, its inverse sweep's two would: an invertible program's VJP runs,
    the auto method picks the density matrix for it, and a program with a reset (gamma = 1) is
    refused before allocating."""
    from hdqnn.sim import memory, noisy

    n, batch = 10, 2
    circuit = hdqnn.ansatz.hardware_efficient(n, 2)
    program = circuit.compile()
    x = rng.uniform(-np.pi, np.pi, (batch, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    g = rng.normal(size=(batch, n))
    undoable = NoiseModel().add(depolarizing(0.01), ["ry", "rz"])
    reset = NoiseModel().add(depolarizing(0.01), ["ry", "rz"]).add(amplitude_damping(1.0), "rz", wires=[0])
    blocks, stored = density.block_counts(program)
    for model, invertible in ((undoable, True), (reset, False)):
        tables = compile_noise(program, model)
        assert density.density_invertible(program, tables.channel_index, tables.superops) == invertible
    kept = density.density_workspace_bytes("vjp", n, blocks, batch, n_stored=stored)
    inverse = density.density_workspace_bytes("vjp", n, blocks, batch, n_stored=stored, invertible=True)
    workers = min(batch, core.get_num_threads())
    assert inverse == workers * 2 * 8 * 4**n < kept
    have = 4 * inverse  # past UNCHECKED_BYTES with the kept states, short of them
    assert memory.UNCHECKED_BYTES <= kept and memory.MEMORY_FRACTION * have < kept
    monkeypatch.setattr(memory, "available_memory", lambda: have)
    monkeypatch.setattr(noisy, "available_memory", lambda: have)
    gi, gw = hdqnn.vjp(circuit, x, w, g, noise=undoable, method="density_matrix")
    assert np.all(np.isfinite(gw)) and gi.shape == x.shape
    np.testing.assert_array_equal(hdqnn.vjp(circuit, x, w, g, noise=undoable)[1], gw)  # auto: the same
    with pytest.raises(ValueError, match="too large for memory"):
        hdqnn.vjp(circuit, x, w, g, noise=reset, method="density_matrix")
    with pytest.raises(ValueError, match="does not pick"):
        hdqnn.vjp(circuit, x, w, g, noise=reset)


def kraus_rx(angle: float):
    """A unitary (coherent) error: rx(angle) as a one-operator Kraus channel."""
    c, s = np.cos(angle / 2), np.sin(angle / 2)
    return kraus([np.array([[c, -1j * s], [-1j * s, c]])])


@pytest.mark.parametrize("n, lanes, stride", [(3, 0, 0), (4, -1, 0), (4, -1, -1)])
def test_results_do_not_depend_on_the_thread_count(core, rng, n, lanes, stride):
    """Each lane block (lanes 0: the plan's), or each spread sample (lanes -1; its VJP on kept states
    or the inverse sweep, stride -1), runs on one worker whatever the threads: bit-identical."""
    case = _invertible_case if stride < 0 else _case
    circuit, x, w, model, tables = case(rng, n, batch=11)
    paulis = compile_observables(random_paulis(rng, n, k=2), n)
    g = rng.normal(size=(11, 2))
    before = core.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            core.set_num_threads(threads)
            results.append((_run(core, "expval", circuit, x, w, tables, paulis, lanes=lanes),
                            _run(core, "vjp", circuit, x, w, tables, paulis, g, lanes=lanes, stride=stride)))
    finally:
        core.set_num_threads(before)
    for expval, vjp in results[1:]:
        np.testing.assert_array_equal(expval, results[0][0])
        np.testing.assert_array_equal(vjp, results[0][1])


def _density_in_child(args):
    from hdqnn import _core_cpu

    return _core_cpu.density(*args)


def test_concurrent_calls_and_a_forked_child_agree(core, rng):
    """Calls from several Python threads at once (the GIL is released; one owns the worker pool, the
    others run alone) and from a forked child, whose pool is rebuilt, return the same numbers."""
    import multiprocessing
    import threading

    circuit, x, w, model, tables = _case(rng, 4, batch=24)
    program = circuit.compile()
    args = ("expval", 4, program.gates.astype(np.int32), density._constant_gates(program),
            np.ascontiguousarray(tables.channel_index, dtype=np.int32), tables.superops,
            sample_angles(program, x, w), compile_observables(random_paulis(rng, 4, k=2), 4))
    before = core.get_num_threads()
    core.set_num_threads(2)
    try:
        expected = core.density(*args)
        results = [None] * 3

        def call(i):
            results[i] = core.density(*args)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            np.testing.assert_array_equal(r, expected)
        if "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(1) as pool:
                np.testing.assert_array_equal(pool.apply(_density_in_child, (args,)), expected)
    finally:
        core.set_num_threads(before)


def test_workspace_estimate_is_the_plan(core):
    """density_workspace_bytes reports what the compiled engine allocates: lanes x states x 4**n entries
    (complex128 of rho, or float64 Pauli coefficients: every task but the state takes the Pauli basis)."""
    for task, n, blocks, stored, batch in (("expval", 6, 48, 24, 256), ("vjp", 6, 48, 24, 256),
                                           ("vjp", 10, 200, 100, 8), ("probabilities", 2, 3, 3, 1),
                                           ("state", 5, 20, 10, 16)):
        plan = core.density_plan(task, n, blocks, stored, batch)
        assert plan["pauli"] == (task != "state")
        entry = 8 if plan["pauli"] else 16
        samples = 1 if plan["spread"] else plan["lanes"]  # a worker block's samples
        assert plan["workspace_bytes"] == plan["workers"] * plan["states_per_worker"] * samples * entry * 4**n
        assert plan["workers"] <= min(plan["threads"], -(-batch // samples))
        got = density.density_workspace_bytes(task, n, blocks, batch, engine="cpp", n_stored=stored)
        assert got == plan["workspace_bytes"]
    vjp = core.density_plan("vjp", 10, 200, 100, 8)
    assert vjp["stride"] < 200 and vjp["states_per_worker"] < 100  # checkpoints bound a large register
    assert core.density_plan("expval", 4, 10, 5, 64, pauli=0)["hermitian"]
    assert not core.density_plan("vjp", 10, 200, 100, 8, pauli=0)["hermitian"]
    assert not core.density_plan("expval", 4, 10, 5, 64)["hermitian"]  # the Pauli basis has no mirror
    # spread states where they pay (the VJP from 7 qubits, the forward from 9), or where forced
    assert [core.density_plan("vjp", n, 40, 20, 64)["spread"] for n in (6, 7)] == [False, True]
    assert [core.density_plan("expval", n, 40, 20, 64)["spread"] for n in (8, 9)] == [False, True]
    assert not core.density_plan("vjp", 10, 200, 100, 8, pauli=0)["spread"]
    assert core.density_plan("vjp", 4, 10, 5, 64, lanes=-1)["spread"]
    # the inverse sweep from 8 qubits where the program allows it (two states: lam and rho), or forced
    assert [core.density_plan("vjp", n, 40, 20, 64, invertible=True)["inverse"] for n in (7, 8)] == [False, True]
    inverse = core.density_plan("vjp", 10, 200, 100, 8, invertible=True)
    assert inverse["states_per_worker"] == 2 and inverse["stride"] == 200
    assert not core.density_plan("vjp", 10, 200, 100, 8)["inverse"]
    assert core.density_plan("vjp", 4, 10, 5, 64, stride=-1, invertible=True)["inverse"]
    assert not core.density_plan("expval", 10, 200, 100, 8, invertible=True)["inverse"]


def test_bad_input_is_a_clear_error(core, rng):
    circuit, x, w, model, tables = _case(rng, 2, batch=2)
    program = circuit.compile()
    gates = program.gates.astype(np.int32)
    constant = density._constant_gates(program)
    idx = np.ascontiguousarray(tables.channel_index, dtype=np.int32)
    theta = sample_angles(program, x, w)
    paulis = compile_observables(["ZZ"], 2)

    def call(task="expval", n=2, gates=gates, idx=idx, theta=theta, paulis=paulis, grad=None, lanes=0):
        return core.density(task, n, gates, constant, idx, tables.superops, theta, paulis, grad, lanes)

    with pytest.raises(TypeError, match="gates must have dtype int32"):
        call(gates=program.gates.astype(np.int64))
    with pytest.raises(ValueError, match="unknown density task"):
        call(task="statevector")
    with pytest.raises(ValueError, match="n_qubits must be in"):
        call(n=0)
    with pytest.raises(ValueError, match="paulis has shape"):
        call(paulis=compile_observables(["ZZZ"], 3))
    with pytest.raises(ValueError, match="channel index"):
        call(idx=np.full_like(idx, len(tables.superops)))
    bad = gates.copy()
    bad[0, 0] = 99
    with pytest.raises(ValueError, match="unknown code 99"):
        call(gates=bad)
    with pytest.raises(ValueError, match="unknown code 99"):
        core.density_invertible(2, bad, constant, idx, tables.superops)
    with pytest.raises(ValueError, match="channel index"):
        core.density_invertible(2, gates, constant, np.full_like(idx, len(tables.superops)), tables.superops)
    bad = gates.copy()
    bad[0, 1] = 2
    with pytest.raises(ValueError, match="outside"):
        call(gates=bad)
    with pytest.raises(ValueError, match="reads angles past"):
        call(theta=np.ascontiguousarray(theta[:, :1]))
    with pytest.raises(ValueError, match="grad_terms has shape"):
        call(task="vjp", grad=np.ones((3, 1)))
    with pytest.raises(ValueError, match="lanes must be"):
        call(lanes=3)
    with pytest.raises(ValueError, match="lanes=-1 .* at least 4 qubits"):
        call(lanes=-1)
    with pytest.raises(ValueError, match="needs the Pauli basis"):
        core.density_plan("vjp", 6, 10, 5, 64, lanes=-1, pauli=0)
    with pytest.raises(ValueError, match="stride must be 0"):
        core.density_plan("vjp", 6, 10, 5, 64, stride=-2)
    with pytest.raises(ValueError, match="hermitian must be"):
        core.density("expval", 2, gates, constant, idx, tables.superops, theta, paulis, None, 0, 0, 2)
    with pytest.raises(ValueError, match="pauli must be"):
        core.density("expval", 2, gates, constant, idx, tables.superops, theta, paulis, None, 0, 0, -1, 2)
    with pytest.raises(ValueError, match="cannot run in the Pauli basis"):
        core.density("state", 2, gates, constant, idx, tables.superops, theta, None, None, 0, 0, -1, 1)
    with pytest.raises(ValueError, match="paulis must hold 0"):
        call(paulis=np.full((1, 2), 7, dtype=np.int8))


# ----------------------------------------------------------------------------- trajectories
def _trajectory_args(rng, n, batch=BATCH, n_traj=6):
    circuit, x, w, model, tables = _case(rng, n, batch=batch)
    program = circuit.compile()
    paulis = compile_observables(random_paulis(rng, n, k=3), n)
    n_noisy = int(np.count_nonzero(tables.channel_index >= 0))
    uniforms = rng.random((batch, n_traj, n_noisy + 1))
    return program, x, w, tables, paulis, uniforms


def _trajectories(program, x, w, tables, paulis, uniforms, engine):
    return density.trajectories(program, x, w, tables.channel_index, tables.kraus, tables.kraus_count, paulis,
                                uniforms, engine=engine)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_trajectories_match_the_numba_kernel(core, rng, n):
    """The same pre-drawn uniforms give the same jumps: per-trajectory expectations, averaged
    probabilities and drawn outcomes agree with the Numba kernel (random circuits over every gate,
    random noise models over every channel type)."""
    _engine_or_skip("numba")
    args = _trajectory_args(rng, n)
    got = _trajectories(*args, engine="cpp")
    want = _trajectories(*args, engine="numba")
    np.testing.assert_allclose(got[0], want[0], atol=ATOL)
    np.testing.assert_allclose(got[1], want[1], atol=ATOL)
    np.testing.assert_array_equal(got[2], want[2])
    assert np.all(np.isfinite(got[0])) and np.allclose(got[1].sum(axis=1), 1.0)


def test_trajectories_run_compiled_by_default_and_average_to_the_density_matrix(core, rng):
    """The public call's trajectories take the compiled engine, and their mean approaches the exact
    noisy expectation (within 5 standard errors)."""
    assert density.trajectory_engine() == "cpp"
    circuit = hdqnn.ansatz.hardware_efficient(3, 2)
    x = rng.uniform(-np.pi, np.pi, (2, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    model = NoiseModel().add(depolarizing(0.05), ["ry", "rz"]).add(amplitude_damping(0.1), ["ry"])
    exact = hdqnn.expval(circuit, x, w, noise=model, method="density_matrix")
    est, err = hdqnn.expval(circuit, x, w, noise=model, method="trajectories", trajectories=4000, seed=3,
                            return_stderr=True)
    assert np.all(np.abs(est - exact) <= 5 * err + 1e-12)


def test_trajectories_do_not_depend_on_the_thread_count(core, rng):
    args = _trajectory_args(rng, 3, batch=7)
    before = core.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            core.set_num_threads(threads)
            results.append(_trajectories(*args, engine="cpp"))
    finally:
        core.set_num_threads(before)
    for result in results[1:]:
        for a, b in zip(result, results[0]):
            np.testing.assert_array_equal(a, b)


def test_trajectories_bad_input_is_a_clear_error(core, rng):
    program, x, w, tables, paulis, uniforms = _trajectory_args(rng, 2, batch=2)
    with pytest.raises(ValueError, match="one draw per noisy gate"):
        _trajectories(program, x, w, tables, paulis, uniforms[:, :, 1:], engine="cpp")
    if len(tables.kraus):
        count = np.full_like(tables.kraus_count, tables.kraus.shape[1] + 1)
        with pytest.raises(ValueError, match="kraus_count"):
            density.trajectories(program, x, w, tables.channel_index, tables.kraus, count, paulis, uniforms,
                                 engine="cpp")
    with pytest.raises(ValueError, match="uniforms has shape"):
        _trajectories(program, x, w, tables, paulis, uniforms[:1], engine="cpp")
