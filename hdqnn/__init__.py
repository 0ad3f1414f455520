"""hdqnn: batched statevector engine and PyTorch layers for hybrid deep quantum neural networks."""
from .backends import backend_status, get_backend, set_num_threads
from .circuits import Circuit, Input, Weight, ansatz
from .sim import counts, expval, expval_from_samples, marginals, probabilities, sample, statevector, vjp
from . import hardware, noise, qasm

__version__ = "0.1.0"

__all__ = [
    "Circuit", "Input", "Weight", "ansatz", "statevector", "probabilities", "expval", "vjp", "sample",
    "counts", "marginals", "expval_from_samples", "set_num_threads", "get_backend", "backend_status",
]

#: Public names of hdqnn.autograd, imported on first use so that `import hdqnn` does not load torch.
_AUTOGRAD_EXPORTS = ("QuantumLayer", "QtDNN", "QtDNNConfig", "CircuitRunner", "parameter_shift_vjp")
__all__ += list(_AUTOGRAD_EXPORTS)
__all__ += ["from_qiskit", "from_pennylane"]
__all__ += ["qasm", "hardware", "noise"]


def __getattr__(name: str):
    if name in _AUTOGRAD_EXPORTS:
        from . import autograd

        return getattr(autograd, name)
    if name == "from_qiskit":  # hdqnn.interop, loaded (and Qiskit with it) only when used
        from .interop import from_qiskit

        return from_qiskit
    if name == "from_pennylane":  # likewise: PennyLane is loaded only when used
        from .interop import from_pennylane

        return from_pennylane
    raise AttributeError(f"module 'hdqnn' has no attribute {name!r}")
