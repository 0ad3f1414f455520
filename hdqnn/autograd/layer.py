"""QuantumLayer: a parameterised circuit as a torch ``nn.Module`` with three gradient modes.

The forward always runs the real circuit (simulator, exact or with shots, or a hardware
``runner``). The backward is, by ``grad``:

- ``"adjoint"``: the engine's exact vector-Jacobian product (simulator, exact forward only); a
  forward that needs a backward keeps its final states (up to ``hdqnn.sim.api.KEPT_STATE_BYTES``), from which
  the adjoint sweep starts without running the circuit again;
- ``"parameter-shift"``: the hardware-compatible two-term rule, every shifted circuit of the
  minibatch in one runner call (2 x angle slots x B executions);
- ``"qtdnn"`` (the paper's method): the VJP of the qtDNN surrogate at the same inputs and weights.
  The surrogate is re-fitted, warm-started, on every forward that runs in ``train()`` mode with
  gradients enabled and something to differentiate (inputs or weights requiring grad); acting,
  evaluation and target computation never fit. Its input gradients are good only while the
  minibatch's inputs are concentrated, and its *weight* gradients are not usable: the weights are
  constant within a minibatch, so the fit cannot see their effect (measured cosine against the
  exact gradient ~0, bench/RESULTS_layer.md). With qtdnn, freeze the circuit weights or bind them
  as constants (the paper's PQC), and watch ``gradient_fidelity``. Its Sobolev option
  (``QtDNNConfig.sobolev_samples``) adds 2 x samples x directions executions per fit, counted as
  ``circuit_executions_fit``; its trust figures (``last_holdout_error``, ``last_tangent_cosine``)
  need no simulator.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ..circuits import Circuit, compile_observables
from ..sim import noisy
from ..sim import expval as engine_expval
from ..sim.api import keeps_states
from ..sim import vjp as engine_vjp
from .function import QuantumFunction
from .gradients import SlotMap, shift_vjp, slot_map
from .qtdnn import QtDNN, QtDNNConfig, Tangents
from .runner import CircuitRunner, SimulatorRunner, check_diagonal
from .telemetry import LayerStats, compare_gradients

GRAD_MODES = ("qtdnn", "adjoint", "parameter-shift")
#: Seed of the fixed random direction ``gradient_fidelity`` probes when no grad_output is given.
FIDELITY_PROBE_SEED = 20250312
_STATE_VERSION = 1
_N_SUBSEEDS = 3  # weight init, surrogate, shot sampling
#: Most bytes of final states an adjoint layer keeps from its forward for the backward (which then
#: skips its own forward pass): 256 MiB is 256 samples of 16 qubits in complex128; larger batches
#: run the forward again rather than hold that much memory between forward and backward.

WeightsInit = Any  # None | tensor/array [n_weights] | callable(tensor) -> None (like nn.init.uniform_)


class QuantumLayer(nn.Module):
    """A PQC layer: ``forward(x [B, circuit.n_inputs]) -> [B, K]`` expectations.

    Args:
        circuit: the :class:`hdqnn.Circuit`; its ``Input(i)`` angles read column i of ``x`` and its
            ``Weight(j)`` angles read ``self.weight[j]``.
        grad: "qtdnn" (default, the paper), "adjoint" or "parameter-shift".
        shots: None for exact expectations, or the shots per sample of unbiased shot estimates
            (the forward's outputs and the parameter-shift gradient's circuits). Needs diagonal
            (I/Z) observables on the simulator; not allowed with ``grad="adjoint"``.
        observables: Pauli strings read out (default: Z on every wire, K = n_qubits); any spec
            ``hdqnn.expval`` accepts.
        weights_init: None (uniform in [-pi, pi)), a tensor/array [n_weights], or a callable that
            fills a tensor in place (``torch.nn.init.normal_``).
        qtdnn: for ``grad="qtdnn"``: None (the study's defaults), "paper" (the paper's preset for
            this circuit's qubit count), a :class:`QtDNN`, or a :class:`QtDNNConfig` / dict of its
            fields. Its features are ``x`` followed by the weights.
        runner: a :class:`CircuitRunner` that executes the circuits instead of the simulator
            (the hardware seam); not allowed with ``grad="adjoint"``.
        backend: simulator engine (name or object) for the forward, adjoint and fidelity checks.
        seed: seeds weight init, the surrogate and shot sampling (None: drawn from torch's RNG).
        noise: an ``hdqnn.noise.NoiseModel``: the simulator runs the circuit as that noisy device
            (density matrix; readout error included), in every grad mode: ``adjoint`` is the exact
            VJP of the noisy expectations, and ``gradient_fidelity`` compares against it. Not with
            a ``runner`` (a device brings its own noise) or a ``backend``.

    Attributes: ``weight`` (nn.Parameter [n_weights], or None when the circuit has no weights),
    ``qtdnn`` (the surrogate or None), ``stats`` (cost counters), ``grad_mode``, ``shots``.
    Output dtype follows ``x`` (float32 runs the engine in complex64, float64 in complex128).
    """

    def __init__(self, circuit: Circuit, grad: str = "qtdnn", shots: int | None = None, observables: Any = None,
                 weights_init: WeightsInit = None, qtdnn: QtDNN | QtDNNConfig | dict | str | None = None,
                 runner: CircuitRunner | None = None, backend: Any = None, seed: int | None = None,
                 noise: Any = None) -> None:
        super().__init__()
        if not isinstance(circuit, Circuit):
            raise TypeError(f"circuit must be an hdqnn.Circuit, got {type(circuit).__name__}")
        if grad not in GRAD_MODES:
            raise ValueError(f"unknown grad mode {grad!r}; choose one of {', '.join(GRAD_MODES)}")
        _check_shots(shots)
        if runner is not None and not isinstance(runner, CircuitRunner):
            raise TypeError(f"runner must have run(circuit, inputs, weights, shots, observables), "
                            f"got {type(runner).__name__}")
        if grad == "adjoint" and (shots is not None or runner is not None):
            raise ValueError("grad='adjoint' needs the exact simulator: use 'parameter-shift' or 'qtdnn' "
                             "with shots or a hardware runner")
        if qtdnn is not None and grad != "qtdnn":
            raise ValueError(f"qtdnn= is only used with grad='qtdnn', not grad={grad!r}")
        if noise is not None:
            if runner is not None or backend is not None:
                raise ValueError("noise= simulates a noisy device on hdqnn's noisy engine: it cannot be combined "
                                 "with a runner (which brings its own device) or a statevector backend")
            noisy.check_model(noise, circuit.n_qubits)
        circuit.compile()
        self.circuit = circuit
        self.noise = noise
        self.grad_mode = grad
        self.shots = shots
        self.backend = backend
        self.observables = compile_observables(observables, circuit.n_qubits)
        if shots is not None and runner is None:
            check_diagonal(self.observables)
        seeds = _subseeds(seed)
        self.weight = _make_weight(circuit.n_weights, weights_init, seeds[0])
        self.runner: CircuitRunner = runner if runner is not None else SimulatorRunner(backend, seeds[2], noise)
        self._slots: SlotMap | None = None
        if grad == "parameter-shift":
            self._slots = slot_map(circuit)
            self._slots.check_shiftable(np.arange(self._slots.n_slots))
        self.qtdnn: QtDNN | None = self._make_qtdnn(qtdnn, seeds[1]) if grad == "qtdnn" else None
        self._stats = LayerStats()
        self._warned_unfitted = False

    # ------------------------------------------------------------------ construction helpers
    @property
    def n_inputs(self) -> int:
        return self.circuit.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.observables.shape[0]

    @property
    def n_features(self) -> int:
        """Inputs of the qtDNN surrogate: the layer's inputs, then the circuit weights."""
        return self.circuit.n_inputs + self.circuit.n_weights

    def _make_qtdnn(self, qtdnn: Any, seed: int) -> QtDNN:
        if isinstance(qtdnn, QtDNN):
            if (qtdnn.n_inputs, qtdnn.n_outputs) != (self.n_features, self.n_outputs):
                raise ValueError(
                    f"the qtDNN maps {qtdnn.n_inputs} -> {qtdnn.n_outputs} but this layer needs "
                    f"{self.n_features} features (n_inputs {self.n_inputs} + n_weights "
                    f"{self.circuit.n_weights}) -> {self.n_outputs} outputs"
                )
            return qtdnn
        if isinstance(qtdnn, str):
            if qtdnn != "paper":
                raise ValueError(f"qtdnn={qtdnn!r}: the only named preset is 'paper'")
            qtdnn = QtDNNConfig.paper(self.circuit.n_qubits)
        return QtDNN.from_config(self.n_features, self.n_outputs, qtdnn, seed=seed)

    def extra_repr(self) -> str:
        c = self.circuit
        return (f"n_qubits={c.n_qubits}, n_inputs={c.n_inputs}, n_weights={c.n_weights}, "
                f"outputs={self.n_outputs}, grad={self.grad_mode!r}, shots={self.shots}"
                + ("" if self.noise is None else f", noise={self.noise!r}")
                + ("" if self.qtdnn is None else f", qtdnn={self.qtdnn!r}"))

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, n_inputs] float32/float64 -> [B, K] expectations (or shot estimates), dtype of x."""
        x = self._check_input(x)
        y = QuantumFunction.apply(x, self.weight, self, torch.is_grad_enabled())
        if self._should_fit(x):
            self.qtdnn.fit(self._features(x, self.weight), y.detach(), self._measure_tangents(x))
        return y

    def _measure_tangents(self, x: torch.Tensor) -> Tangents | None:
        """The qtDNN's Sobolev data (``sobolev_samples`` > 0), or None: at T = samples x directions
        rows of ``x``, the circuit's central differences D_v = (f(x + h v) - f(x - h v)) / (2 h) along
        random unit directions v of the input space, from one runner call of 2 T rows (in float64,
        so float32 rounding does not swamp a small h), counted as fit executions.

        A central difference along v costs 2 runs whatever the input count; a parameter-shift
        directional derivative would cost 2 per input coordinate (20 at 10 qubits), and no exact
        two-term rule exists along a direction mixing several encoding angles.
        """
        q = self.qtdnn
        if q.config.sobolev_samples == 0:
            return None
        rows, directions = q.draw_probes(x.shape[0], self.n_inputs)
        step = q.config.sobolev_step
        x0 = x.detach().to(device="cpu", dtype=torch.float64)[rows]
        v = directions[:, : self.n_inputs].to(torch.float64)
        start = time.perf_counter()
        y = self._execute(*self._arrays(torch.cat([x0 + step * v, x0 - step * v]), self.weight))
        t = rows.shape[0]
        self._stats.record_fit(2 * t, time.perf_counter() - start)
        derivatives = torch.as_tensor((y[:t] - y[t:]).astype(np.float64) / (2.0 * step))
        return self._features(x0, self.weight), directions, derivatives

    def _should_fit(self, x: torch.Tensor) -> bool:
        wants_grad = x.requires_grad or (self.weight is not None and self.weight.requires_grad)
        return self.qtdnn is not None and self.training and torch.is_grad_enabled() and wants_grad

    def _check_input(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"QuantumLayer input must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"QuantumLayer input must be float32 or float64, got {x.dtype} "
                            "(cast with .float() or .double())")
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"QuantumLayer input must be [B, {self.n_inputs}] (the circuit's n_inputs), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("QuantumLayer input has an empty batch (B = 0)")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("QuantumLayer input contains NaN or infinite values")
        if self.weight is not None and not bool(torch.isfinite(self.weight).all()):
            raise ValueError("QuantumLayer weight contains NaN or infinite values (diverged training?)")
        return x

    def _arrays(self, x: torch.Tensor, weight: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """Engine arrays in the precision of x: inputs [B, D], weights [P]."""
        dtype = x.dtype
        x_np = x.detach().to("cpu").numpy()
        if weight is None:
            return x_np, np.zeros(0, dtype=x_np.dtype)
        return x_np, weight.detach().to(device="cpu", dtype=dtype).numpy()

    def _features(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Detached surrogate features [B, n_inputs + n_weights] in the surrogate's dtype."""
        dtype = self.qtdnn.dtype
        x = x.detach().to(device="cpu", dtype=dtype)
        if weight is None:
            return x
        w = weight.detach().to(device="cpu", dtype=dtype)
        return torch.cat([x, w.expand(x.shape[0], -1)], dim=1)

    # ------------------------------------------------------------------ CircuitExecutor
    def run_forward(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        return self._forward(x, weight, keep_states=False)[0]

    def run_forward_for_backward(self, x: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """The outputs and, where the adjoint VJP can start from them, the final states (so a
        training step runs the circuit once, not twice); else None beside the outputs."""
        return self._forward(x, weight, keep_states=self._keeps_states(x))

    def _forward(self, x: torch.Tensor, weight: torch.Tensor | None, keep_states: bool) -> tuple[torch.Tensor, Any]:
        """The timed circuit run: outputs (dtype and device of ``x``) and the final states or None."""
        start = time.perf_counter()
        x_np, w_np = self._arrays(x, weight)
        if keep_states:
            y, states = engine_expval(self.circuit, x_np, w_np, self.observables, backend=self.backend,
                                      return_state=True)
        else:
            y, states = self._execute(x_np, w_np), None
        self._stats.record_forward(x.shape[0], time.perf_counter() - start)
        return torch.as_tensor(y).to(device=x.device, dtype=x.dtype), states

    def _keeps_states(self, x: torch.Tensor) -> bool:
        """Whether the forward keeps its final states for the backward: the exact adjoint on the
        simulator (noiseless) whose engine starts its sweep from them, when the states take at most
        hdqnn.sim.api.KEPT_STATE_BYTES until the backward."""
        if self.grad_mode != "adjoint" or self.noise is not None or not isinstance(self.runner, SimulatorRunner):
            return False
        return keeps_states(x.shape[0], self.circuit.n_qubits, 2 * x.element_size(), self.backend)

    def _execute(self, x_np: np.ndarray, w_np: np.ndarray) -> np.ndarray:
        """The runner's outputs [B, K] for inputs [B, D] and weights [P], shape-checked."""
        y = np.asarray(self.runner.run(self.circuit, x_np, w_np, self.shots, self.observables))
        if y.shape != (x_np.shape[0], self.n_outputs):
            raise ValueError(f"runner returned shape {y.shape}, expected {(x_np.shape[0], self.n_outputs)}")
        return y

    def run_vjp(self, x: torch.Tensor, weight: torch.Tensor | None, grad_output: torch.Tensor,
                need_inputs: bool, need_weights: bool, kept: Any = None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        start = time.perf_counter()
        gi, gw, executions = self._mode_vjp(x, weight, grad_output, need_inputs, need_weights, kept)
        self._stats.record_grad(executions, time.perf_counter() - start)
        grad_x = torch.as_tensor(gi).to(device=x.device, dtype=x.dtype) if need_inputs else None
        grad_w = None
        if need_weights and weight is not None:
            grad_w = torch.as_tensor(gw).to(device=weight.device, dtype=weight.dtype)
        return grad_x, grad_w

    def _mode_vjp(self, x: torch.Tensor, weight: torch.Tensor | None, grad_output: torch.Tensor,
                  need_inputs: bool, need_weights: bool, kept: Any = None) -> tuple[Any, Any, int]:
        """(grad_inputs [B, D], grad_weights [P], circuit executions) by this layer's mode;
        ``kept``: the forward's final states (adjoint), or None."""
        if self.grad_mode == "qtdnn":
            return self._surrogate_vjp(x, weight, grad_output)
        x_np, w_np = self._arrays(x, weight)
        g_np = grad_output.detach().to(device="cpu", dtype=x.dtype).contiguous().numpy()
        if self.grad_mode == "adjoint":
            gi, gw = engine_vjp(self.circuit, x_np, w_np, g_np, self.observables, backend=self.backend,
                                noise=self.noise, final_state=kept)
            return gi, gw, 0 if kept is not None else x.shape[0]
        return shift_vjp(self._slots, self.runner, x_np, w_np, g_np, self.observables, self.shots,
                         need_inputs, need_weights and weight is not None)

    def _surrogate_vjp(self, x: torch.Tensor, weight: torch.Tensor | None,
                       grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        if self.qtdnn.fits == 0 and not self._warned_unfitted:
            self._warned_unfitted = True
            warnings.warn("qtDNN backward with a surrogate that was never fitted: the layer fits only in "
                          "train() mode with gradients enabled, so these gradients are the untrained MLP's",
                          RuntimeWarning, stacklevel=2)
        g = self.qtdnn.vjp(self._features(x, weight), grad_output.to("cpu"))
        d = self.n_inputs
        return g[:, :d], g[:, d:].sum(dim=0), 0

    # ------------------------------------------------------------------ telemetry
    @property
    def stats(self) -> dict:
        """Cost counters: circuit executions (forward, grad, the qtDNN fit's Sobolev probes, total;
        last call and running totals), calls, seconds, and the qtDNN's fit figures (``fits``,
        ``last_fit_loss``, ``last_fit_seconds``, ``fit_seconds_total``, ``last_fit_steps``; the
        trust figures ``last_holdout_error`` (with ``holdout``) and ``last_tangent_cosine`` /
        ``last_tangent_rel_error`` (with ``sobolev_samples``); None/0 without a surrogate)."""
        s = self._stats.state()
        s["circuit_executions_total"] = (s["circuit_executions_forward"] + s["circuit_executions_grad"]
                                         + s["circuit_executions_fit"])
        q = self.qtdnn
        s["fits"] = 0 if q is None else q.fits
        s["last_fit_loss"] = None if q is None else q.last_fit_loss
        s["last_fit_seconds"] = None if q is None else q.last_fit_seconds
        s["fit_seconds_total"] = 0.0 if q is None else q.fit_seconds_total
        s["last_fit_steps"] = 0 if q is None else q.last_fit_steps
        for name in ("last_holdout_error", "last_tangent_cosine", "last_tangent_rel_error"):
            s[name] = None if q is None else getattr(q, name)
        return s

    def reset_stats(self) -> None:
        """Zero the circuit/time counters (the surrogate's fit counters are part of its state)."""
        self._stats = LayerStats()

    def gradient_fidelity(self, x: torch.Tensor, grad_output: torch.Tensor | None = None) -> dict:
        """How close this layer's backward is to the exact adjoint VJP on the minibatch ``x``.

        Only what receives a gradient in training is compared: the inputs (what an upstream
        network receives; ``x`` is a probe, so its own ``requires_grad`` is not consulted) and the
        circuit weights only while ``self.weight.requires_grad`` (frozen weights get no gradient,
        so their surrogate gradient, however poor, changes nothing).

        grad_output: [B, K]; None probes a fixed random Gaussian direction. Cost: one adjoint VJP
        on the simulator (float64) plus this mode's VJP (a surrogate VJP for qtdnn, no circuit;
        2 x slots x B executions for parameter-shift, which with shots also draws from the shot
        RNG). Does not fit and does not change the training counters. Returns ``cosine`` and
        ``rel_error`` over the compared gradients, the same for the inputs (``cosine_inputs``,
        ``rel_error_inputs``) and weights (``cosine_weights``, ``rel_error_weights``; None without
        weights or when they are frozen), and the surrogate's ``fit_loss``.
        """
        x = self._check_input(x).detach()
        g = self._probe_direction(x.shape[0]) if grad_output is None else grad_output.detach()
        if tuple(g.shape) != (x.shape[0], self.n_outputs):
            raise ValueError(f"grad_output must be [{x.shape[0]}, {self.n_outputs}], got {tuple(g.shape)}")
        trains_weights = self.weight is not None and self.weight.requires_grad
        x64 = x.to(device="cpu", dtype=torch.float64)
        w64 = None if self.weight is None else self.weight.detach().to(device="cpu", dtype=torch.float64)
        g64 = g.to(device="cpu", dtype=torch.float64)
        x_np, w_np = self._arrays(x64, w64)
        ei, ew = engine_vjp(self.circuit, x_np, w_np, g64.numpy(), self.observables, backend=self.backend,
                            noise=self.noise)
        mi, mw, _ = self._mode_vjp(x64, w64, g64, True, trains_weights)
        mi, mw = np.asarray(mi, dtype=np.float64), np.asarray(mw, dtype=np.float64)
        mode_grads, exact_grads = ([mi, mw], [ei, ew]) if trains_weights else ([mi], [ei])
        result = compare_gradients(mode_grads, exact_grads)
        inputs = compare_gradients([mi], [ei])
        weights = compare_gradients([mw], [ew]) if trains_weights else {"cosine": None, "rel_error": None}
        result.update(cosine_inputs=inputs["cosine"], rel_error_inputs=inputs["rel_error"],
                      cosine_weights=weights["cosine"], rel_error_weights=weights["rel_error"],
                      fit_loss=None if self.qtdnn is None else self.qtdnn.last_fit_loss)
        self._stats.fidelity_checks += 1
        self._stats.last_fidelity_cosine = result["cosine"]
        self._stats.last_fidelity_rel_error = result["rel_error"]
        return result

    def _probe_direction(self, batch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(FIDELITY_PROBE_SEED)
        return torch.randn(batch, self.n_outputs, generator=gen, dtype=torch.float64)

    # ------------------------------------------------------------------ checkpointing
    def get_extra_state(self) -> dict:
        """Non-parameter state for ``state_dict``: counters, shot RNG, the whole surrogate."""
        runner_state = self.runner.get_state() if isinstance(self.runner, SimulatorRunner) else None
        return {
            "version": _STATE_VERSION,
            "grad": self.grad_mode,
            "stats": self._stats.state(),
            "runner_rng": runner_state,
            "qtdnn": None if self.qtdnn is None else self.qtdnn.state_dict(),
            "warned_unfitted": self._warned_unfitted,
        }

    def set_extra_state(self, state: dict) -> None:
        if state.get("grad") != self.grad_mode:
            raise ValueError(f"checkpoint was saved with grad={state.get('grad')!r}, this layer uses "
                             f"grad={self.grad_mode!r}")
        self._stats.load(state["stats"])
        if state["runner_rng"] is not None and isinstance(self.runner, SimulatorRunner):
            self.runner.set_state(state["runner_rng"])
        if self.qtdnn is not None:
            self.qtdnn.load_state_dict(state["qtdnn"])
        self._warned_unfitted = bool(state["warned_unfitted"])


def _check_shots(shots: Any) -> None:
    if shots is None:
        return
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(f"shots must be None (exact) or a positive int, got {shots!r}")


def _subseeds(seed: int | None) -> list[int]:
    """Independent seeds for weight init, the surrogate and shot sampling."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    state = np.random.SeedSequence(int(seed)).generate_state(_N_SUBSEEDS, dtype=np.uint64)
    return [int(s >> np.uint64(1)) for s in state]  # 63-bit: valid for torch and NumPy


def _make_weight(n_weights: int, init: WeightsInit, seed: int) -> nn.Parameter | None:
    if n_weights == 0:
        if init is not None:
            raise ValueError("weights_init was given but the circuit has no Weight angles")
        return None
    dtype = torch.get_default_dtype()
    if init is None:
        gen = torch.Generator().manual_seed(seed)
        values = (torch.rand(n_weights, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
        return nn.Parameter(values.to(dtype))
    if callable(init):
        values = torch.empty(n_weights, dtype=dtype)
        with torch.no_grad():
            init(values)
        return nn.Parameter(values)
    values = torch.as_tensor(np.asarray(init.detach().cpu() if isinstance(init, torch.Tensor) else init))
    if values.shape != (n_weights,):
        raise ValueError(f"weights_init must have shape ({n_weights},) (the circuit's n_weights), "
                         f"got {tuple(values.shape)}")
    if not values.is_floating_point():
        values = values.to(dtype)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("weights_init contains NaN or infinite values")
    return nn.Parameter(values.clone())

