"""The torch.autograd.Function behind QuantumLayer: real circuit forward, backward routed by mode."""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch.autograd.function import once_differentiable


class CircuitExecutor(Protocol):
    """What :class:`QuantumFunction` needs from its owner (a :class:`QuantumLayer`)."""

    def run_forward(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """The circuit's outputs [B, K] (dtype and device of ``x``), computed without autograd."""

    def run_forward_for_backward(self, x: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """``run_forward``'s outputs and whatever of the forward pass the backward can reuse
        (handed back to ``run_vjp`` as ``kept``; None for nothing)."""

    def run_vjp(self, x: torch.Tensor, weight: torch.Tensor | None, grad_output: torch.Tensor,
                need_inputs: bool, need_weights: bool, kept: Any = None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(grad_x like ``x`` or None, grad_weight like ``weight`` or None) by the owner's mode."""


class QuantumFunction(torch.autograd.Function):
    """``y = circuit(x, weight)``; ``backward`` asks the executor for the VJP (adjoint, shift or qtDNN).

    Call as ``QuantumFunction.apply(x, weight, executor, grad_enabled)`` with x [B, n_inputs],
    weight [n_weights] or None, and ``grad_enabled`` torch.is_grad_enabled() of the caller (inside
    ``forward`` grad mode is always off, and ``needs_input_grad`` ignores it): only then does the
    forward keep anything for a backward. Not twice differentiable (the surrogate and shift rules
    give first-order products only).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, executor: CircuitExecutor,
                grad_enabled: bool = False) -> torch.Tensor:
        ctx.executor = executor
        ctx.save_for_backward(x, weight)
        ctx.kept = None
        if grad_enabled and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            y, ctx.kept = executor.run_forward_for_backward(x, weight)
            return y
        return executor.run_forward(x, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_inputs, need_weights = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_inputs or need_weights):
            return None, None, None, None
        grad_x, grad_w = ctx.executor.run_vjp(x, weight, grad_output, need_inputs, need_weights, ctx.kept)
        ctx.kept = None  # the states can be large: free them with the step, not with the graph
        return grad_x, grad_w, None, None
