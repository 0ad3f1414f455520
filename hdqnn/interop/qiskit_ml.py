"""qiskit-machine-learning on hdqnn's engine: ``EstimatorGradient`` and ``to_quantum_layer``.

``EstimatorGradient`` (a ``BaseEstimatorGradient``, for ``EstimatorQNN(gradient=...)``) computes
every (circuit, observable, parameter row) of a ``run`` with ONE adjoint VJP call per circuit:
row r's observable is encoded in row r's cotangent (its coefficients on the union of the Pauli
terms), so an EstimatorQNN backward over B samples and K observables (B*K triples) is one engine
call, where the default ``ParamShiftEstimatorGradient`` sends 2*P estimator PUBs per triple.

``to_quantum_layer(qnn)`` is the fast path for ``TorchConnector`` users: a torch module whose
forward equals ``TorchConnector(qnn)``'s (same ``weight`` order) and whose backward is one VJP,
instead of the connector's full Jacobians [B, K, P] and float32 casts.

Needs ``pip install qiskit-machine-learning`` (0.9, Qiskit 2.x).
"""
from __future__ import annotations

from copy import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from qiskit.circuit import QuantumCircuit
from qiskit.providers import Options
from qiskit.quantum_info import SparseObservable
from qiskit.quantum_info.operators.base_operator import BaseOperator
from qiskit_machine_learning.algorithm_job import AlgorithmJob
from qiskit_machine_learning.gradients import BaseEstimatorGradient, DerivativeType, EstimatorGradientResult

from ..autograd import QuantumLayer
from ..sim import expval, vjp
from ..sim.api import keeps_states
from .qiskit import Estimator, PauliUnion, distinct_rows
from .qiskit_circuit import cached_from_qiskit

__all__ = ["EstimatorGradient", "EstimatorQNNLayer", "to_quantum_layer"]


class EstimatorGradient(BaseEstimatorGradient):
    """Exact gradients of expectation values by hdqnn's adjoint VJP, one engine call per circuit.

    Args:
        estimator: kept for qiskit-machine-learning's interface (the gradient never calls it);
            default an exact :class:`hdqnn.interop.qiskit.Estimator`.
        options: default run options (recorded in the result, as qiskit-ml's gradients do).
        dtype: the engine's complex dtype (complex128 by default).
        backend: an hdqnn backend name (None: the default engine).
    """

    def __init__(self, estimator: Any = None, options: Options | None = None, *, dtype: Any = np.complex128,
                 backend: Any = None) -> None:
        super().__init__(estimator if estimator is not None else Estimator(), options)
        self._dtype = dtype
        self._backend = backend

    def run(self, circuits, observables, parameter_values, parameters=None, **options) -> AlgorithmJob:
        """``BaseEstimatorGradient.run`` (same arguments, checks and messages, same job), with its
        per-row work done once per circuit: an EstimatorQNN backward passes B x K rows of one
        circuit, and the base class reads ``circuit.parameters`` (a new view, 44 us at 210
        parameters) and checks it against a new set of them for every row."""
        if isinstance(circuits, QuantumCircuit):
            circuits = (circuits,)
        if isinstance(observables, BaseOperator):
            observables = (observables,)
        views: dict[int, Any] = {}

        def every(circuit: Any) -> Any:  # one view per circuit object, shared by its rows
            view = views.get(id(circuit))
            if view is None:
                view = views[id(circuit)] = circuit.parameters
            return view

        if parameters is None:
            parameters = [every(c) for c in circuits]
        else:
            parameters = [ps if ps is not None else every(circuits[i]) for i, ps in enumerate(parameters)]
        _validate_rows(circuits, observables, parameter_values, parameters)
        opts = copy(self._default_options)
        opts.update_options(**options)
        job = AlgorithmJob(self._run, circuits, observables, parameter_values, parameters, **opts.__dict__)
        job.submit()
        return job

    def _run(self, circuits, observables, parameter_values, parameters, **options) -> EstimatorGradientResult:
        gradients: list[np.ndarray | None] = [None] * len(circuits)
        groups: dict[int, list[int]] = {}
        for i, circuit in enumerate(circuits):
            groups.setdefault(id(circuit), []).append(i)
        for rows in groups.values():
            circuit = circuits[rows[0]]
            grads = self._circuit_gradient(circuit, [observables[i] for i in rows],
                                           np.asarray([parameter_values[i] for i in rows], dtype=np.float64))
            columns = _ColumnsOf(circuit)
            for r, i in enumerate(rows):
                gradients[i] = grads[r, columns(parameters[i])]
        metadata = [{"parameters": list(ps), "derivative_type": DerivativeType.REAL} for ps in parameters]
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=Options(**options))

    def _circuit_gradient(self, circuit: Any, observables: list, values: np.ndarray) -> np.ndarray:
        """d<O_r>/d(parameters) [N, P] for rows ``values`` [N, P], row r with observable r: one VJP.
        A Jacobian repeats each parameter row once per observable (qiskit-ml's backward: B x K rows
        for B samples): each distinct row's forward runs once, and the VJP starts from its states."""
        hd, slots = cached_from_qiskit(circuit)
        union = PauliUnion(SparseObservable(o) for o in observables)
        if not union.terms:  # identity observables: constant values
            return np.zeros_like(values)
        inputs = slots.inputs(values)
        distinct, row_of = distinct_rows(inputs)
        state = None
        # every row's state (up to hdqnn.sim.api.KEPT_STATE_BYTES; above it each row's VJP runs its own forward)
        if len(distinct) < len(inputs) and keeps_states(len(inputs), hd.n_qubits, np.dtype(self._dtype).itemsize,
                                                          self._backend):
            _, states = expval(hd, distinct, None, observables=union.terms, dtype=self._dtype, backend=self._backend,
                               return_state=True)
            state = np.asarray(states)[row_of]
        gx, _ = vjp(hd, inputs, None, union.coeffs, observables=union.terms, dtype=self._dtype,
                    backend=self._backend, final_state=state)
        return slots.parameter_gradient(values, gx)


class _ColumnsOf:
    """``circuit.parameters``' positions of a sequence of its parameters, looked up once per
    sequence object (``run`` gives the rows of one circuit one shared view; hashing 210 Parameters
    again for each of B x K rows took 110 ms of a 243 ms gradient at B = 64, K = 10)."""

    def __init__(self, circuit: Any) -> None:
        self._column = {p: j for j, p in enumerate(circuit.parameters)}
        self._known: dict[int, tuple[Any, np.ndarray]] = {}

    def __call__(self, params: Any) -> np.ndarray:
        hit = self._known.get(id(params))
        if hit is None or hit[0] is not params:
            hit = self._known[id(params)] = (params, np.asarray([self._column[p] for p in params], dtype=np.int64))
        return hit[1]


def _validate_rows(circuits, observables, parameter_values, parameters) -> None:
    """``BaseEstimatorGradient._validate_arguments``' checks and messages, each circuit's and each
    parameter sequence's only once (rows share them)."""
    if len(circuits) != len(parameter_values):
        raise ValueError(f"The number of circuits ({len(circuits)}) does not match "
                         f"the number of parameter value sets ({len(parameter_values)}).")
    for i, (circuit, value) in enumerate(zip(circuits, parameter_values)):
        if not circuit.num_parameters:
            raise ValueError(f"The {i}-th circuit is not parameterised.")
        if len(value) != circuit.num_parameters:
            raise ValueError(f"The number of values ({len(value)}) does not match "
                             f"the number of parameters ({circuit.num_parameters}) for the {i}-th circuit.")
    if len(circuits) != len(observables):
        raise ValueError(f"The number of circuits ({len(circuits)}) does not match "
                         f"the number of observables ({len(observables)}).")
    for i, (circuit, observable) in enumerate(zip(circuits, observables)):
        if circuit.num_qubits != observable.num_qubits:
            raise ValueError(f"The number of qubits of the {i}-th circuit ({circuit.num_qubits}) does "
                             f"not match the number of qubits of the {i}-th observable ({observable.num_qubits}).")
    if len(circuits) != len(parameters):
        raise ValueError(f"The number of circuits ({len(circuits)}) does not match "
                         f"the number of the list of specified parameters ({len(parameters)}).")
    own: dict[int, tuple[Any, frozenset]] = {}
    checked: set[tuple[int, int]] = set()  # (circuit, sequence) pairs, both alive for the whole call
    for i, (circuit, params) in enumerate(zip(circuits, parameters)):
        if (id(circuit), id(params)) in checked:
            continue
        if id(circuit) not in own:
            own[id(circuit)] = (circuit, frozenset(circuit.parameters))
        if not set(params).issubset(own[id(circuit)][1]):
            raise ValueError(f"The {i}-th parameters contains parameters not present in the {i}-th circuit.")
        checked.add((id(circuit), id(params)))


def to_quantum_layer(qnn: Any, initial_weights: Any = None) -> "EstimatorQNNLayer":
    """An ``EstimatorQNN`` as a torch module on hdqnn: see :class:`EstimatorQNNLayer`."""
    return EstimatorQNNLayer(qnn, initial_weights)


class EstimatorQNNLayer(nn.Module):
    """``TorchConnector(qnn)`` on hdqnn's engine: ``forward(x [B, n_inputs]) -> [B, n_observables]``.

    ``weight`` [n_weights] is in ``qnn.weight_params`` order (TorchConnector's order; initial
    values uniform in [-1, 1] as TorchConnector's, or ``initial_weights``). Inside, ``quantum`` is
    an :class:`hdqnn.QuantumLayer` (grad="adjoint") on the converted circuit, whose input columns
    are the circuit's parameters, linear or derived (``from_qiskit``), made per row from x and
    ``weight``; the observables' Pauli sums are a fixed linear map of its outputs. Gradients reach
    x and ``weight`` through one adjoint VJP and the expressions' chain rule. Results have x's
    dtype (float64 input: complex128 engine).
    """

    def __init__(self, qnn: Any, initial_weights: Any = None) -> None:
        super().__init__()
        circuit = qnn.circuit
        hd, self._slots = cached_from_qiskit(circuit)
        column = {p: j for j, p in enumerate(circuit.parameters)}
        order = [column[p] for p in (*qnn.input_params, *qnn.weight_params)]
        if sorted(order) != list(range(circuit.num_parameters)):
            raise ValueError("the qnn's input_params and weight_params must be the circuit's parameters, each once")
        self.n_inputs = len(qnn.input_params)
        self.register_buffer("_permutation", torch.as_tensor(np.argsort(order)), persistent=False)
        union = PauliUnion(SparseObservable(o) for o in qnn.observables)
        if not union.terms:
            raise ValueError("every observable is a multiple of the identity: the layer would be constant")
        self.quantum = QuantumLayer(hd, grad="adjoint", observables=union.terms)
        self.register_buffer("_coeffs", torch.as_tensor(union.coeffs.T.copy()), persistent=False)
        self.register_buffer("_constants", torch.as_tensor(union.constants), persistent=False)
        weight = torch.empty(len(qnn.weight_params), dtype=torch.float64)
        if initial_weights is None:
            weight.uniform_(-1, 1)
        else:
            weight.copy_(torch.as_tensor(np.asarray(initial_weights, dtype=np.float64)).reshape(weight.shape))
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"x must be [B, {self.n_inputs}], got shape {tuple(x.shape)}")
        weight = self.weight.to(x.dtype).expand(x.shape[0], -1)
        values = torch.cat([x, weight], dim=1)[:, self._permutation]  # circuit.parameters order
        terms = self.quantum(_Columns.apply(values, self._slots))
        return terms @ self._coeffs.to(terms.dtype) + self._constants.to(terms.dtype)


class _Columns(torch.autograd.Function):
    """Parameter rows [B, P] -> the converted circuit's input columns [B, n_inputs], with the
    expressions' chain rule as backward."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, slots: Any) -> torch.Tensor:
        ctx.slots = slots
        ctx.save_for_backward(values)
        return torch.as_tensor(slots.inputs(_numpy(values))).to(values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (values,) = ctx.saved_tensors
        return torch.as_tensor(ctx.slots.parameter_gradient(_numpy(values), _numpy(grad))).to(values), None


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()
