"""Run circuits on a backend: expectations, probabilities, sampling, VJPs; torch <-> arrays."""
from .api import expval, probabilities, reuses_states, statevector, vjp
from .sampling import counts, expval_from_samples, marginals, sample

__all__ = ["statevector", "probabilities", "expval", "vjp", "reuses_states", "sample", "counts", "marginals",
           "expval_from_samples"]
