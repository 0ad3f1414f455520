"""Noise: quantum channels, readout errors and noise models (NumPy only; Qiskit only in the importers).

```python
import numpy as np
import hdqnn
from hdqnn import noise

circuit = hdqnn.ansatz.hardware_efficient(3, 2)
x, w = np.random.uniform(-1, 1, (8, circuit.n_inputs)), np.random.uniform(-1, 1, circuit.n_weights)
model = (noise.NoiseModel()
         .add(noise.depolarizing(0.01), gates=["ry", "rz"])
         .add(noise.depolarizing(0.02, n_qubits=2), gates="cx", wires=[(0, 1)])
         .add_readout(noise.ReadoutError(0.02, 0.05)))
rho = noise.reference.density_matrix(circuit, x, w, noise=model)   # [8, 8, 8] complex128
p = noise.reference.probabilities(circuit, x, w, noise=model)      # [8, 8], readout applied

from qiskit_ibm_runtime.fake_provider import FakeManilaV2           # pip install qiskit-ibm-runtime
device = noise.NoiseModel.from_backend(FakeManilaV2(), layout=[0, 1, 2])  # wire i = qubit layout[i]
```
"""
from . import reference
from .channels import (
    Channel, ReadoutError, amplitude_damping, depolarizing, kraus, kraus_from_superop, pauli_basis,
    pauli_channel, phase_damping, thermal_relaxation,
)
from .model import NoiseModel, NoiseRule, ReadoutRule

__all__ = [
    "Channel", "ReadoutError", "NoiseModel", "NoiseRule", "ReadoutRule", "depolarizing", "pauli_channel",
    "amplitude_damping", "phase_damping", "thermal_relaxation", "kraus", "kraus_from_superop",
    "pauli_basis", "reference",
]
