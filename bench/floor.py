"""The arithmetic floor: gate flops of the ansatz over this machine's measured one-thread peak.

Flop model (real flops; a state of 2**n amplitudes, B samples):
  * a general one-qubit gate updates 2**(n-1) amplitude pairs, each with 4 complex multiplies
    (6 flops) and 2 complex adds (2 flops): 28 * 2**(n-1) = 14 * 2**n flops. RY and RZ are
    counted as general gates (an engine may specialise them; the floor does not assume it).
  * a CNOT is a permutation: 0 flops (memory traffic only).
  * the readout (<Z_q> for every q) is not counted.
  This "general" model is the floor the table reports. An engine that specialises RY (a real
  rotation: 12 flops per pair) and RZ (diagonal: 12 flops per pair), or fuses gates, does less
  arithmetic and can pass 100% of it; the JSON also carries the "specialised" model
  (6 flops per amplitude per rotation, fwd+vjp 6 + 2 * 6 + 8 = 26) for that comparison.
  forward:  B * G1 * 14 * 2**n, with G1 = n * (2 * layers + 1) rotations.
  fwd+vjp:  the forward, then the adjoint sweep un-applies every rotation on the state and on the
            costate (2 * 14 * 2**n each) and takes one derivative inner product per angle
            (Re <lambda|dU|psi>: one complex multiply-add per amplitude, 8 * 2**n):
            B * G1 * (14 + 28 + 8) * 2**n = B * G1 * 50 * 2**n.
Peak: a Numba-compiled loop of independent fused multiply-adds on an L1-resident array
(``fastmath={"contract"}`` allows FMA contraction but no reassociation, so every FMA is executed),
timed on one thread, in float64 for complex128 runs and float32 for complex64 runs. Numba
compiles for this host's vector units (AVX-512 / AVX2 here), so the peak is what compiled code
can reach on this core, not a datasheet number. The floor time is flops / peak, and the achieved
fraction is floor time / measured time (at k threads the peak is k times the one-thread peak).
"""
from __future__ import annotations

import time

import numpy as np

FLOPS_PER_GATE_AMPLITUDE = {"general": 14, "specialised": 6}  # per amplitude: 28 or 12 per pair
MODELS = tuple(FLOPS_PER_GATE_AMPLITUDE)
FLOPS_PER_DERIVATIVE_AMPLITUDE = 8    # one complex multiply-add per amplitude
ADJOINT_GATE_PASSES = 2               # un-apply on the state and on the costate
PEAK_ARRAY_BYTES = 4096               # L1-resident, many independent FMA chains per element block
PEAK_FMAS_PER_ELEMENT = 16            # unrolled chain per loaded element: compute-bound, not load-bound
PEAK_TARGET_SECONDS = 0.01            # short samples: each likely fits one undisturbed time slice
PEAK_SAMPLES = 30                     # best of these is the peak (robust to a busy neighbour)
FLOPS_PER_FMA = 2


def rotations(n: int, layers: int) -> int:
    """One-qubit rotations of hardware_efficient(n, layers): encoding + 2 per wire per layer."""
    return n * (2 * layers + 1)


def gate_flops(n: int, layers: int, batch: int, mode: str, model: str = "general") -> float:
    """Real flops of ``mode`` ("fwd" or "fwd+vjp") under ``model`` (see the module docstring)."""
    if model not in FLOPS_PER_GATE_AMPLITUDE:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    per_gate = FLOPS_PER_GATE_AMPLITUDE[model]
    per_amplitude = per_gate
    if mode == "fwd+vjp":
        per_amplitude += ADJOINT_GATE_PASSES * per_gate + FLOPS_PER_DERIVATIVE_AMPLITUDE
    elif mode != "fwd":
        raise ValueError(f"mode must be 'fwd' or 'fwd+vjp', got {mode!r}")
    return float(batch) * rotations(n, layers) * per_amplitude * 2.0**n


def _fma_kernel():
    from numba import njit

    @njit(fastmath={"contract"}, cache=False)
    def kernel(acc, a, b, reps):
        for _ in range(reps):
            for i in range(acc.size):
                v = acc[i]
                for _k in range(PEAK_FMAS_PER_ELEMENT):
                    v = v * a + b
                acc[i] = v
        return acc

    return kernel


def measure_peak(real_dtype) -> float:
    """One-thread peak flop/s of a compiled FMA loop in ``real_dtype`` (float64 or float32)."""
    kernel = _fma_kernel()
    dtype = np.dtype(real_dtype)
    acc = np.full(PEAK_ARRAY_BYTES // dtype.itemsize, 0.5, dtype=dtype)
    # a < 1 and b small keep the values bounded and normal: no overflow, no denormal slow path
    a, b = dtype.type(0.999), dtype.type(1e-4)
    kernel(acc, a, b, 1)
    reps = 1
    while True:
        start = time.perf_counter()
        kernel(acc, a, b, reps)
        if time.perf_counter() - start > PEAK_TARGET_SECONDS / 4:
            break
        reps *= 2
    best = float("inf")
    for _ in range(PEAK_SAMPLES):
        start = time.perf_counter()
        kernel(acc, a, b, reps)
        best = min(best, time.perf_counter() - start)
    return reps * acc.size * PEAK_FMAS_PER_ELEMENT * FLOPS_PER_FMA / best


def floor_fraction(flops: float, peak: float, threads: int, seconds: float) -> float:
    """Achieved fraction of the arithmetic floor: (flops / (threads * peak)) / seconds."""
    return flops / (threads * peak) / seconds
