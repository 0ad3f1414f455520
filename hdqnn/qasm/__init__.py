"""OpenQASM 2.0 / 3.0 export and import of hdqnn circuits (NumPy only; no simulator imports).

Bit order: wire ``i`` is ``q[i]`` and its measurement lands in ``c[i]``; see ``exporter``'s
docstring for how that maps onto hdqnn's, Qiskit's and Braket's bitstrings.
"""
from .exporter import CLBIT_REGISTER, QUBIT_REGISTER, dumps, format_float, param_name
from .importer import QasmProgram, loads, parse
from .lexer import QasmError
from .limits import Limits

__all__ = ["dumps", "loads", "parse", "QasmProgram", "QasmError", "Limits", "format_float",
           "param_name", "QUBIT_REGISTER", "CLBIT_REGISTER"]
