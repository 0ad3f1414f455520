"""The torch.autograd.Function behind QuantumLayer: real circuit forward, backward routed by mode."""
from __future__ import annotations

from typing import Protocol

import torch
from torch.autograd.function import once_differentiable


class CircuitExecutor(Protocol):
    """What :class:`QuantumFunction` needs from its owner (a :class:`QuantumLayer`)."""

    def run_forward(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """The circuit's outputs [B, K] (dtype and device of ``x``), computed without autograd."""

    def run_vjp(self, x: torch.Tensor, weight: torch.Tensor | None, grad_output: torch.Tensor,
                need_inputs: bool, need_weights: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(grad_x like ``x`` or None, grad_weight like ``weight`` or None) by the owner's mode."""


class QuantumFunction(torch.autograd.Function):
    """``y = circuit(x, weight)``; ``backward`` asks the executor for the VJP (adjoint, shift or qtDNN).

    Call as ``QuantumFunction.apply(x, weight, executor)`` with x [B, n_inputs] and weight
    [n_weights] or None. Not twice differentiable (the surrogate and shift rules give first-order
    products only).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, executor: CircuitExecutor) -> torch.Tensor:
        ctx.executor = executor
        ctx.save_for_backward(x, weight)
        return executor.run_forward(x, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_inputs, need_weights = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_inputs or need_weights):
            return None, None, None
        grad_x, grad_w = ctx.executor.run_vjp(x, weight, grad_output, need_inputs, need_weights)
        return grad_x, grad_w, None
