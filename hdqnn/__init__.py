"""hdqnn: batched statevector engine and PyTorch layers for hybrid deep quantum neural networks."""
from .backends import backend_status, get_backend, set_num_threads
from .circuits import Circuit, Input, Weight, ansatz
from .sim import counts, expval, expval_from_samples, marginals, probabilities, sample, statevector, vjp

__version__ = "0.1.0"

__all__ = [
    "Circuit", "Input", "Weight", "ansatz", "statevector", "probabilities", "expval", "vjp", "sample",
    "counts", "marginals", "expval_from_samples", "set_num_threads", "get_backend", "backend_status",
]
