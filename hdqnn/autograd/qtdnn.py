"""qtDNN: the tangential surrogate whose Jacobian stands in for the circuit's in the backward pass.

A small MLP maps the PQC's input angles (and its trainable weights, when it has any) to the PQC's
outputs. It is re-fitted on the fly, warm-started, on every training forward: ``n_fit_steps`` Adam
steps on tiny batches drawn from the current minibatch and from a FIFO buffer of recent
(input, output) pairs. Only its vector-Jacobian product is ever used; the forward value of a
:class:`~hdqnn.autograd.layer.QuantumLayer` is always the real circuit's.

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
#: 2: the surrogate's own flat Adam replaced torch.optim.Adam (its state has another layout).
_STATE_VERSION = 2


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

    @classmethod
    def paper(cls, n_qubits: int, **overrides: Any) -> "QtDNNConfig":
        """The paper's settings: hidden 2**(n+1), 3 layers, 32 fit steps, BCE on marginals
        (and, where the paper is silent, Adam at 1e-3 on tiny batches of 32, no centering)."""
        _check_int(n_qubits, "n_qubits", 1)
        base = dict(hidden=2 ** (n_qubits + 1), layers=3, n_fit_steps=PAPER_FIT_STEPS,
                    fit_batch=PAPER_FIT_BATCH, loss="bce", lr=PAPER_LR, center=False)
        base.update(overrides)
        return cls(**base)


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
                 fit_threads: int | None = DEFAULT_FIT_THREADS, center: bool = True,
                 seed: int | None = None) -> None:
        _check_int(n_inputs, "n_inputs", 0)
        _check_int(n_outputs, "n_outputs", 1)
        self.config = QtDNNConfig(hidden=hidden, layers=layers, activation=activation, n_fit_steps=n_fit_steps,
                                  fit_batch=fit_batch, lr=lr, buffer_size=buffer_size, buffer_mix=buffer_mix,
                                  loss=loss, dtype=dtype, fit_threads=fit_threads, center=center)
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(int(seed))
        self.net = _build_mlp(n_inputs, n_outputs, self.config, self.generator)
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]
        self.optimizer = FlatAdam(list(self.net.parameters()), lr=lr)
        self._bind_fit_layers()
        self.buffer = FitBuffer(buffer_size, n_inputs, n_outputs, dtype)
        self.offset = torch.zeros(n_inputs, dtype=dtype)  # c of ``center``; set by the first fit
        self.fits = 0
        self.last_fit_loss: float | None = None
        self.last_fit_seconds: float | None = None
        self.fit_seconds_total = 0.0

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
        return self.net(features - self.offset)

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
            h = self._check_features(features.detach()) - self.offset
            logits, layer_inputs, pre_activations = self._recorded_forward(h)
            grad = self._head_backward(logits, grad_output.detach().to(self.dtype))
            backward = ACTIVATION_BACKWARD[self.config.activation]
            for i in range(len(self._fit_layers) - 1, -1, -1):
                grad = grad.mm(self._fit_layers[i][0])
                if i > 0:
                    grad = backward(grad, pre_activations[i - 1], layer_inputs[i])
        return grad

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
    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Fit loss of predictions at ``features`` against measured expectations ``targets``."""
        return self._loss_and_grad(self._logits(features), targets)[0]

    def fit(self, features: torch.Tensor, targets: torch.Tensor) -> float:
        """Re-fit on one minibatch: ``n_fit_steps`` Adam steps on tiny batches, then buffer it.

        features: [B, n_inputs], targets: [B, n_outputs] (the real circuit's outputs); both are
        detached and cast to the surrogate's dtype. Returns the mean tiny-batch loss of this fit.
        """
        start = time.perf_counter()
        x = self._check_features(features.detach())
        y = targets.detach().to(self.dtype)
        if y.shape != (x.shape[0], self.n_outputs):
            raise ValueError(f"qtDNN targets must be [{x.shape[0]}, {self.n_outputs}], got {tuple(y.shape)}")
        if self.config.center and self.fits == 0:
            self.offset = x.mean(dim=0)
        total = 0.0
        with _torch_threads(self.config.fit_threads):
            batches_x, batches_y = self._tiny_batches(x, y)
            for bx, by in zip(batches_x, batches_y):
                total += self._fit_step(bx, by)
        self.buffer.push(x, y)
        self.fits += 1
        self.last_fit_loss = total / max(1, self.config.n_fit_steps)
        self.last_fit_seconds = time.perf_counter() - start
        self.fit_seconds_total += self.last_fit_seconds
        return self.last_fit_loss

    @torch.no_grad()
    def _fit_step(self, bx: torch.Tensor, by: torch.Tensor) -> float:
        """One Adam step on a tiny batch; returns its loss (the value :meth:`loss` gives).

        The gradients are written by hand into the optimizer's flat gradient buffer: for a 3-layer
        MLP on 32 rows, recording and walking an autograd graph and torch.optim.Adam's per-call
        bookkeeping cost more than the arithmetic, so every torch op counts (a 16-step fit at 10
        qubits: 10 ms with autograd and torch.optim.Adam, 3.7 ms by hand with a seven-op Adam,
        2.8 ms with the fused Adam and the fewer ops here). Checked against autograd for every
        activation and loss in tests/autograd/test_qtdnn.py.
        """
        logits, layer_inputs, pre_activations = self._recorded_forward(bx - self.offset)
        loss, grad_z = self._loss_and_grad(logits, by)
        backward = ACTIVATION_BACKWARD[self.config.activation]
        grads = self.optimizer.grads
        for i in range(len(self._fit_layers) - 1, -1, -1):
            torch.mm(grad_z.t(), layer_inputs[i], out=grads[2 * i])
            torch.sum(grad_z, dim=0, out=grads[2 * i + 1])
            if i > 0:
                grad_z = backward(grad_z.mm(self._fit_layers[i][0]), pre_activations[i - 1], layer_inputs[i])
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

    def _tiny_batches(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every step's tiny batch, drawn at once: [n_fit_steps, fit_batch, F] and [..., K].

        Rows are drawn with replacement, a ``buffer_mix`` share of each batch from the buffer
        (which does not change during a fit).
        """
        steps, size = self.config.n_fit_steps, self.config.fit_batch
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
            "counters": {"fits": self.fits, "last_fit_loss": self.last_fit_loss,
                         "last_fit_seconds": self.last_fit_seconds, "fit_seconds_total": self.fit_seconds_total},
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
        if state["config"] != mine:
            raise ValueError(f"qtDNN state was saved with config {state['config']}, this one has {mine}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
        self.offset = state["offset"].clone()
        counters = state["counters"]
        self.fits = int(counters["fits"])
        self.last_fit_loss = counters["last_fit_loss"]
        self.last_fit_seconds = counters["last_fit_seconds"]
        self.fit_seconds_total = float(counters["fit_seconds_total"])


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
