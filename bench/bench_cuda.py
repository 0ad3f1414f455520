"""GPU engine benchmark: hdqnn's CUDA engines on the hardware-efficient ansatz, with GPU peers.

First it measures the card: device-to-device copy bandwidth and matrix-product rates (float64 and
float32, TF32 off). Then, for every point (n qubits, layers, batch B), precision and mode
  fwd      <Z_q> for every wire, [B, n]
  fwd+vjp  the forward, then the adjoint VJP of sum(g * out) w.r.t. the inputs [B, n] and weights [P]
it times each engine and peer with inputs already on the GPU (torch CUDA tensors; CUDA events),
checks every result against hdqnn's CPU engine on a few samples, and prints a table of median
times, samples/s, the model arithmetic rate against the measured matrix-product rate, and for
the global-memory path the model state traffic against the measured copy bandwidth. One JSON line
per measurement goes to --json (default bench/out/bench_cuda.jsonl).

    python bench/bench_cuda.py                  # the issue's sweep (a few minutes on an H100)
    python bench/bench_cuda.py --quick          # smoke run: tiny points
    python bench/bench_cuda.py --points 10,10,4096 --engines cuda --peers torch --dtype complex64

Engines: cuda (hdqnn._core_cuda), cupy (NVRTC). Peers, each where importable (else "n/i", and a
peer error is reported, never fatal): torch (a batched statevector in plain torch ops, autograd
for the VJP: the generic-tensor-ops approach), custatevec (cuQuantum's apply_matrix_batched, one
call per gate; forward only), lightning.gpu (PennyLane, adjoint), aer-gpu (Qiskit Aer
EstimatorV2 on the GPU; forward only).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ siblings
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # hdqnn from a checkout

from hdqnn.backends import device_program as dp  # noqa: E402
from hdqnn.circuits import ansatz, compile_observables  # noqa: E402

#: The issue's points: (n, layers, batch).
BATCH_POINTS = tuple((10, 10, b) for b in (256, 4096, 65536))
QUBIT_POINTS = tuple((n, 10, 256) for n in range(4, 21))
QUICK_POINTS = ((4, 2, 64), (10, 2, 256))
MODES = ("fwd", "fwd+vjp")
DTYPES = ("complex128", "complex64")
ENGINES = ("cuda", "cupy")
PEERS = ("torch", "custatevec", "lightning.gpu", "aer-gpu")
REPEAT = 20            # timed calls at most
BUDGET_S = 2.0         # a measurement stops once its timed calls have spent this long
VERIFY_SAMPLES = 4     # samples checked against the CPU engine
COPY_BYTES = 1 << 30   # buffer of the bandwidth measurement
MATMUL_SIZE = 8192     # n of the n x n x n matrix products
PEER_MAX_BATCH = 4096  # peers that loop over samples on the host stop here
PEER_MAX_QUBITS = 20
#: The torch peer keeps one state per gate for autograd: skipped when that exceeds this share of the card.
TORCH_PEER_MEMORY_FRACTION = 0.5
# flops of one amplitude-pair update by matrix shape (complex mul 6, add 2), and per quad
PAIR_FLOPS = {dp.SHAPE_GENERAL: 28, dp.SHAPE_REAL: 12, dp.SHAPE_DIAGONAL: 12}
EXPVAL_FLOPS_PER_AMPLITUDE = 4  # |a|^2 and a signed add, per term
VJP_FLOP_FACTOR = 3.0           # forward + a backward sweep over two states with cross terms
REAL = {"complex128": np.float64, "complex64": np.float32}


# ------------------------------------------------------------------------------ timing
def time_gpu(fn: Callable[[], object], torch, repeat: int = REPEAT, budget_s: float = BUDGET_S):
    """(result of a warm-up call, median seconds of the timed calls), timed with CUDA events."""
    result = fn()
    torch.cuda.synchronize()
    times, spent = [], 0.0
    while len(times) < repeat and (not times or spent < budget_s):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
        spent += times[-1]
    return result, statistics.median(times)


def measure_card(torch) -> dict:
    """Device-to-device copy bandwidth (bytes read + written per second) and matmul rates."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    _, copy_s = time_gpu(lambda: dst.copy_(src), torch)
    torch.backends.cuda.matmul.allow_tf32 = False
    rates = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype, device="cuda")
        b = torch.randn_like(a)
        _, mm_s = time_gpu(lambda: a @ b, torch, repeat=5)
        rates[name] = 2 * MATMUL_SIZE**3 / mm_s
    props = torch.cuda.get_device_properties(0)
    return {"device": props.name, "sm_count": props.multi_processor_count,
            "copy_bytes_per_s": 2 * COPY_BYTES / copy_s, "matmul_flops_per_s": rates}


# ------------------------------------------------------------------------- model counts
def model_flops(n: int, layers: int) -> float:
    """Arithmetic of one forward <Z> pass of one sample, from the fused plan the kernels run."""
    prog = ansatz.hardware_efficient(n, layers).compile()
    plan = dp.make_plan(prog)
    dim = 1 << n
    flops = dim * n * 6.0  # product-state preparation
    for kind, shape, *_ in plan.ops[plan.n_initial:]:
        if kind in (dp.OP_FUSED_1Q, dp.OP_CONTROLLED):
            flops += PAIR_FLOPS[shape] * dim / (2 if kind == dp.OP_FUSED_1Q else 4)
        elif kind == dp.OP_FUSED_1Q_CX:
            flops += 2 * PAIR_FLOPS[shape] * dim / 4
    return flops + EXPVAL_FLOPS_PER_AMPLITUDE * dim * n


def model_state_bytes(n: int, layers: int, dtype: str, mode: str) -> float:
    """Global-memory traffic of one sample on the global path: every op reads and writes the state(s)."""
    plan = dp.make_plan(ansatz.hardware_efficient(n, layers).compile())
    passes = len(plan.ops) - plan.n_initial + 1
    state = (1 << n) * np.dtype(dtype).itemsize
    return 2 * state * passes * (1 if mode == "fwd" else 1 + 2 * 2)  # backward: psi and lambda


def z_signs(n: int, torch):
    """[2**n, n]: the eigenvalue of Z on wire q of basis state j (wire 0 most significant)."""
    index = torch.arange(1 << n, device="cuda")[:, None]
    shifts = torch.arange(n - 1, -1, -1, device="cuda")
    return 1 - 2 * ((index >> shifts) & 1)


# ------------------------------------------------------------------------------ engines
@dataclass
class Point:
    n: int
    layers: int
    batch: int
    dtype: str
    mode: str


_ENGINES: dict = {}  # one instance per engine: the cupy backend compiles its kernels once


def hdqnn_runner(engine_name: str, point: Point, torch, x, w, g):
    """A callable running one hdqnn call on device tensors, and the engine (for its launch)."""
    from hdqnn.backends.cuda import CudaBackend
    from hdqnn.backends.cupy_backend import CupyBackend

    if engine_name not in _ENGINES:
        _ENGINES[engine_name] = CudaBackend() if engine_name == "cuda" else CupyBackend()
    engine = _ENGINES[engine_name]
    prog = ansatz.hardware_efficient(point.n, point.layers).compile()
    paulis = compile_observables(None, point.n)
    stream = torch.cuda.current_stream().cuda_stream
    dtype = np.dtype(point.dtype)

    def run():
        out = torch.as_tensor(engine.expval(prog, x, w, paulis, dtype, stream=stream), device="cuda")
        if point.mode == "fwd":
            return out, None, None
        gi, gw = engine.vjp(prog, x, w, paulis, g, dtype, stream=stream)
        return out, torch.as_tensor(gi, device="cuda"), torch.as_tensor(gw, device="cuda")

    return run, engine


def torch_runner(point: Point, torch, x, w, g):
    """Batched statevector [B, 2, ..., 2] in torch ops; gradients by autograd."""
    from peers import ansatz_gates

    gates = ansatz_gates(point.n, point.layers)
    n, cdtype = point.n, getattr(torch, point.dtype)

    def rotation(name, theta):
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        if name == "ry":
            m = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2).to(cdtype)
        else:
            e = torch.exp(-0.5j * theta.to(cdtype))
            zero = torch.zeros_like(e)
            m = torch.stack([torch.stack([e, zero], -1), torch.stack([zero, e.conj()], -1)], -2)
        return m if m.dim() == 3 else m.expand(x.shape[0], 2, 2)

    def forward(xt, wt):
        psi = torch.zeros((xt.shape[0], 1 << n), dtype=cdtype, device="cuda")
        psi[:, 0] = 1
        psi = psi.reshape((xt.shape[0],) + (2,) * n)
        for gate in gates:
            if gate.name == "cx":
                c, t = gate.wires
                idx = [slice(None)] * (n + 1)
                idx[1 + c] = 1
                block = psi[tuple(idx)].flip(1 + t if t < c else t)  # target axis once the control's is gone
                psi = torch.stack([psi.select(1 + c, 0), block], dim=1 + c)
                continue
            theta = xt[:, gate.index] if gate.source == "x" else wt[gate.index]
            m = rotation(gate.name, theta)
            q = gate.wires[0]
            psi = torch.movedim(torch.einsum("bij,bj...->bi...", m, torch.movedim(psi, 1 + q, 1)), 1, 1 + q)
        probs = (psi.abs() ** 2).reshape(xt.shape[0], -1)
        return probs @ z_signs(n, torch).to(probs.dtype)

    def run():
        if point.mode == "fwd":
            with torch.no_grad():
                return forward(x, w), None, None
        xt, wt = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
        out = forward(xt, wt)
        (out * g).sum().backward()
        return out.detach(), xt.grad, wt.grad

    return run


def custatevec_runner(point: Point, torch, x, w, g):
    """cuStateVec: a [B, 2**n] batch, one apply_matrix_batched per gate (per-sample matrices for
    inputs, one broadcast matrix for weights and cx); <Z_q> from |psi|^2 in torch."""
    if point.mode != "fwd":
        return None
    try:
        from cuquantum.bindings import custatevec as cusv
    except ImportError:
        from cuquantum import custatevec as cusv
    from cuquantum import ComputeType, cudaDataType
    from peers import ansatz_gates

    n, batch, cdtype = point.n, x.shape[0], getattr(torch, point.dtype)
    double = point.dtype == "complex128"
    sv_type = cudaDataType.CUDA_C_64F if double else cudaDataType.CUDA_C_32F
    compute = ComputeType.COMPUTE_64F if double else ComputeType.COMPUTE_32F
    handle = cusv.create()
    cusv.set_stream(handle, torch.cuda.current_stream().cuda_stream)
    gates = ansatz_gates(n, point.layers)
    x_matrix = torch.tensor([[0, 1], [1, 0]], dtype=cdtype, device="cuda")
    indices = list(range(batch))

    def matrices(gate):
        theta = x[:, gate.index] if gate.source == "x" else w[gate.index].reshape(1)
        c, s = torch.cos(theta / 2).to(cdtype), torch.sin(theta / 2).to(cdtype)
        if gate.name == "ry":
            m = torch.stack([c, -s, s, c], -1)
        else:
            e = torch.exp(-0.5j * theta.to(cdtype))
            m = torch.stack([e, torch.zeros_like(e), torch.zeros_like(e), e.conj()], -1)
        return m.contiguous()

    def apply(psi, m, target, controls, per_sample):
        count = batch if per_sample else 1
        map_type = cusv.MatrixMapType.MATRIX_INDEXED if per_sample else cusv.MatrixMapType.BROADCAST
        cusv.apply_matrix_batched(handle, psi.data_ptr(), sv_type, n, batch, 1 << n, map_type,
                                  indices if per_sample else 0, m.data_ptr(), sv_type, cusv.MatrixLayout.ROW, 0,
                                  count, [target], 1, controls, [1] * len(controls), len(controls), compute, 0, 0)

    signs = z_signs(n, torch)

    def run():
        psi = torch.zeros((batch, 1 << n), dtype=cdtype, device="cuda")
        psi[:, 0] = 1
        for gate in gates:  # cuStateVec index bit k is qubit k: hdqnn wire q is bit n - 1 - q
            if gate.name == "cx":
                apply(psi, x_matrix, n - 1 - gate.wires[1], [n - 1 - gate.wires[0]], False)
            else:
                apply(psi, matrices(gate), n - 1 - gate.wires[0], [], gate.source == "x")
        return (psi.abs() ** 2) @ signs.to(x.dtype), None, None

    return run


def host_peer_runner(name: str, point: Point, torch, x, w, g):
    """lightning.gpu and Aer GPU take host arrays: their time includes the transfers."""
    import peers

    real = REAL[point.dtype]
    xh, wh, gh = (t.cpu().numpy().astype(real) for t in (x, w, g))
    if name == "lightning.gpu":
        import pennylane as qml

        device = qml.device("lightning.gpu", wires=point.n, c_dtype=np.dtype(point.dtype).type)
        built = peers._torch_qnode_built(peers._pennylane_qnode(point.n, point.layers, device, "adjoint"))
    else:
        built = aer_gpu_built(point)
    if point.mode == "fwd":
        return lambda: (torch.as_tensor(built.forward(xh, wh), device="cuda"), None, None)
    if built.forward_grad is None:
        return None

    def run():
        out, gx, gw = built.forward_grad(xh, wh, gh)
        return (torch.as_tensor(out, device="cuda"), torch.as_tensor(gx, device="cuda"),
                torch.as_tensor(gw, device="cuda"))

    return run


def aer_gpu_built(point: Point):
    """bench/peers.py's Aer adapter with the statevector on the GPU."""
    import peers
    from qiskit_aer.primitives import EstimatorV2

    original = EstimatorV2.__init__

    def on_gpu(self, *args, options=None, **kwargs):
        options = dict(options or {})
        backend = dict(options.get("backend_options", {}))
        backend.update(device="GPU", max_parallel_threads=0)
        options["backend_options"] = backend
        original(self, *args, options=options, **kwargs)

    EstimatorV2.__init__ = on_gpu
    try:
        return peers.build_qiskit_aer(point.n, point.layers, point.dtype)
    finally:
        EstimatorV2.__init__ = original


# --------------------------------------------------------------------------------- harness
def verify(point: Point, result, x, w, g) -> float:
    """Largest difference to hdqnn's CPU engine on the first VERIFY_SAMPLES samples."""
    from hdqnn import get_backend

    cpu = get_backend()
    prog = ansatz.hardware_efficient(point.n, point.layers).compile()
    paulis = compile_observables(None, point.n)
    k = min(VERIFY_SAMPLES, point.batch)
    real = np.float64
    xs, ws, gs = (t.detach().cpu().numpy().astype(real) for t in (x[:k], w, g[:k]))
    out, gi, gw = result
    err = np.abs(out[:k].cpu().numpy() - cpu.expval(prog, xs, ws, paulis, np.complex128)).max()
    if gi is not None and point.batch <= VERIFY_SAMPLES:  # shared-weight gradients sum the batch
        ri, rw = cpu.vjp(prog, xs, ws, paulis, gs, np.complex128)
        err = max(err, np.abs(gi.cpu().numpy() - ri).max(), np.abs(gw.cpu().numpy() - rw).max())
    elif gi is not None:
        ri, _ = cpu.vjp(prog, xs, ws, paulis, gs, np.complex128)
        err = max(err, np.abs(gi[:k].cpu().numpy() - ri).max())
    return float(err)


def torch_peer_fits(point: Point, torch) -> bool:
    """Whether the torch peer's states (one per gate under autograd) fit the card."""
    from peers import ansatz_gates

    states = len(ansatz_gates(point.n, point.layers)) if point.mode != "fwd" else 2
    need = states * point.batch * (1 << point.n) * np.dtype(point.dtype).itemsize
    return need < TORCH_PEER_MEMORY_FRACTION * torch.cuda.get_device_properties(0).total_memory


def runner_for(name: str, point: Point, torch, x, w, g):
    if name in ENGINES:
        return hdqnn_runner(name, point, torch, x, w, g)
    if name == "torch":
        return (torch_runner(point, torch, x, w, g) if torch_peer_fits(point, torch) else None), None
    if point.batch > PEER_MAX_BATCH or point.n > PEER_MAX_QUBITS:
        return None, None
    if name == "custatevec":
        return custatevec_runner(point, torch, x, w, g), None
    return host_peer_runner(name, point, torch, x, w, g), None


def measure(name: str, point: Point, torch, card: dict) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(point.n * 1000 + point.batch)
    real = getattr(torch, REAL[point.dtype].__name__)
    n_w = ansatz.hardware_efficient(point.n, point.layers).n_weights
    x = torch.rand(point.batch, point.n, generator=gen, device="cuda", dtype=real) * math.pi
    w = torch.rand(n_w, generator=gen, device="cuda", dtype=real) * math.pi
    g = torch.ones(point.batch, point.n, device="cuda", dtype=real)
    row = {"engine": name, **asdict(point)}
    try:
        run, engine = runner_for(name, point, torch, x, w, g)
        if run is None:
            return {**row, "status": "n/a"}
        result, seconds = time_gpu(run, torch)
    except ImportError as exc:
        return {**row, "status": "n/i", "error": str(exc)}
    except Exception as exc:  # a peer's failure is a result, not a crash of the benchmark
        return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    flops = model_flops(point.n, point.layers) * point.batch * (1 if point.mode == "fwd" else 1 + VJP_FLOP_FACTOR)
    row.update(status="ok", seconds=seconds, samples_per_s=point.batch / seconds, flops_per_s=flops / seconds,
               flops_fraction=flops / seconds / card["matmul_flops_per_s"][REAL[point.dtype].__name__],
               max_error=verify(point, result, x, w, g))
    launch = getattr(engine, "last_launch", None) if engine is not None else None
    if launch is not None:
        launch = launch if isinstance(launch, dict) else asdict(launch)
        row["launch"] = launch
        if not launch["shared_state"]:
            traffic = model_state_bytes(point.n, point.layers, point.dtype, point.mode) * point.batch
            row["bandwidth_fraction"] = traffic / seconds / card["copy_bytes_per_s"]
    return row


def print_row(row: dict) -> None:
    head = (f"{row['engine']:>13} n={row['n']:<2} L={row['layers']:<2} B={row['batch']:<6} {row['dtype']:>10} "
            f"{row['mode']:>7}")
    if row["status"] != "ok":
        print(f"{head}  {row['status']}  {row.get('error', '')[:90]}")
        return
    extra = f"  bw {row['bandwidth_fraction']:.1%}" if "bandwidth_fraction" in row else ""
    print(f"{head}  {row['seconds'] * 1e3:9.3f} ms  {row['samples_per_s']:12.0f} samples/s  "
          f"{row['flops_per_s'] / 1e12:6.2f} TFLOP/s ({row['flops_fraction']:.1%} of matmul){extra}  "
          f"err {row['max_error']:.1e}")


def parse_points(texts: Optional[list[str]], quick: bool) -> tuple:
    if texts:
        return tuple(tuple(int(v) for v in t.split(",")) for t in texts)
    return QUICK_POINTS if quick else BATCH_POINTS + QUBIT_POINTS


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny points (smoke run)")
    parser.add_argument("--points", nargs="*", help="n,layers,batch triples")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--peers", default=",".join(PEERS), help="comma list, or '' for none")
    parser.add_argument("--dtype", default=",".join(DTYPES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent / "out" / "bench_cuda.jsonl"))
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark", file=sys.stderr)
        return 2
    card = measure_card(torch)
    print(f"# {card['device']}, {card['sm_count']} SMs: device-to-device copy "
          f"{card['copy_bytes_per_s'] / 1e9:.0f} GB/s; matmul "
          + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in card["matmul_flops_per_s"].items()))
    names = [e for e in args.engines.split(",") if e] + [p for p in args.peers.split(",") if p]
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("a") as out:
        out.write(json.dumps({"card": card, "time": time.time()}) + "\n")
        for n, layers, batch in parse_points(args.points, args.quick):
            for dtype in args.dtype.split(","):
                for mode in args.modes.split(","):
                    for name in names:
                        row = measure(name, Point(n, layers, batch, dtype, mode), torch, card)
                        print_row(row)
                        out.write(json.dumps(row, default=str) + "\n")
                        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
