"""qtDNN: the tangential surrogate whose Jacobian stands in for the circuit's in the backward pass.

A small MLP maps the PQC's input angles (and its trainable weights, when it has any) to the PQC's
outputs. It is re-fitted on the fly, warm-started, on every training forward: ``n_fit_steps`` Adam
steps on tiny batches drawn from the current minibatch and from a FIFO buffer of recent
(input, output) pairs. Only its vector-Jacobian product is ever used; the forward value of a
:class:`~hdqnn.autograd.layer.QuantumLayer` is always the real circuit's.

Options beyond the paper (issue 15; all off by default, measured in bench/qtdnn_options.md):
Sobolev fitting on measured directional derivatives (``sobolev_*``; the layer measures them with
2 extra circuit runs each), a held-out share of each minibatch whose loss is reported and can
choose the number of fit steps (``holdout``, ``adaptive_max_steps``), and per-minibatch input
normalisation (``normalize``).

``QtDNN`` is deliberately *not* an ``nn.Module``: it is an estimator owned by the layer, so its
parameters stay out of ``model.parameters()`` (the user's optimizer, Polyak target updates and
parameter counts see only the model) and ``model.double()`` leaves its float32 fit alone. Its
complete state (network, Adam moments, buffer, RNG) travels in the layer's ``state_dict`` through
``get_extra_state``.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

#: Defaults chosen by the width / fit-steps / spread study (bench/RESULTS_layer.md).
#: At 10 qubits / 10 layers they keep the mean cosine against the adjoint at 0.97 for minibatch
#: inputs spread 0.1 rad and 0.94 at 0.3 rad, for ~10 ms per fit on one core.
DEFAULT_HIDDEN = 128
DEFAULT_FIT_STEPS = 16
DEFAULT_FIT_BATCH = 32
DEFAULT_BUFFER_SIZE = 1024
DEFAULT_BUFFER_MIX = 0.25
DEFAULT_LR = 3e-3
#: Torch threads while fitting: the tiny-batch matmuls gain nothing from more, and on a shared
#: machine a descheduled worker stalls every op (measured: 20x slower at 2 threads under load).
DEFAULT_FIT_THREADS = 1
#: The paper's preset (reviewers' description of arXiv 2503.09119): 3 layers, 2**(n+1) wide, 32 steps, BCE.
#: Not public, so ours: Adam at 1e-3, tiny batches of 32, no input centering.
PAPER_FIT_STEPS = 32
PAPER_FIT_BATCH = 32
PAPER_LR = 1e-3
ACTIVATIONS = {"silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}
#: The same activations as plain functions, for the fit's hand-written forward.
ACTIVATION_FORWARD = {"silu": F.silu, "tanh": torch.tanh, "gelu": F.gelu, "relu": torch.relu}
#: d activation / d pre-activation times an upstream gradient, (grad, pre, post) -> grad: the fit's
#: hand-written backward (aten's own backward kernels, so the numbers match autograd's).
#: (first, second) derivative of an activation at its pre-activation: the Sobolev term's backward.
ACTIVATION_SECOND_DERIVATIVES = {
    "silu": lambda z: _silu_derivatives(torch.sigmoid(z), z),
    "tanh": lambda z: _tanh_derivatives(torch.tanh(z)),
    "gelu": lambda z: _gelu_derivatives(z),
    "relu": lambda z: ((z > 0).to(z.dtype), torch.zeros_like(z)),
}
#: (first, second) derivative of the output head (tanh for mse, 1 - 2 sigmoid for bce) at the logits.
HEAD_DERIVATIVE = {
    "mse": lambda z: _tanh_derivatives(torch.tanh(z)),
    "bce": lambda z: _minus_two_sigmoid_derivatives(torch.sigmoid(z)),
}
ACTIVATION_BACKWARD = {
    "silu": lambda grad, pre, post: torch.ops.aten.silu_backward(grad, pre),
    "tanh": lambda grad, pre, post: torch.ops.aten.tanh_backward(grad, post),
    "gelu": lambda grad, pre, post: torch.ops.aten.gelu_backward(grad, pre),
    "relu": lambda grad, pre, post: torch.ops.aten.threshold_backward(grad, post, 0),
}
LOSSES = ("mse", "bce")
#: Adam's epsilon and betas; torch's defaults.
ADAM_EPS = 1e-8
ADAM_BETAS = (0.9, 0.999)
#: Sobolev data: feature rows [T, F], unit directions [T, F], the circuit's derivatives along them [T, K].
Tangents = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: Adaptive fitting checks the held-out loss after every this many extra steps and stops once a
#: check improves it by less than ADAPTIVE_MIN_GAIN (relative): each check costs one forward of
#: the held-out rows, so checking every step would cost a third of the fit.
ADAPTIVE_CHECK_EVERY = 4
ADAPTIVE_MIN_GAIN = 0.01
#: Features whose minibatch standard deviation is below this (constant circuit weights, a batch of
#: one) keep scale 1 under ``normalize`` and do not count towards the shared spread.
MIN_NORMALIZE_STD = 1e-6
#: 2: the surrogate's own flat Adam replaced torch.optim.Adam (its state has another layout).
#: Version-2 states written before the issue-15 options load as those options' defaults.
_STATE_VERSION = 2


# The derivative helpers below are written in few, mostly in-place ops: they run twice per fit
# step on tiny tensors, where each op's dispatch costs more than its arithmetic.
def _silu_derivatives(s: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """silu' = s + z s (1 - s) and silu'' = s (1 - s) (2 + z (1 - 2 s)), s = sigmoid(z)."""
    slope = torch.ops.aten.sigmoid_backward(torch.ones_like(s), s)  # s (1 - s)
    first = torch.addcmul(s, z, slope)
    second = s.mul(-2.0).add_(1.0).mul_(z).add_(2.0).mul_(slope)
    return first, second


def _tanh_derivatives(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    first = torch.addcmul(torch.ones_like(y), y, y, value=-1.0)
    return first, y.mul(-2.0).mul_(first)


def _gelu_derivatives(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return 0.5 * (1.0 + torch.erf(z * math.sqrt(0.5))) + z * density, density * (2.0 - z * z)


def _minus_two_sigmoid_derivatives(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    first = -2.0 * s * (1.0 - s)
    return first, first * (1.0 - 2.0 * s)


@dataclass
class TangentRecord:
    """A forward-mode pass (:meth:`QtDNN._tangent_forward`): per linear layer its input and input
    tangent, its output's tangent and the (first, second) derivatives of the activation (the head
    for the last layer) at that output; ``output`` = J v."""

    inputs: list[torch.Tensor]
    input_tangents: list[torch.Tensor]
    pre_tangents: list[torch.Tensor]
    derivatives: list[tuple[torch.Tensor, torch.Tensor]]
    output: torch.Tensor | None


@dataclass(frozen=True)
class QtDNNConfig:
    """Every setting of a :class:`QtDNN` except its input/output sizes."""

    hidden: int = DEFAULT_HIDDEN
    """Width of each hidden layer."""
    layers: int = 3
    """Number of linear layers (3 = two hidden layers, the paper's '3-layer MLP')."""
    activation: str = "silu"
    """Hidden nonlinearity: silu, tanh, gelu or relu (smooth ones give smooth Jacobians)."""
    n_fit_steps: int = DEFAULT_FIT_STEPS
    """Adam steps per re-fit (the paper: 32)."""
    fit_batch: int = DEFAULT_FIT_BATCH
    """Samples per tiny batch of the fit."""
    lr: float = DEFAULT_LR
    """Adam learning rate."""
    buffer_size: int = DEFAULT_BUFFER_SIZE
    """Capacity of the FIFO buffer of recent (input, output) pairs; 0 disables it."""
    buffer_mix: float = DEFAULT_BUFFER_MIX
    """Fraction of each tiny batch drawn from the buffer (once it holds data)."""
    loss: str = "mse"
    """'mse' on expectations in [-1, 1] (tanh output) or 'bce' on marginals (1 - <Z>) / 2 (sigmoid output)."""
    dtype: torch.dtype = torch.float32
    """Precision of the surrogate and its fit."""
    fit_threads: int | None = DEFAULT_FIT_THREADS
    """Torch intra-op threads during the fit and the VJP (None: leave torch's setting)."""
    center: bool = True
    """Feed the MLP ``features - c`` with c the first fitted minibatch's mean (fixed after), so
    slowly moving circuit weights enter as small offsets instead of large constant inputs."""
    normalize: bool = False
    """Feed the MLP ``(features - mean) / s`` with the per-feature mean of the minibatch of the
    latest fit and one spread ``s`` for all the features that vary in it (the root mean square of
    their standard deviations; features without spread keep scale 1); overrides ``center``. One
    spread, not one per feature: a feature that hardly varies (a saturated tanh in an RL PreDNN)
    would otherwise be magnified by 1 / its std, and with it a derivative the minibatch cannot
    teach (measured: gradient cosine 0.01 instead of 0.89 with one wire at std 1e-4;
    bench/qtdnn_options.md). The VJP includes the 1 / s factor, so it stays the exact Jacobian
    product of the surrogate as a function of the raw features."""
    holdout: float = 0.0
    """Share of each fitted minibatch's rows (in [0, 0.5)) kept out of this fit: their loss after
    it is ``last_holdout_error``, a fidelity proxy that needs no exact gradient (on hardware too).
    The held-out rows still enter the buffer for later fits."""
    adaptive_max_steps: int = 0
    """0: every fit takes ``n_fit_steps``. Otherwise fits are adaptive: at least ``n_fit_steps``,
    then ``ADAPTIVE_CHECK_EVERY`` more at a time while the held-out loss improves by at least
    ``ADAPTIVE_MIN_GAIN`` and exceeds ``adaptive_target``, up to this many (needs ``holdout`` > 0)."""
    adaptive_target: float = 0.0
    """Adaptive fits stop once the held-out loss is at or below this."""
    sobolev_samples: int = 0
    """Rows k of each minibatch at which the layer measures the circuit's directional derivatives
    (0: none). Costs 2 x k x ``sobolev_directions`` extra circuit executions per fit."""
    sobolev_directions: int = 1
    """Random unit directions m (in the layer's input space) per sample row."""
    sobolev_weight: float = 1.0
    """Weight of the Sobolev term mean((J_surrogate v - D_v)**2) in the fit's loss; 0 measures the
    derivatives only for the ``last_tangent_*`` check without fitting them."""
    sobolev_step: float = 0.1
    """Step h (rad) of the central difference D_v = (f(x + h v) - f(x - h v)) / (2 h). Each frequency
    w of the circuit along v is scaled by sin(w h) / (w h) (bias ~ (w h)**2 / 6, w <= |v|_1), and
    shot noise of sigma per output adds sigma / (sqrt(2) h): exact simulation wants h ~ 0.01-0.1;
    with shots h must be large (0.3-0.5 at 1000 shots, sigma ~ 0.03), and even then, at 10 qubits
    x 10 layers, fitting the noisy differences made the gradient worse (bench/qtdnn_options.md):
    there keep ``sobolev_weight=0`` and use the derivatives only as the trust check."""
    sobolev_buffer: int = 256
    """Capacity of the FIFO buffer of past (row, direction, derivative) triples; each fit step
    adds up to as many buffered triples as the current minibatch measured."""

    def __post_init__(self) -> None:
        _check_int(self.hidden, "hidden", 1)
        _check_int(self.layers, "layers", 2)
        _check_int(self.n_fit_steps, "n_fit_steps", 0)
        _check_int(self.fit_batch, "fit_batch", 1)
        _check_int(self.buffer_size, "buffer_size", 0)
        if self.fit_threads is not None:
            _check_int(self.fit_threads, "fit_threads", 1)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose 'mse' or 'bce'")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive float, got {self.lr!r}")
        if not (isinstance(self.buffer_mix, (int, float)) and 0.0 <= self.buffer_mix <= 1.0):
            raise ValueError(f"buffer_mix must be in [0, 1], got {self.buffer_mix!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {self.dtype}")
        self._check_options()

    def _check_options(self) -> None:
        """The issue-15 options: holdout, adaptive fitting, Sobolev fitting."""
        if not (_is_real(self.holdout) and 0.0 <= self.holdout < 0.5):
            raise ValueError(f"holdout must be a fraction in [0, 0.5), got {self.holdout!r}")
        _check_int(self.adaptive_max_steps, "adaptive_max_steps", 0)
        if self.adaptive_max_steps and self.holdout == 0:
            raise ValueError("adaptive_max_steps needs holdout > 0: adaptive fits are steered by the held-out loss")
        if self.adaptive_max_steps and self.adaptive_max_steps < self.n_fit_steps:
            raise ValueError(f"adaptive_max_steps ({self.adaptive_max_steps}) must be 0 or at least "
                             f"n_fit_steps ({self.n_fit_steps})")
        if not (_is_real(self.adaptive_target) and self.adaptive_target >= 0):
            raise ValueError(f"adaptive_target must be a float >= 0, got {self.adaptive_target!r}")
        _check_int(self.sobolev_samples, "sobolev_samples", 0)
        _check_int(self.sobolev_directions, "sobolev_directions", 1)
        _check_int(self.sobolev_buffer, "sobolev_buffer", 0)
        if not (_is_real(self.sobolev_weight) and self.sobolev_weight >= 0):
            raise ValueError(f"sobolev_weight must be a float >= 0, got {self.sobolev_weight!r}")
        if not (_is_real(self.sobolev_step) and self.sobolev_step > 0):
            raise ValueError(f"sobolev_step must be a positive float (rad), got {self.sobolev_step!r}")

    @classmethod
    def paper(cls, n_qubits: int, **overrides: Any) -> "QtDNNConfig":
        """The paper's settings: hidden 2**(n+1), 3 layers, 32 fit steps, BCE on marginals
        (and, where the paper is silent, Adam at 1e-3 on tiny batches of 32, no centering)."""
        _check_int(n_qubits, "n_qubits", 1)
        base = dict(hidden=2 ** (n_qubits + 1), layers=3, n_fit_steps=PAPER_FIT_STEPS,
                    fit_batch=PAPER_FIT_BATCH, loss="bce", lr=PAPER_LR, center=False)
        base.update(overrides)
        return cls(**base)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


class FitBuffer:
    """FIFO ring of the most recent (features [F], targets [K]) pairs, ``capacity`` rows."""

    def __init__(self, capacity: int, n_features: int, n_outputs: int, dtype: torch.dtype) -> None:
        self.capacity = capacity
        self.features = torch.zeros(capacity, n_features, dtype=dtype)
        self.targets = torch.zeros(capacity, n_outputs, dtype=dtype)
        self.size = 0
        self.head = 0  # next row to overwrite

    def __len__(self) -> int:
        return self.size

    def push(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Append rows, overwriting the oldest once full (only the last ``capacity`` rows are kept)."""
        if self.capacity == 0:
            return
        features, targets = features[-self.capacity:], targets[-self.capacity:]
        rows = (self.head + torch.arange(features.shape[0])) % self.capacity
        self.features[rows] = features
        self.targets[rows] = targets
        self.head = int((self.head + features.shape[0]) % self.capacity)
        self.size = min(self.capacity, self.size + features.shape[0])

    def state_dict(self) -> dict:
        return {"features": self.features[: self.size].clone(), "targets": self.targets[: self.size].clone(),
                "head": self.head, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        if size > self.capacity or state["features"].shape[1:] != self.features.shape[1:]:
            raise ValueError(
                f"buffer state of {size} x {tuple(state['features'].shape[1:])} does not fit a buffer of "
                f"{self.capacity} x {tuple(self.features.shape[1:])}"
            )
        self.features.zero_()
        self.targets.zero_()
        self.features[:size] = state["features"]
        self.targets[:size] = state["targets"]
        self.head, self.size = int(state["head"]), size


class QtDNN:
    """The qtDNN surrogate: an MLP from ``n_inputs`` features to ``n_outputs`` expectations in [-1, 1].

    Call it on features [N, n_inputs] to get predictions [N, n_outputs]; :meth:`fit` re-fits it on
    one minibatch (warm start) and :meth:`vjp` gives the vector-Jacobian product used as the
    circuit's gradient. For a :class:`QuantumLayer` the features are the layer's inputs followed by
    the circuit weights (when the circuit has any). The keyword arguments are the fields of
    :class:`QtDNNConfig` (documented there); ``seed`` seeds the initialisation and the tiny-batch
    draws (None: drawn from torch's global RNG).
    """

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = DEFAULT_HIDDEN, layers: int = 3,
                 n_fit_steps: int = DEFAULT_FIT_STEPS, fit_batch: int = DEFAULT_FIT_BATCH, lr: float = DEFAULT_LR,
                 buffer_size: int = DEFAULT_BUFFER_SIZE, buffer_mix: float = DEFAULT_BUFFER_MIX,
                 loss: str = "mse", activation: str = "silu", dtype: torch.dtype = torch.float32,
                 fit_threads: int | None = DEFAULT_FIT_THREADS, center: bool = True, normalize: bool = False,
                 holdout: float = 0.0, adaptive_max_steps: int = 0, adaptive_target: float = 0.0,
                 sobolev_samples: int = 0, sobolev_directions: int = 1, sobolev_weight: float = 1.0,
                 sobolev_step: float = 0.1, sobolev_buffer: int = 256, seed: int | None = None) -> None:
        _check_int(n_inputs, "n_inputs", 0)
        _check_int(n_outputs, "n_outputs", 1)
        self.config = QtDNNConfig(hidden=hidden, layers=layers, activation=activation, n_fit_steps=n_fit_steps,
                                  fit_batch=fit_batch, lr=lr, buffer_size=buffer_size, buffer_mix=buffer_mix,
                                  loss=loss, dtype=dtype, fit_threads=fit_threads, center=center,
                                  normalize=normalize, holdout=holdout, adaptive_max_steps=adaptive_max_steps,
                                  adaptive_target=adaptive_target, sobolev_samples=sobolev_samples,
                                  sobolev_directions=sobolev_directions, sobolev_weight=sobolev_weight,
                                  sobolev_step=sobolev_step, sobolev_buffer=sobolev_buffer)
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(int(seed))
        self.net = _build_mlp(n_inputs, n_outputs, self.config, self.generator)
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]
        self.optimizer = FlatAdam(list(self.net.parameters()), lr=lr)
        self._bind_fit_layers()
        self.buffer = FitBuffer(buffer_size, n_inputs, n_outputs, dtype)
        # (feature row, direction) pairs side by side -> directional derivative
        self.tangent_buffer = FitBuffer(sobolev_buffer, 2 * n_inputs, n_outputs, dtype)
        self.offset = torch.zeros(n_inputs, dtype=dtype)  # c of ``center``; set by the first fit
        self.scale = torch.ones(n_inputs, dtype=dtype)  # std of ``normalize``; set by every fit
        self.fits = 0
        self.last_fit_loss: float | None = None
        self.last_fit_seconds: float | None = None
        self.fit_seconds_total = 0.0
        self.last_fit_steps = 0
        self.last_holdout_error: float | None = None
        self.last_tangent_cosine: float | None = None
        self.last_tangent_rel_error: float | None = None

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(cls, n_inputs: int, n_outputs: int, config: QtDNNConfig | dict | None = None,
                    seed: int | None = None) -> "QtDNN":
        """A QtDNN from a :class:`QtDNNConfig` (or a dict of its fields; None = defaults)."""
        if config is None:
            config = QtDNNConfig()
        elif isinstance(config, dict):
            unknown = set(config) - {f.name for f in fields(QtDNNConfig)}
            if unknown:
                raise ValueError(f"unknown qtDNN setting(s) {sorted(unknown)}; known: "
                                 f"{', '.join(f.name for f in fields(QtDNNConfig))}")
            config = QtDNNConfig(**config)
        elif not isinstance(config, QtDNNConfig):
            raise TypeError(f"qtdnn must be a QtDNN, a QtDNNConfig, a dict of its fields or 'paper', "
                            f"got {type(config).__name__}")
        return cls(n_inputs, n_outputs, seed=seed, **asdict(config))

    @classmethod
    def paper(cls, n_qubits: int, n_inputs: int | None = None, n_outputs: int | None = None,
              seed: int | None = None, **overrides: Any) -> "QtDNN":
        """The paper's preset for ``n_qubits`` (inputs and outputs default to one per qubit)."""
        config = QtDNNConfig.paper(n_qubits, **overrides)
        return cls.from_config(n_qubits if n_inputs is None else n_inputs,
                               n_qubits if n_outputs is None else n_outputs, config, seed=seed)

    @property
    def dtype(self) -> torch.dtype:
        return self.config.dtype

    def __repr__(self) -> str:
        c = self.config
        return (f"QtDNN({self.n_inputs} -> {self.n_outputs}, hidden={c.hidden}, layers={c.layers}, "
                f"n_fit_steps={c.n_fit_steps}, fit_batch={c.fit_batch}, loss={c.loss!r}, "
                f"buffer={len(self.buffer)}/{c.buffer_size})")

    # ------------------------------------------------------------------ prediction and gradients
    def _head(self, logits: torch.Tensor) -> torch.Tensor:
        """Squash logits into the expectation range [-1, 1]."""
        if self.config.loss == "bce":
            return 1.0 - 2.0 * torch.sigmoid(logits)  # the marginal P(1) = sigmoid, <Z> = 1 - 2 P(1)
        return torch.tanh(logits)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted expectations [N, n_outputs] for features [N, n_inputs] (differentiable)."""
        return self._head(self._logits(self._check_features(features)))

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self._standardize(features))

    def _standardize(self, features: torch.Tensor) -> torch.Tensor:
        """The MLP's input: features centred (``center`` / ``normalize``) and scaled (``normalize``)."""
        return (features - self.offset) / self.scale

    def _check_features(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.n_inputs:
            raise ValueError(f"qtDNN features must be [N, {self.n_inputs}], got {tuple(features.shape)}")
        return features.to(self.dtype)

    @torch.no_grad()
    def vjp(self, features: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        """grad_output [N, n_outputs] times the surrogate's Jacobian at ``features``: [N, n_inputs].

        Differentiated by hand like the fit (no autograd graph: 0.38 instead of 0.49 ms at N = 256),
        so nothing reaches the caller's graph and the surrogate's parameters accumulate no ``.grad``.
        Checked against autograd for every activation and loss in tests/autograd/test_qtdnn.py.
        """
        with _torch_threads(self.config.fit_threads):
            h = self._standardize(self._check_features(features.detach()))
            logits, layer_inputs, pre_activations = self._recorded_forward(h)
            grad = self._head_backward(logits, grad_output.detach().to(self.dtype))
            backward = ACTIVATION_BACKWARD[self.config.activation]
            for i in range(len(self._fit_layers) - 1, -1, -1):
                grad = grad.mm(self._fit_layers[i][0])
                if i > 0:
                    grad = backward(grad, pre_activations[i - 1], layer_inputs[i])
        return grad / self.scale  # d standardized / d features

    @torch.no_grad()
    def jvp(self, features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """The surrogate's Jacobian at ``features`` [N, n_inputs] times ``directions`` [N, n_inputs]:
        its directional derivatives [N, n_outputs]. Checked against autograd in
        tests/autograd/test_qtdnn_options.py."""
        with _torch_threads(self.config.fit_threads):
            x = self._check_features(features.detach())
            v = self._check_features(directions.detach())
            return self._tangent_forward(x, v).output

    def _tangent_forward(self, x: torch.Tensor, v: torch.Tensor) -> TangentRecord:
        """J(x) v by forward-mode propagation, with what the Sobolev term's hand-written backward
        reads: each linear layer's input and input tangent, its output's tangent, and the activation's
        (first, second) derivatives at its output."""
        h, t = self._standardize(x), v / self.scale
        forward = ACTIVATION_FORWARD[self.config.activation]
        derivatives = ACTIVATION_SECOND_DERIVATIVES[self.config.activation]
        record = TangentRecord([], [], [], [], None)
        last = len(self._fit_layers) - 1
        for i, (_, bias, weight_t) in enumerate(self._fit_layers):
            record.inputs.append(h)
            record.input_tangents.append(t)
            z, u = torch.addmm(bias, h, weight_t), t.mm(weight_t)
            record.pre_tangents.append(u)
            if i < last:
                h = forward(z)
                record.derivatives.append(derivatives(z))
                t = u * record.derivatives[-1][0]
        record.derivatives.append(HEAD_DERIVATIVE[self.config.loss](z))
        record.output = u * record.derivatives[-1][0]
        return record

    def _recorded_forward(self, h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits of the centred features ``h``, with each linear layer's input and each hidden
        pre-activation (what the hand-written backward passes read)."""
        layers = self._fit_layers
        forward = ACTIVATION_FORWARD[self.config.activation]
        layer_inputs, pre_activations = [h], []
        for i, (_, bias, weight_t) in enumerate(layers):
            z = torch.addmm(bias, h, weight_t)
            if i < len(layers) - 1:
                pre_activations.append(z)
                h = forward(z)
                layer_inputs.append(h)
        return z, layer_inputs, pre_activations

    def _head_backward(self, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad through :meth:`_head`: d prediction / d logits times ``grad``."""
        if self.config.loss == "bce":
            return torch.ops.aten.sigmoid_backward(grad, torch.sigmoid(logits)).mul_(-2.0)
        return torch.ops.aten.tanh_backward(grad, torch.tanh(logits))

    # ------------------------------------------------------------------ fitting
    def draw_probes(self, batch: int, n_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Where to measure the Sobolev data of a minibatch of ``batch`` rows: row indices [T] (up
        to ``sobolev_samples`` distinct rows, each repeated ``sobolev_directions`` times) and
        random unit directions [T, n_inputs] over the first ``n_dims`` features (the layer's
        inputs; the circuit weights are constant within a minibatch and get 0)."""
        _check_int(batch, "batch", 1)
        if not 0 <= n_dims <= self.n_inputs:
            raise ValueError(f"n_dims must be in [0, {self.n_inputs}], got {n_dims!r}")
        c = self.config
        rows = torch.randperm(batch, generator=self.generator)[: c.sobolev_samples]
        rows = rows.repeat_interleave(c.sobolev_directions)
        directions = torch.zeros(rows.shape[0], self.n_inputs, dtype=self.dtype)
        if n_dims:
            v = torch.randn(rows.shape[0], n_dims, generator=self.generator, dtype=self.dtype)
            directions[:, :n_dims] = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.dtype).tiny)
        return rows, directions

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Fit loss of predictions at ``features`` against measured expectations ``targets``."""
        return self._loss_and_grad(self._logits(features), targets)[0]

    def fit(self, features: torch.Tensor, targets: torch.Tensor,
            tangents: Tangents | None = None) -> float:
        """Re-fit on one minibatch: ``n_fit_steps`` Adam steps on tiny batches, then buffer it.

        features: [B, n_inputs], targets: [B, n_outputs] (the real circuit's outputs); both are
        detached and cast to the surrogate's dtype. ``tangents`` (with ``sobolev_samples`` > 0):
        (rows [T, n_inputs], directions [T, n_inputs], the circuit's directional derivatives
        [T, n_outputs]); before the fit they are compared with the surrogate's own
        (``last_tangent_cosine``, ``last_tangent_rel_error``: directions it has not been fitted
        on), then, with ``sobolev_weight`` > 0, fitted. Returns the mean tiny-batch loss of this
        fit (the value term only).
        """
        start = time.perf_counter()
        x = self._check_features(features.detach())
        y = targets.detach().to(self.dtype)
        if y.shape != (x.shape[0], self.n_outputs):
            raise ValueError(f"qtDNN targets must be [{x.shape[0]}, {self.n_outputs}], got {tuple(y.shape)}")
        tangents = None if tangents is None else self._check_tangents(*tangents)
        with _torch_threads(self.config.fit_threads):
            self._check_tangent_fit(tangents)  # the surrogate as the previous backward used it
            self._set_standardization(x)
            fitted = tangents if self.config.sobolev_weight > 0 else None
            train_x, train_y, held_x, held_y = self._split_holdout(x, y)
            total, steps = self._run_steps(train_x, train_y, fitted, self.config.n_fit_steps)
            self.last_holdout_error = None
            if held_x is not None:
                held = self._held_out_loss(held_x, held_y)
                if self.config.adaptive_max_steps:
                    held, more_total, more_steps = self._fit_adaptively(train_x, train_y, held_x, held_y,
                                                                        fitted, held)
                    total, steps = total + more_total, steps + more_steps
                self.last_holdout_error = held
        self.buffer.push(x, y)
        if fitted is not None:
            self.tangent_buffer.push(torch.cat(fitted[:2], dim=1), fitted[2])
        self.fits += 1
        self.last_fit_steps = steps
        self.last_fit_loss = total / max(1, steps)
        self.last_fit_seconds = time.perf_counter() - start
        self.fit_seconds_total += self.last_fit_seconds
        return self.last_fit_loss

    def _check_tangents(self, rows: torch.Tensor, directions: torch.Tensor,
                        derivatives: torch.Tensor) -> Tangents:
        rows, directions = self._check_features(rows.detach()), self._check_features(directions.detach())
        derivatives = derivatives.detach().to(self.dtype)
        n = rows.shape[0]
        if directions.shape[0] != n or derivatives.shape != (n, self.n_outputs):
            raise ValueError(f"qtDNN tangents must be rows [T, {self.n_inputs}], directions [T, {self.n_inputs}] "
                             f"and derivatives [T, {self.n_outputs}], got {tuple(rows.shape)}, "
                             f"{tuple(directions.shape)}, {tuple(derivatives.shape)}")
        return rows, directions, derivatives

    def _set_standardization(self, x: torch.Tensor) -> None:
        """``normalize``: this minibatch's mean and spread; ``center``: the first minibatch's mean."""
        if self.config.normalize:
            std = x.std(dim=0, unbiased=False)
            varying = std > MIN_NORMALIZE_STD
            spread = std[varying].square().mean().sqrt() if bool(varying.any()) else std.new_ones(())
            self.offset = x.mean(dim=0)
            self.scale = torch.where(varying, spread, torch.ones_like(std))
        elif self.config.center and self.fits == 0:
            self.offset = x.mean(dim=0)

    @torch.no_grad()
    def _check_tangent_fit(self, tangents: Tangents | None) -> None:
        """Cosine and relative error of the surrogate's directional derivatives against the
        circuit's, over all rows and outputs (telemetry; NaN when the circuit's are all zero,
        None without tangents)."""
        self.last_tangent_cosine = self.last_tangent_rel_error = None
        if tangents is None:
            return
        rows, directions, measured = tangents
        mine = self._tangent_forward(rows, directions).output.reshape(-1)
        measured = measured.reshape(-1)
        norm_mine, norm_measured = float(mine.norm()), float(measured.norm())
        if norm_measured == 0.0:
            self.last_tangent_cosine = self.last_tangent_rel_error = float("nan")
            return
        self.last_tangent_cosine = float(mine @ measured) / (norm_mine * norm_measured) if norm_mine else 0.0
        self.last_tangent_rel_error = float((mine - measured).norm()) / norm_measured

    def _split_holdout(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                        torch.Tensor | None, torch.Tensor | None]:
        """(train x, train y, held-out x, held-out y): a random ``holdout`` share of the rows held
        out (at least one row, and at least one left to train on), or (x, y, None, None)."""
        n = x.shape[0]
        n_held = min(n - 1, max(1, round(self.config.holdout * n))) if self.config.holdout > 0 else 0
        if n_held <= 0:
            return x, y, None, None
        order = torch.randperm(n, generator=self.generator)
        held, train = order[:n_held], order[n_held:]
        return x[train], y[train], x[held], y[held]

    @torch.no_grad()
    def _held_out_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(self._loss_and_grad(self._logits(x), y)[0])

    def _fit_adaptively(self, x: torch.Tensor, y: torch.Tensor, held_x: torch.Tensor, held_y: torch.Tensor,
                        tangents: Tangents | None, held: float) -> tuple[float, float, int]:
        """Extra steps, ``ADAPTIVE_CHECK_EVERY`` at a time, while the held-out loss improves by
        ``ADAPTIVE_MIN_GAIN`` and exceeds ``adaptive_target``, up to ``adaptive_max_steps`` in all.
        Returns (final held-out loss, summed tiny-batch loss, steps taken)."""
        total, steps = 0.0, 0
        budget = self.config.adaptive_max_steps - self.config.n_fit_steps
        while steps < budget and held > self.config.adaptive_target:
            chunk_total, chunk = self._run_steps(x, y, tangents, min(ADAPTIVE_CHECK_EVERY, budget - steps))
            total, steps = total + chunk_total, steps + chunk
            now = self._held_out_loss(held_x, held_y)
            improved = now < held * (1.0 - ADAPTIVE_MIN_GAIN)
            held = now
            if not improved:
                break
        return held, total, steps

    def _run_steps(self, x: torch.Tensor, y: torch.Tensor,
                   tangents: Tangents | None, steps: int) -> tuple[float, int]:
        """``steps`` Adam steps on tiny batches of (x, y) and the buffer, each with the Sobolev
        term on ``tangents`` plus as many buffered ones when given. Returns (summed loss, steps)."""
        total = 0.0
        batches_x, batches_y = self._tiny_batches(x, y, steps)
        tangent_batches = self._tangent_batches(tangents, steps) if tangents is not None else [None] * steps
        for bx, by, bt in zip(batches_x, batches_y, tangent_batches):
            total += self._fit_step(bx, by, bt)
        return total, steps

    def _tangent_batches(self, tangents: Tangents, steps: int) -> list:
        """Each step's Sobolev rows: all of this minibatch's, then as many drawn from the buffer
        (gathered for every step at once, like the tiny batches)."""
        if len(self.tangent_buffer) == 0:
            return [tangents] * steps
        n, f = tangents[0].shape[0], self.n_inputs
        drawn = torch.randint(0, len(self.tangent_buffer), (steps, n), generator=self.generator)
        pool_xv = torch.cat([torch.cat(tangents[:2], dim=1), self.tangent_buffer.features[: len(self.tangent_buffer)]])
        pool_d = torch.cat([tangents[2], self.tangent_buffer.targets[: len(self.tangent_buffer)]])
        rows = torch.cat([torch.arange(n).expand(steps, n), drawn + n], dim=1)
        xv, d = pool_xv[rows], pool_d[rows]
        return list(zip(xv[..., :f], xv[..., f:], d))

    def _add_sobolev_grad(self, tangents: Tangents) -> None:
        """Add d/d(parameters) of ``sobolev_weight`` x mean((J v - D_v)**2) to the flat gradient.

        Differentiated by hand through the forward-mode pass (autograd over it cost 4-5 ms a step
        at 10 qubits, 5x the rest of the step). With z, u a layer's pre-activation and its tangent,
        t = u * act'(z) the next layer's input tangent: d/du = d/dt * act'(z) and
        d/dz = d/dh * act'(z) + d/dt * u * act''(z). Checked against autograd for every activation
        and loss in tests/autograd/test_qtdnn_options.py.
        """
        rows, directions, measured = tangents
        record = self._tangent_forward(rows, directions)
        error = record.output - measured
        grad_out = error * (2.0 * self.config.sobolev_weight / error.numel())
        first, second = record.derivatives[-1]
        grad_u = grad_out * first
        grad_z = grad_out * record.pre_tangents[-1] * second
        grads = self.optimizer.grads
        for i in range(len(self._fit_layers) - 1, -1, -1):
            weight = self._fit_layers[i][0]
            grads[2 * i].addmm_(grad_z.t(), record.inputs[i]).addmm_(grad_u.t(), record.input_tangents[i])
            grads[2 * i + 1].add_(grad_z.sum(dim=0))
            if i > 0:
                grad_h, grad_t = grad_z.mm(weight), grad_u.mm(weight)
                first, second = record.derivatives[i - 1]
                grad_u = grad_t * first
                grad_z = grad_h * first + grad_t * record.pre_tangents[i - 1] * second

    @torch.no_grad()
    def _fit_step(self, bx: torch.Tensor, by: torch.Tensor,
                  tangents: Tangents | None = None) -> float:
        """One Adam step on a tiny batch; returns its loss (the value :meth:`loss` gives).

        The gradients are written by hand into the optimizer's flat gradient buffer: for a 3-layer
        MLP on 32 rows, recording and walking an autograd graph and torch.optim.Adam's per-call
        bookkeeping cost more than the arithmetic, so every torch op counts (a 16-step fit at 10
        qubits: 10 ms with autograd and torch.optim.Adam, 3.7 ms by hand with a seven-op Adam,
        2.8 ms with the fused Adam and the fewer ops here). Checked against autograd for every
        activation and loss in tests/autograd/test_qtdnn.py.
        """
        logits, layer_inputs, pre_activations = self._recorded_forward(self._standardize(bx))
        loss, grad_z = self._loss_and_grad(logits, by)
        backward = ACTIVATION_BACKWARD[self.config.activation]
        grads = self.optimizer.grads
        for i in range(len(self._fit_layers) - 1, -1, -1):
            torch.mm(grad_z.t(), layer_inputs[i], out=grads[2 * i])
            torch.sum(grad_z, dim=0, out=grads[2 * i + 1])
            if i > 0:
                grad_z = backward(grad_z.mm(self._fit_layers[i][0]), pre_activations[i - 1], layer_inputs[i])
        if tangents is not None:
            self._add_sobolev_grad(tangents)
        self.optimizer.step()
        return float(loss)

    def _loss_and_grad(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fit loss of :meth:`loss` and its gradient with respect to the logits."""
        scale = 1.0 / logits.numel()  # both losses are means over every element
        if self.config.loss == "bce":
            marginals = ((1.0 - targets) * 0.5).clamp(0.0, 1.0)
            loss = F.binary_cross_entropy_with_logits(logits, marginals)
            return loss, (torch.sigmoid(logits) - marginals) * scale
        predictions = torch.tanh(logits)
        error = (predictions - targets).view(-1)
        loss = torch.dot(error, error) * scale
        grad = torch.ops.aten.tanh_backward(error, predictions.view(-1)).mul_(2.0 * scale)
        return loss, grad.view_as(logits)

    def _bind_fit_layers(self) -> None:
        """(weight, bias, weight.t()) of each linear layer: views of the flat parameter buffer,
        taken once so the fit's steps spend no time in module attribute lookups."""
        self._fit_layers = [(m.weight.detach(), m.bias.detach(), m.weight.detach().t()) for m in self._linears]

    def _tiny_batches(self, x: torch.Tensor, y: torch.Tensor,
                      steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every step's tiny batch, drawn at once: [steps (default n_fit_steps), fit_batch, F] and [..., K].

        Rows are drawn with replacement, a ``buffer_mix`` share of each batch from the buffer
        (which does not change during a fit).
        """
        steps, size = self.config.n_fit_steps if steps is None else steps, self.config.fit_batch
        n_buf = round(self.config.buffer_mix * size) if len(self.buffer) else 0
        cur = torch.randint(0, x.shape[0], (steps, size - n_buf), generator=self.generator)
        if n_buf == 0:
            return x[cur], y[cur]
        old = torch.randint(0, len(self.buffer), (steps, n_buf), generator=self.generator)
        return (torch.cat([x[cur], self.buffer.features[old]], dim=1),
                torch.cat([y[cur], self.buffer.targets[old]], dim=1))

    # ------------------------------------------------------------------ checkpointing
    def __setstate__(self, state: dict) -> None:
        """After ``deepcopy`` / unpickling: tie the copied parameters to the copied flat buffer."""
        self.__dict__.update(state)
        self.optimizer.bind(list(self.net.parameters()))
        self._bind_fit_layers()

    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically (tensors and plain Python values only)."""
        return {
            "version": _STATE_VERSION,
            "shape": (self.n_inputs, self.n_outputs),
            "config": {**asdict(self.config), "dtype": str(self.config.dtype)},
            "net": {k: v.clone() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "offset": self.offset.clone(),
            "scale": self.scale.clone(),
            "tangent_buffer": self.tangent_buffer.state_dict(),
            "counters": {"fits": self.fits, "last_fit_loss": self.last_fit_loss,
                         "last_fit_seconds": self.last_fit_seconds, "fit_seconds_total": self.fit_seconds_total,
                         "last_fit_steps": self.last_fit_steps, "last_holdout_error": self.last_holdout_error,
                         "last_tangent_cosine": self.last_tangent_cosine,
                         "last_tangent_rel_error": self.last_tangent_rel_error},
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"qtDNN state version {state.get('version')!r} was written by another hdqnn "
                             f"release; this one reads version {_STATE_VERSION} (re-fit or retrain)")
        shape = tuple(state["shape"])
        if shape != (self.n_inputs, self.n_outputs):
            raise ValueError(f"qtDNN state is for {shape[0]} -> {shape[1]}, this one is "
                             f"{self.n_inputs} -> {self.n_outputs}")
        mine = {**asdict(self.config), "dtype": str(self.config.dtype)}
        # states saved before a setting existed were fitted with its default
        saved = {**asdict(QtDNNConfig()), "dtype": str(QtDNNConfig().dtype), **state["config"]}
        if saved != mine:
            raise ValueError(f"qtDNN state was saved with config {saved}, this one has {mine}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
        if "tangent_buffer" in state:
            self.tangent_buffer.load_state_dict(state["tangent_buffer"])
        self.offset = state["offset"].clone()
        self.scale = state["scale"].clone() if "scale" in state else torch.ones_like(self.offset)
        counters = state["counters"]
        self.fits = int(counters["fits"])
        self.last_fit_loss = counters["last_fit_loss"]
        self.last_fit_seconds = counters["last_fit_seconds"]
        self.fit_seconds_total = float(counters["fit_seconds_total"])
        self.last_fit_steps = int(counters.get("last_fit_steps", 0))
        self.last_holdout_error = counters.get("last_holdout_error")
        self.last_tangent_cosine = counters.get("last_tangent_cosine")
        self.last_tangent_rel_error = counters.get("last_tangent_rel_error")


class FlatAdam:
    """Adam (torch's fused Adam kernel, the one ``torch.optim.Adam(fused=True)`` runs) over
    parameters that are views of one flat buffer, with their gradients in a second flat buffer
    (``grads``: views shaped like the parameters, which the caller fills): a step is one kernel
    call on the buffer.

    The surrogate's fit takes thousands of tiny steps; torch.optim.Adam's per-call bookkeeping
    (hooks, grouping tensors, per-parameter state) costs more than the fused arithmetic itself.
    Construction rebinds each parameter's ``.data`` to its view of the flat buffer, so module
    code and ``state_dict`` / ``load_state_dict`` (copies into the views) keep working. A copy
    (``deepcopy``, pickling) gets separate storages for the parameters and the buffer: its owner
    must call :meth:`bind` again (``QtDNN.__setstate__`` does).
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = ADAM_BETAS,
                 eps: float = ADAM_EPS) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in params])
        self.flat_grad = torch.zeros_like(self.flat)
        self.bind(params)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        # the kernel reads the step count from a tensor (float32, as torch.optim keeps it)
        self._step = torch.zeros((), dtype=torch.float32)

    @property
    def steps(self) -> int:
        return int(self._step.item())

    def bind(self, params: list[torch.Tensor]) -> None:
        """Make ``params`` views of the flat buffer (whose values win) and ``grads`` their gradients."""
        if sum(p.numel() for p in params) != self.flat.numel():
            raise ValueError(f"{sum(p.numel() for p in params)} parameter values do not match the "
                             f"optimizer's {self.flat.numel()}")
        for param, view in zip(params, self._views(self.flat, params)):
            param.data = view
        self.grads = self._views(self.flat_grad, params)

    @staticmethod
    def _views(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [p.numel() for p in like]
        return [chunk.view_as(p) for chunk, p in zip(torch.split(flat, sizes), like)]

    @torch.no_grad()
    def step(self) -> None:
        """One update from the current ``grads``."""
        self._step.add_(1.0)
        beta1, beta2 = self.betas
        torch._fused_adam_([self.flat], [self.flat_grad], [self.exp_avg], [self.exp_avg_sq], [], [self._step],
                           lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.eps,
                           amsgrad=False, maximize=False)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["exp_avg"].shape != self.exp_avg.shape or state["exp_avg_sq"].shape != self.exp_avg_sq.shape:
            raise ValueError(f"Adam state for {state['exp_avg'].numel()} parameters does not fit "
                             f"this surrogate's {self.exp_avg.numel()}")
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self._step.fill_(int(state["steps"]))


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the caller's setting after."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _build_mlp(n_in: int, n_out: int, config: QtDNNConfig, generator: torch.Generator) -> nn.Sequential:
    """``config.layers`` linear layers, initialised like nn.Linear but from ``generator``.

    nn.Linear's constructor draws its own init from torch's global RNG; ``skip_init`` builds it
    without drawing, so building a surrogate neither advances nor (as saving and restoring the
    state would) rewinds the stream that the user's modules and other threads draw from.
    """
    widths = [n_in] + [config.hidden] * (config.layers - 1) + [n_out]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.utils.skip_init(nn.Linear, a, b, dtype=config.dtype)
        bound = 1.0 / math.sqrt(a) if a else 0.0
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        modules.append(linear)
        if i < config.layers - 1:
            modules.append(ACTIVATIONS[config.activation]())
    return nn.Sequential(*modules)
