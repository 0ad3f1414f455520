"""PyTorch integration: QuantumLayer, its autograd Function, the qtDNN surrogate, parameter shift."""
from .function import QuantumFunction
from .gradients import parameter_shift_vjp, slot_map
from .layer import GRAD_MODES, QuantumLayer
from .qtdnn import QtDNN, QtDNNConfig
from .runner import CircuitRunner, SimulatorRunner
from .telemetry import compare_gradients

__all__ = [
    "QuantumLayer", "QuantumFunction", "QtDNN", "QtDNNConfig", "CircuitRunner", "SimulatorRunner",
    "parameter_shift_vjp", "slot_map", "compare_gradients", "GRAD_MODES",
]
