"""TorchQuantum worker for bench_engine.py, run under TorchQuantum's own venv (it needs qiskit<1).

Protocol (JSON lines on stdin/stdout, one reply per request):
  request: {"n", "layers", "dtype", "mode": "fwd" | "fwd+vjp", "repeat", "budget_s", "slow_call_s",
            "request": npz path with x [B, n], w [P], g [B, n], "result": npz path to write}
  reply:   {"warmup_s": seconds, "times": [seconds, ...]} and the npz with out [B, n] (and gx, gw
           for "fwd+vjp"), or {"error": "..."}.
The circuit comes from hdqnn.circuits through peers.ansatz_gates, the timing policy from
timing.warm_and_time, so this worker times exactly what the in-process adapters time.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one thread, like the peers
# Replies get their own copy of stdout; anything the imported libraries print goes to stderr
REPLIES = os.fdopen(os.dup(sys.stdout.fileno()), "w")
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchquantum as tq  # noqa: E402
import torchquantum.functional as tqf  # noqa: E402

from peers import ansatz_gates  # noqa: E402
from timing import warm_and_time  # noqa: E402

SUPPORTED_DTYPES = ("complex64",)  # TorchQuantum's state dtype is fixed at complex64
GATE_FUNCTIONS = {"ry": tqf.ry, "rz": tqf.rz, "cx": tqf.cnot}


def make_circuit(n: int, layers: int, batch: int):
    """Returns run(x [B, n], w [P]) -> <Z_q> [B, n] as torch tensors (graph kept if they require grad)."""
    gates = ansatz_gates(n, layers)
    qdev = tq.QuantumDevice(n_wires=n, bsz=batch)
    observables = [tq.PauliZ() for _ in range(n)]

    def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        qdev.reset_states(batch)
        for gate in gates:
            if gate.source is None:
                GATE_FUNCTIONS[gate.name](qdev, wires=list(gate.wires))
                continue
            angle = x[:, gate.index] if gate.source == "x" else w[gate.index].expand(batch)
            GATE_FUNCTIONS[gate.name](qdev, wires=gate.wires[0], params=angle)
        return tq.measurement.expval(qdev, wires=list(range(n)), observables=observables)

    return run


def serve(request: dict) -> dict:
    """Build, warm up, time and write the results of one request."""
    if request["dtype"] not in SUPPORTED_DTYPES:
        raise ValueError(f"TorchQuantum runs {SUPPORTED_DTYPES} only, got {request['dtype']}")
    with np.load(request["request"]) as data:
        x, w, g = (torch.from_numpy(data[k].astype(np.float32)) for k in ("x", "w", "g"))
    run = make_circuit(request["n"], request["layers"], x.shape[0])

    def forward():
        with torch.no_grad():
            return (run(x, w).numpy(),)

    def forward_grad():
        xt, wt = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = run(xt, wt)
        (out * g).sum().backward()
        return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()

    fn = forward if request["mode"] == "fwd" else forward_grad
    result, warmup_s, times = warm_and_time(fn, request["repeat"], request["budget_s"], request["slow_call_s"])
    np.savez(request["result"], **dict(zip(("out", "gx", "gw"), result)))
    return {"warmup_s": warmup_s, "times": times}


def main() -> None:
    torch.set_num_threads(1)
    for line in sys.stdin:
        try:
            reply = serve(json.loads(line))
        except Exception as exc:  # reported to the harness, which marks this peer's cell failed
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        REPLIES.write(json.dumps(reply) + "\n")
        REPLIES.flush()


if __name__ == "__main__":
    main()
