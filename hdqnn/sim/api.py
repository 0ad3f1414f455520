"""Run circuits: statevectors, probabilities, Pauli expectations, shot samples and exact VJPs.

Each function validates once (``arrays.prepare``), makes ONE engine call for the whole batch and
returns NumPy arrays, or CPU torch tensors when the caller passed tensors.
"""
from __future__ import annotations

from typing import Any

from ..backends import get_backend
from ..circuits import Circuit, compile_observables
from . import device as gpu
from . import noisy
from .arrays import check_real_2d, check_state, prepare, warn_if_requires_grad, wrap
from .memory import engine_need, reserved, result_bytes


def check_noise_args(noise: Any, method: Any, trajectories: Any, device: Any, backend: Any,
                     *arrays: Any) -> tuple[str, int | None]:
    """Validate the noise keywords of a call: (method, trajectories), or a clear error."""
    if noise is None:
        if method is not None or trajectories is not None:
            raise ValueError("method= and trajectories= choose how noise is simulated: pass noise=model")
        return "auto", None
    if gpu.wants_gpu(device, *arrays):
        raise ValueError("noisy simulation runs on the CPU (density matrix or trajectories); "
                         "pass CPU arrays or device='cpu'")
    if backend is not None:
        raise ValueError("backend= picks a statevector engine; noisy calls run on the noisy engine, "
                         "so leave backend at None with noise=")
    return noisy.check_method(method, trajectories)


def statevector(circuit: Circuit, inputs: Any = None, weights: Any = None, *, dtype: Any = None,
                backend: Any = None, device: Any = None):
    """Final states, [B, 2**n] complex64/complex128; wire 0 is the most significant index bit.

    device: None (follow the arrays: CUDA tensors run on the GPU), "cpu" or "cuda[:N]" (any case;
    another name is a ValueError); the same for every function below. Results carry no autograd
    history (a tensor that requires grad gets a warning): train through hdqnn.QuantumLayer.
    """
    warn_if_requires_grad("statevector", inputs, weights)
    if gpu.wants_gpu(device, inputs, weights):
        return gpu.statevector(circuit, inputs, weights, dtype=dtype, backend=backend, device=device)
    p = prepare(circuit, inputs, weights, dtype)
    engine = get_backend(backend)
    with reserved("statevector", engine_need(engine, "statevector", p)):
        out = engine.statevector(p.program, p.inputs, p.weights, p.dtype)
    return wrap(out, p.as_torch)


def probabilities(circuit: Circuit, inputs: Any = None, weights: Any = None, *, dtype: Any = None,
                  backend: Any = None, device: Any = None, noise: Any = None, method: str | None = None,
                  trajectories: int | None = None, seed: Any = None, readout: bool = True):
    """Computational-basis probabilities, [B, 2**n] float32/float64 (index order as ``statevector``).

    noise: an ``hdqnn.noise.NoiseModel`` simulates the noisy device: ``method`` "density_matrix"
    (exact), "trajectories" (``trajectories`` per sample, reproducible from ``seed``) or "auto"
    (the default; see ``hdqnn.sim.noisy``); readout errors apply unless ``readout=False``.
    """
    warn_if_requires_grad("probabilities", inputs, weights)
    method, trajectories = check_noise_args(noise, method, trajectories, device, backend, inputs, weights)
    if noise is not None:
        p = prepare(circuit, inputs, weights, dtype)
        return wrap(noisy.probabilities(p, noise, method, trajectories, seed, readout), p.as_torch)
    if gpu.wants_gpu(device, inputs, weights):
        return gpu.probabilities(circuit, inputs, weights, dtype=dtype, backend=backend, device=device)
    p = prepare(circuit, inputs, weights, dtype)
    engine = get_backend(backend)
    with reserved("probabilities", engine_need(engine, "probabilities", p)):
        out = engine.probabilities(p.program, p.inputs, p.weights, p.dtype)
    return wrap(out, p.as_torch)


def expval(circuit: Circuit, inputs: Any = None, weights: Any = None, observables: Any = None, *,
           dtype: Any = None, backend: Any = None, device: Any = None, noise: Any = None,
           method: str | None = None, trajectories: int | None = None, seed: Any = None, readout: bool = True,
           return_stderr: bool = False, return_state: bool = False):
    """Pauli expectations, [B, K] float32/float64.

    observables: None (Pauli-Z on every wire, K = n), a dense string ``"XZIY"`` (wire 0 first),
    a sparse ``("ZZ", (0, 3))`` or ``{"ZZ": (0, 3)}``, or a list of these.
    noise, method, trajectories, seed, readout: as in ``probabilities``; each Pauli string is
    measured as a device measures it (readout error included unless ``readout=False``).
    return_stderr: also return the standard errors [B, K] of the estimates (trajectories; zeros
    for the exact density matrix and without noise).
    return_state: also return the final states [B, 2**n] (noiseless, CPU), which
    ``vjp(..., final_state=...)`` of the same inputs and weights starts from instead of running
    the circuit again: a training step's forward and backward cost one forward pass, not two.
    """
    warn_if_requires_grad("expval", inputs, weights)
    if return_state:
        return _expval_with_state(circuit, inputs, weights, observables, dtype, backend, device, noise,
                                  return_stderr)
    method, trajectories = check_noise_args(noise, method, trajectories, device, backend, inputs, weights)
    if noise is not None:
        p = prepare(circuit, inputs, weights, dtype)
        paulis = compile_observables(observables, p.program.n_qubits)
        mean, stderr = noisy.expval(p, paulis, noise, method, trajectories, seed, readout)
        return (wrap(mean, p.as_torch), wrap(stderr, p.as_torch)) if return_stderr else wrap(mean, p.as_torch)
    if return_stderr:
        out = expval(circuit, inputs, weights, observables, dtype=dtype, backend=backend, device=device)
        return out, out * 0
    if gpu.wants_gpu(device, inputs, weights):
        return gpu.expval(circuit, inputs, weights, observables, dtype=dtype, backend=backend, device=device)
    p = prepare(circuit, inputs, weights, dtype)
    paulis = compile_observables(observables, p.program.n_qubits)
    engine = get_backend(backend)
    with reserved("expval", engine_need(engine, "expval", p, paulis.shape[0])):
        out = engine.expval(p.program, p.inputs, p.weights, paulis, p.dtype)
    return wrap(out, p.as_torch)


#: Final states a caller keeps from a forward for the VJP that follows (QuantumLayer, the PennyLane
#: device, qiskit-ml's gradient), at most this many bytes: above it the VJP runs its own forward.
KEPT_STATE_BYTES = 1 << 28


def keeps_states(rows: int, n_qubits: int, amplitude_bytes: int, backend: Any = None) -> bool:
    """Whether ``rows`` final states of ``n_qubits`` (``amplitude_bytes`` per amplitude) are worth
    keeping for a VJP: ``backend``'s engine starts from them, and they fit in KEPT_STATE_BYTES."""
    return rows * (1 << n_qubits) * amplitude_bytes <= KEPT_STATE_BYTES and reuses_states(backend)


def reuses_states(backend: Any = None) -> bool:
    """Whether ``backend``'s engine (None: the default one) starts ``vjp(final_state=...)`` from the
    states, skipping its forward pass; other engines compute the same gradients the long way."""
    return hasattr(get_backend(backend), "expval_state")


def _expval_with_state(circuit: Circuit, inputs: Any, weights: Any, observables: Any, dtype: Any,
                       backend: Any, device: Any, noise: Any, return_stderr: bool):
    """``expval(..., return_state=True)``: (expectations [B, K], final states [B, 2**n])."""
    if noise is not None or return_stderr:
        raise ValueError("return_state=True gives the final pure states of a noiseless simulation: "
                         "leave noise= and return_stderr= out")
    if gpu.wants_gpu(device, inputs, weights):
        raise ValueError("return_state=True runs on the CPU engines: pass CPU arrays or device='cpu'")
    p = prepare(circuit, inputs, weights, dtype)
    paulis = compile_observables(observables, p.program.n_qubits)
    engine = get_backend(backend)
    need = {**engine_need(engine, "expval", p, paulis.shape[0]), "states": result_bytes("statevector", p)}
    with reserved("expval with its final states", need):
        one_pass = getattr(engine, "expval_state", None)
        if one_pass is not None:
            out, state = one_pass(p.program, p.inputs, p.weights, paulis, p.dtype)
        else:  # an engine without the one-pass call: the same arrays from two
            out = engine.expval(p.program, p.inputs, p.weights, paulis, p.dtype)
            state = engine.statevector(p.program, p.inputs, p.weights, p.dtype)
    return wrap(out, p.as_torch), wrap(state, p.as_torch)


def vjp(circuit: Circuit, inputs: Any, weights: Any, grad_output: Any, observables: Any = None, *,
        dtype: Any = None, backend: Any = None, device: Any = None, noise: Any = None,
        method: str | None = None, readout: bool = True, final_state: Any = None):
    """Exact vector-Jacobian product of ``expval`` by the engine's adjoint sweep.

    grad_output: [B, K]. Returns ``(grad_inputs [B, n_inputs], grad_weights)``, where
    grad_weights has the shape of ``weights`` (shared weights: summed over the batch).
    noise: the exact VJP of the noisy expectations (readout included unless ``readout=False``),
    by the density matrix's adjoint (Heisenberg) sweep; ``method`` "density_matrix" or "auto".
    final_state: the states ``expval(..., return_state=True)`` returned for these very inputs and
    weights ([B, 2**n], the call's complex dtype; noiseless, CPU): the sweep starts from them and
    skips its own forward pass (engines without that path run it anyway). States of other
    inputs give wrong gradients: they cannot be told apart from the right ones.
    """
    if final_state is not None and (noise is not None or gpu.wants_gpu(device, inputs, weights, grad_output)):
        raise ValueError("final_state= is for noiseless VJPs on the CPU engines: leave it out with noise= or "
                         "CUDA arrays")
    method, _ = check_noise_args(noise, method, None, device, backend, inputs, weights, grad_output)
    if noise is not None:
        p = prepare(circuit, inputs, weights, dtype)
        paulis = compile_observables(observables, p.program.n_qubits)
        g = check_real_2d(grad_output, "grad_output", (p.batch, paulis.shape[0]), p.real_dtype)
        gi, gw = noisy.vjp(p, paulis, g, noise, method, readout)
        return wrap(gi, p.as_torch), wrap(gw, p.as_torch)
    if gpu.wants_gpu(device, inputs, weights, grad_output):
        return gpu.vjp(circuit, inputs, weights, grad_output, observables, dtype=dtype, backend=backend,
                       device=device)
    p = prepare(circuit, inputs, weights, dtype)
    paulis = compile_observables(observables, p.program.n_qubits)
    g = check_real_2d(grad_output, "grad_output", (p.batch, paulis.shape[0]), p.real_dtype)
    engine = get_backend(backend)
    state = None if final_state is None else check_state(final_state, "final_state",
                                                          (p.batch, 1 << p.program.n_qubits), p.dtype)
    with reserved("vjp", engine_need(engine, "vjp", p, paulis.shape[0])):
        if state is not None and reuses_states(engine):
            gi, gw = engine.vjp(p.program, p.inputs, p.weights, paulis, g, p.dtype, final_state=state)
        else:
            gi, gw = engine.vjp(p.program, p.inputs, p.weights, paulis, g, p.dtype)
    return wrap(gi, p.as_torch), wrap(gw, p.as_torch)
