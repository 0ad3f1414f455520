"""The standard gate libraries the importer knows, expressed with hdqnn's native gates.

Names resolve in this order: the program's own ``gate`` definitions, hdqnn's native gates
(OpenQASM 3 stdgates names), ``ALIASES`` (other spellings of a native gate: OpenQASM 2 qelib1.inc,
the OpenQASM builtins ``U``/``CX``, Amazon Braket's names), then ``PRELUDE`` (qelib1.inc /
stdgates.inc gates hdqnn has no kernel for, defined by their standard decompositions).
Aliases and prelude gates equal the library gate up to a global phase, which a flat gate list
cannot observe. Both libraries are available whether or not the program includes them.
"""
from __future__ import annotations

import math

#: other name -> (native gate, how its arguments map: indices into the call's arguments, or
#: float constants)
ALIASES: dict[str, tuple[str, tuple]] = {
    "U": ("u", (0, 1, 2)),
    "u3": ("u", (0, 1, 2)),
    "u2": ("u", (math.pi / 2, 0, 1)),
    "u1": ("p", (0,)),
    "phase": ("p", (0,)),
    "phaseshift": ("p", (0,)),
    "CX": ("cx", ()),
    "cnot": ("cx", ()),
    "cu1": ("cp", (0,)),
    "cphase": ("cp", (0,)),
    "cphaseshift": ("cp", (0,)),
    "si": ("sdg", ()),
    "ti": ("tdg", ()),
    "v": ("sx", ()),
    "xx": ("rxx", (0,)),
    "yy": ("ryy", (0,)),
    "zz": ("rzz", (0,)),
}

#: Arity of the alias names: (number of parameters, number of qubits).
ALIAS_ARITY: dict[str, tuple[int, int]] = {
    "U": (3, 1), "u3": (3, 1), "u2": (2, 1), "u1": (1, 1), "phase": (1, 1), "phaseshift": (1, 1),
    "CX": (0, 2), "cnot": (0, 2), "cu1": (1, 2), "cphase": (1, 2), "cphaseshift": (1, 2),
    "si": (0, 1), "ti": (0, 1), "v": (0, 1), "xx": (1, 2), "yy": (1, 2), "zz": (1, 2),
}

#: Library gates without an hdqnn kernel, in OpenQASM (bodies from Qiskit's qelib1.inc).
PRELUDE = """
gate id a { }
gate i a { }
gate u0(gamma) a { }
gate sxdg a { h a; sdg a; h a; }
gate vi a { h a; sdg a; h a; }
gate ch a, b { h b; sdg b; cx a, b; h b; t b; cx a, b; t b; h b; s b; x b; s a; }
gate ccx a, b, c {
  h c; cx b, c; tdg c; cx a, c; t c; cx b, c; tdg c; cx a, c; t b; t c; h c; cx a, b; t a;
  tdg b; cx a, b;
}
gate ccnot a, b, c { ccx a, b, c; }
gate cswap a, b, c { cx c, b; ccx a, b, c; cx c, b; }
gate csx a, b { h b; cp(pi/2) a, b; h b; }
gate cv a, b { csx a, b; }
gate cu3(theta, phi, lambda) c, t {
  p((lambda+phi)/2) c; p((lambda-phi)/2) t; cx c, t; u(-theta/2, 0, -(phi+lambda)/2) t; cx c, t;
  u(theta/2, phi, 0) t;
}
gate cu(theta, phi, lambda, gamma) c, t {
  p(gamma) c; p((lambda+phi)/2) c; p((lambda-phi)/2) t; cx c, t; u(-theta/2, 0, -(phi+lambda)/2) t;
  cx c, t; u(theta/2, phi, 0) t;
}
gate rccx a, b, c {
  u2(0, pi) c; u1(pi/4) c; cx b, c; u1(-pi/4) c; cx a, c; u1(pi/4) c; cx b, c; u1(-pi/4) c;
  u2(0, pi) c;
}
"""

#: Builtin constants of OpenQASM 3 (and ``pi`` of OpenQASM 2).
CONSTANTS = {"pi": math.pi, "π": math.pi, "tau": 2 * math.pi, "τ": 2 * math.pi,
             "euler": math.e, "ℯ": math.e}

#: Functions allowed on constant angle expressions.
FUNCTIONS = {"sin": math.sin, "cos": math.cos, "tan": math.tan, "arcsin": math.asin,
             "arccos": math.acos, "arctan": math.atan, "exp": math.exp, "ln": math.log,
             "log": math.log, "sqrt": math.sqrt}

#: Includes the importer accepts (their gates are always known).
INCLUDES = ("qelib1.inc", "stdgates.inc")
