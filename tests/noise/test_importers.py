"""NoiseModel.from_qiskit and NoiseModel.from_backend against Qiskit Aer's own models."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from hdqnn import Circuit, Input
from hdqnn.noise import NoiseModel, depolarizing, reference
from hdqnn.noise.importers import QISKIT_GATE_NAMES
from tests.circuit_factory import random_circuit
from tests.noise.aer import aer_density_matrices, require_aer, to_aer_model, to_qiskit
from tests.noise.factory import random_noise_model
from tests.qasm.optional import import_or_skip

ATOL = 1e-10


def _composed_superop(channels, d):
    out = np.eye(d * d, dtype=np.complex128)
    for channel in channels:
        out = channel.superop @ out
    return out


def fake_manila():
    import_or_skip("qiskit_ibm_runtime", "qiskit")
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    return FakeManilaV2()


@pytest.mark.parametrize("n", [2, 3])
def test_from_qiskit_reproduces_aers_noisy_states_and_readout(rng, n):
    require_aer()
    original = random_noise_model(rng, n)
    aer = to_aer_model(original)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every hdqnn gate maps: nothing to warn about
        imported = NoiseModel.from_qiskit(aer)
    circuit = random_circuit(rng, n)
    x = rng.uniform(-np.pi, np.pi, (2, circuit.n_inputs))
    w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
    np.testing.assert_allclose(reference.density_matrix(circuit, x, w, noise=imported),
                               aer_density_matrices(circuit, x, w, aer), atol=ATOL)
    for q in range(n):
        assert imported.readout_error(q) == original.readout_error(q)
    np.testing.assert_allclose(reference.probabilities(circuit, x, w, noise=imported),
                               reference.probabilities(circuit, x, w, noise=original), atol=ATOL)


def test_from_qiskit_names_what_it_cannot_map_and_takes_a_gate_map():
    require_aer()
    from qiskit_aer.noise import NoiseModel as AerNoiseModel
    from qiskit_aer.noise import depolarizing_error

    aer = AerNoiseModel()
    aer.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["ecr"])
    aer.add_quantum_error(depolarizing_error(0.05, 1), ["id", "u3"], [1])
    aer.add_all_qubit_quantum_error(depolarizing_error(0.2, 3), ["ccx"])  # 3 qubits: no hdqnn form
    with pytest.warns(UserWarning, match="errors on ccx, ecr, id were not imported"):
        model = NoiseModel.from_qiskit(aer)
    np.testing.assert_allclose(model.channels_after("u", (1,))[0].superop, depolarizing(0.05).superop, atol=1e-12)
    assert model.channels_after("cx", (0, 1)) == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mapped = NoiseModel.from_qiskit(aer, gate_map={"ecr": "cx", "id": None, "ccx": None})
    np.testing.assert_allclose(mapped.channels_after("cx", (0, 1))[0].superop,
                               depolarizing(0.1, 2).superop, atol=1e-12)
    with pytest.raises(ValueError, match="unknown hdqnn gate"):
        NoiseModel.from_qiskit(aer, gate_map={"ecr": "ecr"})
    with pytest.raises(ValueError, match="2-qubit instruction 'ecr' to 1-qubit gate 'x'"):
        NoiseModel.from_qiskit(aer, gate_map={"ecr": "x", "id": None, "ccx": None})


def test_from_qiskit_layout_and_bad_input():
    require_aer()
    from qiskit_aer.noise import NoiseModel as AerNoiseModel
    from qiskit_aer.noise import ReadoutError, amplitude_damping_error

    aer = AerNoiseModel()
    aer.add_quantum_error(amplitude_damping_error(0.3), ["sx"], [4])
    aer.add_quantum_error(amplitude_damping_error(0.1), ["sx"], [0])
    aer.add_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]), [4])
    model = NoiseModel.from_qiskit(aer, layout=[4, 2])  # wire 0 = qubit 4, wire 1 = qubit 2
    assert len(model.rules) == 1 and model.rules[0].wires == ((0,),)
    assert model.readout_error(0).p_meas1_given0 == 0.1 and model.readout_error(0).p_meas0_given1 == 0.2
    assert model.readout_error(1) is None
    correlated = AerNoiseModel()
    correlated.add_readout_error(ReadoutError(np.full((4, 4), 0.25)), [0, 1])
    with pytest.raises(ValueError, match="only single-qubit readout errors"):
        NoiseModel.from_qiskit(correlated)
    with pytest.raises(TypeError, match="needs a qiskit_aer.noise.NoiseModel"):
        NoiseModel.from_qiskit({"rules": []})
    with pytest.raises(ValueError, match="layout repeats a physical qubit"):
        NoiseModel.from_qiskit(aer, layout=[1, 1])


def _device(name: str):
    """(backend, gate_map): IBM's fake Manila (cx), or a generic ECR device whose ecr errors are
    borrowed for hdqnn's cx."""
    if name == "fake_manila":
        return fake_manila(), None
    import_or_skip("qiskit", "qiskit")
    from qiskit.providers.fake_provider import GenericBackendV2

    return GenericBackendV2(4, basis_gates=["ecr", "id", "rz", "sx", "x", "cz"], seed=3), {"ecr": "cx"}


@pytest.mark.parametrize("device", ["fake_manila", "generic_ecr"])
def test_from_backend_has_aers_channels_after_the_same_gates_on_the_same_qubits(device):
    require_aer()
    from qiskit_aer.noise import NoiseModel as AerNoiseModel

    backend, gate_map = _device(device)
    aer = AerNoiseModel.from_backend(backend)
    with pytest.warns(UserWarning, match="errors on id, reset were not imported"):
        ours = NoiseModel.from_backend(backend, gate_map=gate_map)
    with pytest.warns(UserWarning):
        theirs = NoiseModel.from_qiskit(aer, gate_map=gate_map)  # Aer's model, by the other path
    names = {**QISKIT_GATE_NAMES, **(gate_map or {})}
    compared = 0
    for name, by_qubits in aer._local_quantum_errors.items():
        if name not in names:
            continue
        for qubits in by_qubits:
            d = 2 ** len(qubits)
            np.testing.assert_allclose(_composed_superop(ours.channels_after(names[name], qubits), d),
                                       _composed_superop(theirs.channels_after(names[name], qubits), d),
                                       atol=1e-12, err_msg=f"{name} on {qubits}")
            compared += 1
    assert compared == len(ours.rules) > 0  # every rule of ours is one of Aer's errors, and back
    assert "rz" not in {g for r in ours.rules for g in r.gates}  # rz is ideal (virtual): no rule
    for q in range(backend.num_qubits):
        aer_probs = aer._local_readout_errors[(q,)].probabilities
        assert ours.readout_error(q).p_meas1_given0 == aer_probs[0][1]
        assert ours.readout_error(q).p_meas0_given1 == aer_probs[1][0]


def test_from_backend_with_a_layout_gives_aers_noisy_state_on_those_qubits(rng):
    """A small circuit of the device's gates on physical qubits 3, 2, 1: the same reduced state."""
    require_aer()
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import DensityMatrix
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel as AerNoiseModel

    backend = fake_manila()
    layout = [3, 2, 1]
    with pytest.warns(UserWarning):
        model = NoiseModel.from_backend(backend, layout=layout)
    assert model.max_wire == 2
    circuit = (Circuit(3).sx(0).rz(Input(0), 0).x(1).sx(2).cx(0, 1).cx(1, 2).rz(Input(1), 2)
               .sx(2).cx(2, 1).x(0).cx(1, 0))
    x = rng.uniform(-np.pi, np.pi, (2, 2))
    ours = reference.density_matrix(circuit, x, None, noise=model)
    sim = AerSimulator(method="density_matrix", noise_model=AerNoiseModel.from_backend(backend))
    for b in range(2):
        qc = QuantumCircuit(5)
        qc.compose(to_qiskit(circuit, x[b], []), qubits=layout, inplace=True)
        qc.save_density_matrix(qubits=layout)
        rho = DensityMatrix(sim.run(qc).result().data(0)["density_matrix"]).reverse_qargs().data
        np.testing.assert_allclose(ours[b], rho, atol=ATOL)
    assert np.abs(ours - reference.density_matrix(circuit, x, None)).max() > 1e-3


def test_from_backend_bad_input():
    backend = fake_manila()
    with pytest.raises(ValueError, match="layout names qubit 7, but the device has qubits 0..4"):
        NoiseModel.from_backend(backend, layout=[0, 7])
    with pytest.raises(TypeError, match="layout entries must be physical qubit ints"):
        NoiseModel.from_backend(backend, layout=["q0"])
    with pytest.raises(TypeError, match="needs a Qiskit BackendV2 with a Target"):
        NoiseModel.from_backend("fake_manila")
    with pytest.warns(UserWarning):
        model = NoiseModel.from_backend(backend)
    with pytest.raises(ValueError, match="names wire 4 but the circuit has 3 qubit.*layout"):
        reference.probabilities(Circuit(3).x(0), noise=model)


def test_a_device_model_round_trips_through_json_exactly():
    backend = fake_manila()
    with pytest.warns(UserWarning):
        model = NoiseModel.from_backend(backend, layout=[1, 2])
    back = NoiseModel.from_json(model.to_json())
    assert back == model and hash(back) == hash(model)


def test_from_backend_builds_the_same_model_in_every_process():
    """The Target's name order follows string hashing, which differs between processes: the model
    (its JSON, hence the hash ``hdqnn train --noise`` records) must not."""
    import os
    import subprocess
    import sys

    fake_manila()  # skips without qiskit-ibm-runtime
    code = ("from qiskit_ibm_runtime.fake_provider import FakeManilaV2\n"
            "from hdqnn.noise import NoiseModel\n"
            "print(NoiseModel.from_backend(FakeManilaV2(), layout=[0, 1, 2, 3, 4]).to_json())")
    texts = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
             for seed in (1, 2, 3)}
    assert len(texts) == 1
