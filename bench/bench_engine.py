"""Engine benchmark: hdqnn against its peers on the hardware-efficient ansatz, side by side.

For every point (n qubits, layers, batch B), precision (complex128, complex64) and mode
  fwd      <Z_q> for every wire, [B, n]
  fwd+vjp  the forward and the gradients of sum(g * out) w.r.t. the inputs x [B, n] and the
           weights w [P] (or what the peer supports: see the legend under the table)
it times hdqnn at 1 and 2 threads (hdqnn.set_num_threads) and every installed peer at one
thread, checks every peer's output against hdqnn's on the same x, w (and hdqnn against the NumPy
oracle on a few samples), prints a table of median times, the ratio fastest peer / hdqnn and the
achieved fraction of the arithmetic floor (bench/floor.py: gate flops over this machine's
measured one-thread FMA peak), and writes one JSON line per measurement.

    python bench/bench_engine.py                 # the full run (~10 minutes when idle)
    python bench/bench_engine.py --quick         # CI smoke: tiny points, hdqnn + cheap peers
    python bench/bench_engine.py --points 8,4,256 12,4,256 --peers qulacs,tc-jax --dtype complex128

Peers (bench/peers.py, one adapter each): PennyLane default.qubit (broadcasting, backprop) and
lightning.qubit (adjoint), Qulacs, Qiskit Aer EstimatorV2, TensorCircuit-NG on JAX, qsim through
qsimcirq and TorchQuantum (its own venv, HDQNN_TQ_PYTHON, default /work/tqvenv/bin/python).
A peer that is not installed shows as "n/i"; nothing about it can crash the run.
"""
from __future__ import annotations

import os

# One thread for every peer: set before numpy, torch, jax or any OpenMP runtime is loaded
THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "QULACS_NUM_THREADS": "1",
}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
os.environ.update(THREAD_ENV)
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ siblings, also under `python -m`
import floor  # noqa: E402
import peers  # noqa: E402
from timing import median  # noqa: E402

# (n qubits, layers, batch, timed repetitions): fewer repetitions where one call is long
POINTS = ((4, 2, 256, 50), (8, 4, 256, 30), (10, 10, 256, 10), (12, 4, 256, 10), (16, 4, 64, 5), (20, 4, 8, 3))
QUICK_POINTS = ((4, 1, 8, 5), (6, 2, 16, 5))
DEFAULT_REPEAT = 10     # timed calls for a point given on the command line without its own count
QUICK_PEERS = ("qulacs", "qiskit-aer")  # import in well under a second; PennyLane and JAX take ~10 s
MODES = ("fwd", "fwd+vjp")
DTYPES = (peers.C128, peers.C64)
THREADS = (1, 2)
PEER_THREADS = (1,)
BUDGET_S = 1.5          # timed calls stop once a measurement has spent this long (after one call)
QUICK_BUDGET_S = 0.1
SLOW_CALL_S = 10.0      # a warm-up slower than this is the measurement (no second call)
MAX_CALL_S = 60.0       # a peer predicted slower than this per call is skipped
SEED = 1234
TOLERANCE = {peers.C128: 1e-8, peers.C64: 1e-4}  # max |peer - hdqnn| / max(1, max |hdqnn|)
ORACLE_SAMPLES = 2                 # hdqnn is checked against the NumPy oracle on this many samples
# The oracle's gradient reruns the circuit once per angle: past this, its forward on one sample only
ORACLE_GRAD_MAX_QUBITS = 12
ORACLE_FULL_BATCH_MAX_QUBITS = 8   # without hdqnn, the oracle is the reference up to here
TAPE_MEMORY_CAP_BYTES = 4 * 2**30  # backprop peers keeping more states than this are skipped
DEFAULT_JSON = Path(__file__).resolve().parent / "out" / "bench_engine.jsonl"  # bench/out/ is git-ignored
HDQNN_THREADS_AFTER = 1  # peers sharing an OpenMP runtime must not inherit hdqnn's thread count

STATUS_OK, STATUS_NA, STATUS_NOT_INSTALLED = "ok", "n/a", "n/i"
STATUS_MEMORY, STATUS_SLOW, STATUS_FAIL, STATUS_ERROR = "mem", "slow", "FAIL", "err"
LEGEND = {
    STATUS_NA: "not applicable: precision not supported, or no gradient API",
    STATUS_NOT_INSTALLED: "peer not installed",
    STATUS_MEMORY: f"skipped: backprop would keep more than {TAPE_MEMORY_CAP_BYTES / 2**30:.0f} GiB of states",
    STATUS_SLOW: "skipped: predicted slower per call than --max-call from the previous point",
    STATUS_FAIL: "output differs from hdqnn's: not timed",
    STATUS_ERROR: "the peer raised an error (message below the table)",
}


@dataclass(frozen=True)
class Point:
    n: int
    layers: int
    batch: int
    repeat: int

    @property
    def label(self) -> str:
        return f"{self.n},{self.layers},{self.batch}"


@dataclass
class Cell:
    """One measurement: an engine (at a thread count) on one point, mode and precision."""

    engine: str
    threads: int
    n: int
    layers: int
    batch: int
    mode: str
    dtype: str
    status: str
    median_s: Optional[float] = None
    min_s: Optional[float] = None
    times_s: list = field(default_factory=list)
    build_s: Optional[float] = None
    warmup_s: Optional[float] = None
    max_rel_err: Optional[float] = None
    computes: Optional[str] = None
    flops: Optional[float] = None               # general-gate model (bench/floor.py)
    floor_fraction: Optional[float] = None
    flops_specialised: Optional[float] = None   # RY real, RZ diagonal
    floor_fraction_specialised: Optional[float] = None
    note: str = ""


@dataclass
class Reference:
    """What every engine's output is checked against, on the full batch; None where unavailable."""

    source: str
    out: Optional[np.ndarray]
    gx: Optional[np.ndarray]
    gw: Optional[np.ndarray]
    oracle_error: Optional[float] = None  # hdqnn vs the NumPy oracle on ORACLE_SAMPLES samples


# ---------------------------------------------------------------- inputs and verification


def make_inputs(point: Point, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [B, n] and w [P] uniform in [-pi, pi), g [B, n] standard normal, in the run's precision."""
    rng = np.random.default_rng([SEED, point.n, point.layers, point.batch])
    real = peers.real_dtype(dtype)
    x = rng.uniform(-np.pi, np.pi, (point.batch, point.n)).astype(real)
    w = rng.uniform(-np.pi, np.pi, peers.n_weights(point.n, point.layers)).astype(real)
    g = rng.standard_normal((point.batch, point.n)).astype(real)
    return x, w, g


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(1, max |want|), in float64."""
    want = np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want)) / max(1.0, np.max(np.abs(want))))


def compare(result: tuple, reference: Reference) -> Optional[float]:
    """Largest relative error of (out, gx, gw) against the reference, over what both computed."""
    errors = [relative_error(got, want) for got, want in zip(result, (reference.out, reference.gx, reference.gw))
              if got is not None and want is not None]
    return max(errors) if errors else None


def check_against_oracle(point: Point, dtype: str, x, w, g) -> float:
    """hdqnn vs the NumPy oracle on the first ORACLE_SAMPLES samples with gradients up to
    ORACLE_GRAD_MAX_QUBITS qubits, the forward on one sample past it; raises AssertionError past
    the tolerance."""
    k = ORACLE_SAMPLES if point.n <= ORACLE_GRAD_MAX_QUBITS else 1
    xs, gs = x[:k], g[:k]
    hdqnn_built = peers.HDQNN.build(point.n, point.layers, dtype)
    oracle = peers.NUMPY_ORACLE.build(point.n, point.layers, dtype)
    if point.n <= ORACLE_GRAD_MAX_QUBITS:
        got, want = hdqnn_built.forward_grad(xs, w, gs), oracle.forward_grad(xs, w, gs)
    else:
        got, want = (hdqnn_built.forward(xs, w),), (oracle.forward(xs, w),)
    error = max(relative_error(a, b) for a, b in zip(got, want))
    if error > TOLERANCE[dtype]:
        raise AssertionError(f"hdqnn differs from the NumPy oracle at {point.label} {dtype}: {error:.2e}")
    return error


def make_reference(point: Point, dtype: str, x, w, g, hdqnn_missing: Optional[str]) -> Reference:
    """hdqnn on the full batch (checked against the oracle), else the oracle itself on small points."""
    if hdqnn_missing is None:
        import hdqnn

        hdqnn.set_num_threads(1)
        oracle_error = check_against_oracle(point, dtype, x, w, g)
        out, gx, gw = peers.HDQNN.build(point.n, point.layers, dtype).forward_grad(x, w, g)
        return Reference("hdqnn", np.asarray(out), np.asarray(gx), np.asarray(gw), oracle_error)
    if point.n <= ORACLE_FULL_BATCH_MAX_QUBITS:
        out, gx, gw = peers.NUMPY_ORACLE.build(point.n, point.layers, dtype).forward_grad(x, w, g)
        return Reference("numpy-ref", out, gx, gw)
    return Reference("none", None, None, None)


# ---------------------------------------------------------------- one engine on one point


def tape_memory_bytes(point: Point, dtype: str) -> float:
    """States a backprop peer keeps: one [B, 2**n] state per gate."""
    n_gates = len(peers.ansatz_gates(point.n, point.layers))
    return (n_gates + 1) * point.batch * 2.0**point.n * np.dtype(dtype).itemsize


def skip_reason(spec: peers.PeerSpec, point: Point, dtype: str, mode: str) -> Optional[tuple[str, str]]:
    """(status, note) when this engine does not run this cell, else None."""
    if dtype not in spec.dtypes:
        return STATUS_NA, f"{spec.name} runs {', '.join(sorted(spec.dtypes))} only"
    if mode == "fwd+vjp" and spec.grad is None:
        return STATUS_NA, f"{spec.name} has no gradient"
    if mode == "fwd+vjp" and spec.tape_memory and tape_memory_bytes(point, dtype) > TAPE_MEMORY_CAP_BYTES:
        return STATUS_MEMORY, f"backprop would keep ~{tape_memory_bytes(point, dtype) / 2**30:.1f} GiB"
    return None


@dataclass(frozen=True)
class Settings:
    """How long each measurement may take (see the constants at the top)."""

    budget_s: float
    slow_call_s: float
    max_call_s: float


def cost_scalings(point: Point) -> tuple[float, float]:
    """Two ways a call's time can grow, up to per-engine constants: per-sample-per-gate overhead
    (Python, tape and binding costs: samples x gates) and amplitude work (samples x 2**n x gates)."""
    overhead = point.batch * len(peers.ansatz_gates(point.n, point.layers))
    return float(overhead), overhead * 2.0**point.n


def measure_cell(spec, built, threads, point, dtype, mode, data, reference, settings) -> Cell:
    """Warm up, verify against the reference, then keep the timings (discarded on a mismatch)."""
    x, w, g = data
    cell = Cell(spec.name, threads, point.n, point.layers, point.batch, mode, dtype, STATUS_OK,
                computes=spec.grad if mode == "fwd+vjp" else "<Z_q> for every wire")
    result, cell.warmup_s, times = built.measure(mode, x, w, g, point.repeat, settings.budget_s,
                                                 settings.slow_call_s)
    cell.max_rel_err = compare(result, reference)
    if cell.max_rel_err is None:
        cell.note = "unverified: no reference for this point"
    elif cell.max_rel_err > TOLERANCE[dtype]:
        cell.status, cell.note = STATUS_FAIL, f"max relative error {cell.max_rel_err:.2e}"
        return cell
    if not times:
        times = [cell.warmup_s]
        cell.note = f"one call of {cell.warmup_s:.1f} s (slower than {settings.slow_call_s:g} s), warm-up included"
    cell.times_s = times
    cell.median_s, cell.min_s = median(times), min(times)
    return cell


class Predictor:
    """Predicts a peer's call time at a new point from its last measured point, so a peer that
    would take minutes per call is skipped instead of stalling the run. Conservative: the smaller
    of the two cost_scalings, so an overhead-bound peer (qsim, Lightning) is never skipped
    because its amplitude work grows."""

    def __init__(self, max_call_s: float):
        self.max_call_s = max_call_s
        self.last: dict[tuple, tuple[float, tuple[float, float]]] = {}

    def too_slow(self, key: tuple, point: Point) -> Optional[str]:
        if self.max_call_s <= 0 or key not in self.last:
            return None
        seconds, before = self.last[key]
        now = cost_scalings(point)
        predicted = seconds * min(a / b for a, b in zip(now, before))
        if predicted <= self.max_call_s:
            return None
        return f"predicted {predicted:.0f} s per call (> {self.max_call_s:g} s) from the previous point"

    def record(self, key: tuple, point: Point, cell: Cell) -> None:
        if cell.status == STATUS_OK:
            self.last[key] = (cell.median_s, cost_scalings(point))


def run_engine(spec, threads_list, point, dtype, data, reference, settings, predictor, missing) -> list[Cell]:
    """Every mode of one engine at each thread count; failures become cells, never exceptions."""
    cells = []
    built, build_s, build_error = None, None, None
    for mode in MODES:
        for threads in threads_list:
            base = Cell(spec.name, threads, point.n, point.layers, point.batch, mode, dtype, STATUS_OK)
            key = (spec.name, threads, mode, dtype)
            skip = (STATUS_NOT_INSTALLED, missing) if missing else skip_reason(spec, point, dtype, mode)
            if skip is None and spec is not peers.HDQNN and predictor.too_slow(key, point):
                skip = (STATUS_SLOW, predictor.too_slow(key, point))
            if skip is not None:
                base.status, base.note = skip
                cells.append(base)
                continue
            if built is None and build_error is None:
                start = time.perf_counter()
                try:
                    built = spec.build(point.n, point.layers, dtype)
                except Exception as exc:  # a broken peer is reported in its cell, the run goes on
                    build_error = f"build: {type(exc).__name__}: {exc}"
                build_s = time.perf_counter() - start
            if build_error is not None:
                base.status, base.note = STATUS_ERROR, build_error
                cells.append(base)
                continue
            try:
                if spec is peers.HDQNN:
                    import hdqnn

                    hdqnn.set_num_threads(threads)
                cell = measure_cell(spec, built, threads, point, dtype, mode, data, reference, settings)
            except Exception as exc:  # reported in the table and the JSON, and in the exit status
                base.status, base.note = STATUS_ERROR, f"{type(exc).__name__}: {exc}"
                cell = base
            finally:
                if spec is peers.HDQNN:
                    hdqnn.set_num_threads(HDQNN_THREADS_AFTER)
            cell.build_s = build_s
            predictor.record(key, point, cell)
            cells.append(cell)
    return cells


def add_floor(cells: list[Cell], peaks: dict[str, float]) -> None:
    """Fill flops and the achieved fraction of the floor (both models) for every cell."""
    for cell in cells:
        cell.flops = floor.gate_flops(cell.n, cell.layers, cell.batch, cell.mode, "general")
        cell.flops_specialised = floor.gate_flops(cell.n, cell.layers, cell.batch, cell.mode, "specialised")
        if cell.median_s:
            peak = peaks[cell.dtype]
            cell.floor_fraction = floor.floor_fraction(cell.flops, peak, cell.threads, cell.median_s)
            cell.floor_fraction_specialised = floor.floor_fraction(
                cell.flops_specialised, peak, cell.threads, cell.median_s)


# ---------------------------------------------------------------- the table


def format_ms(seconds: Optional[float]) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 1000 else f"{ms:.3g}"


def cell_text(cell: Optional[Cell]) -> str:
    if cell is None:
        return "-"
    return format_ms(cell.median_s) if cell.status == STATUS_OK else cell.status


def table(cells: list[Cell], engines: list[str], threads_list: tuple[int, ...]) -> str:
    """Rows: point x mode x dtype; columns: hdqnn per thread count, each peer, best peer, ratio, floor."""
    index = {(c.engine, c.threads, c.n, c.layers, c.batch, c.mode, c.dtype): c for c in cells}
    rows = sorted({(c.n, c.layers, c.batch, c.mode, c.dtype) for c in cells},
                  key=lambda r: (r[0], r[1], r[2], MODES.index(r[3]), DTYPES.index(r[4])))
    peer_names = [e for e in engines if e != "hdqnn"]
    header = (["n,L,B", "mode", "dtype"] + [f"hdqnn {t}t" for t in threads_list] + peer_names
              + ["best peer", "peer/hdqnn"] + [f"floor {t}t" for t in threads_list])
    lines = [header]
    for n, layers, batch, mode, dtype in rows:
        key = (n, layers, batch, mode, dtype)
        hd = [index.get(("hdqnn", t) + key) for t in threads_list]
        ps = [index.get((p, 1) + key) for p in peer_names]
        timed = [c for c in ps if c is not None and c.status == STATUS_OK]
        best = min(timed, key=lambda c: c.median_s) if timed else None
        hd1 = hd[0] if hd and hd[0] is not None and hd[0].status == STATUS_OK else None
        ratio = f"{best.median_s / hd1.median_s:.2f}x" if best and hd1 else "-"
        fractions = [f"{c.floor_fraction:.1%}" if c is not None and c.floor_fraction else "-" for c in hd]
        lines.append([f"{n},{layers},{batch}", mode, dtype.replace("complex", "c")] + [cell_text(c) for c in hd]
                     + [cell_text(c) for c in ps] + [best.engine if best else "-", ratio] + fractions)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(v.rjust(wd) for v, wd in zip(line, widths)) for line in lines)


def notes(cells: list[Cell], specs: list[peers.PeerSpec]) -> str:
    """The legend, what each engine's fwd+vjp computes, and every error or mismatch."""
    out = ["times: median milliseconds; peer/hdqnn = fastest peer / hdqnn at 1 thread (>1: hdqnn faster);",
           "floor = gate flops (every rotation a general 2x2) / (threads x one-thread peak) / time;",
           "  over 100% means fewer flops than that model (specialised RY/RZ, fusion): see bench/floor.py"]
    out += [f"  {k}: {v}" for k, v in LEGEND.items()]
    out += [f"  {s.name}: {s.note}; fwd+vjp gives {s.grad or 'nothing (no gradient)'}" for s in specs]
    seen = set()
    for c in cells:
        if c.note and c.status != STATUS_NA and (c.engine, c.note) not in seen:
            seen.add((c.engine, c.note))
            out.append(f"  {c.engine} [{c.status}] {c.note}")
    return "\n".join(out)


# ---------------------------------------------------------------- main


def parse_points(texts: list[str], repeat: Optional[int]) -> list[Point]:
    points = []
    for text in texts:
        parts = text.split(",")
        if len(parts) not in (3, 4) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"a point is n,layers,batch[,repeat] in positive integers, got {text!r}")
        n, layers, batch, *rest = (int(p) for p in parts)
        points.append(Point(n, layers, batch, repeat or (rest[0] if rest else DEFAULT_REPEAT)))
    return points


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", nargs="+", metavar="N,L,B[,R]",
                   help="points to run (default: the issue's six, or two tiny ones with --quick)")
    p.add_argument("--peers", default=None,
                   help=f"comma list from {','.join(peers.PEER_NAMES)}, 'all' or 'none' "
                        f"(default: all; with --quick: {','.join(QUICK_PEERS)})")
    p.add_argument("--threads", type=int, nargs="+", default=list(THREADS), help="hdqnn thread counts")
    p.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--repeat", type=int, default=None, help="timed calls per measurement (default: per point)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds per measurement after which timing stops "
                        f"(default {BUDGET_S}, quick {QUICK_BUDGET_S})")
    p.add_argument("--slow-call", type=float, default=SLOW_CALL_S,
                   help="seconds: a warm-up slower than this is the only call (default %(default)s)")
    p.add_argument("--max-call", type=float, default=MAX_CALL_S,
                   help="seconds: skip a peer predicted slower per call than this; 0 never skips (default %(default)s)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="JSON lines output (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny points, cheap peers, < 30 s")
    args = p.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    if any(t < 1 for t in args.threads):
        p.error("--threads must be >= 1")
    return args


def select_peers(text: Optional[str], quick: bool) -> list[peers.PeerSpec]:
    if text is None:
        names = list(QUICK_PEERS) if quick else list(peers.PEER_NAMES)
    elif text == "all":
        names = list(peers.PEER_NAMES)
    elif text == "none":
        names = []
    else:
        names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in peers.PEER_NAMES]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose from {', '.join(peers.PEER_NAMES)}")
    return [s for s in peers.PEERS if s.name in names]


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_record(peaks: dict[str, float], versions: dict, args: argparse.Namespace, settings: Settings) -> dict:
    return {
        "record": "machine", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(),
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "loadavg": os.getloadavg(), "python": platform.python_version(),
        "peak_flops_1thread": peaks, "peak_method": "numba FMA loop, fastmath contract, L1-resident",
        "thread_env": THREAD_ENV, "xla_flags": os.environ["XLA_FLAGS"], "versions": versions,
        "argv": sys.argv[1:], "quick": args.quick, "settings": asdict(settings),
    }


def hdqnn_versions(hdqnn_missing: Optional[str]) -> dict:
    """hdqnn's version and the backend its expval runs on (cpp, numba or numpy)."""
    if hdqnn_missing is not None:
        return {"missing": hdqnn_missing}
    import hdqnn

    return {"hdqnn": hdqnn.__version__, "backend": hdqnn.get_backend().name, "status": hdqnn.backend_status()}


def write_record(stream, record: dict) -> None:
    """One JSON line, flushed so the file is readable while the run goes on."""
    stream.write(json.dumps(record) + "\n")
    stream.flush()


def run_point(point, dtype, specs, availability, threads_list, settings, predictor, hdqnn_missing,
              peaks, jsonl) -> list[Cell]:
    """hdqnn and every peer on one point and precision; writes the point's JSON lines."""
    data = make_inputs(point, dtype)
    reference = make_reference(point, dtype, *data, hdqnn_missing)
    write_record(jsonl, {"record": "point", "n": point.n, "layers": point.layers, "batch": point.batch,
                         "dtype": dtype, "reference": reference.source, "hdqnn_vs_oracle": reference.oracle_error})
    cells = run_engine(peers.HDQNN, threads_list, point, dtype, data, reference, settings, predictor, hdqnn_missing)
    for spec in specs:
        cells += run_engine(spec, PEER_THREADS, point, dtype, data, reference, settings, predictor,
                            availability[spec.name][0])
    add_floor(cells, peaks)
    for cell in cells:
        write_record(jsonl, {"record": "time", **asdict(cell)})
    print(f"  done {point.label} {dtype} (reference: {reference.source})", flush=True)
    return cells


def main(argv=None) -> int:
    args = parse_args(argv)
    table_points = QUICK_POINTS if args.quick else POINTS
    points = (parse_points(args.points, args.repeat) if args.points
              else [Point(*p[:3], args.repeat or p[3]) for p in table_points])
    budget_s = args.budget if args.budget is not None else (QUICK_BUDGET_S if args.quick else BUDGET_S)
    settings = Settings(budget_s, args.slow_call, args.max_call)
    predictor = Predictor(settings.max_call_s)
    specs = select_peers(args.peers, args.quick)
    threads_list = tuple(args.threads)

    hdqnn_missing = peers.hdqnn_engine_missing()
    availability = {s.name: peers.availability(s) for s in specs}
    versions = {name: v for name, (_, v) in availability.items()}
    versions["hdqnn"] = hdqnn_versions(hdqnn_missing)
    peaks = {dtype: floor.measure_peak(peers.real_dtype(dtype)) for dtype in args.dtype}
    print(f"hdqnn backend: {versions['hdqnn'].get('backend', hdqnn_missing)}; one-thread peak: "
          + ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items())
          + f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)

    cells: list[Cell] = []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(args.json, "w") as jsonl:  # written as the run goes: an interrupted run keeps its data
            write_record(jsonl, machine_record(peaks, versions, args, settings))
            for point in points:
                for dtype in args.dtype:
                    cells += run_point(point, dtype, specs, availability, threads_list, settings, predictor,
                                       hdqnn_missing, peaks, jsonl)
    finally:
        peers.close_workers()

    print(table(cells, ["hdqnn"] + [s.name for s in specs], threads_list))
    print(notes(cells, [peers.HDQNN] + specs))
    print(f"wrote {args.json}")
    return 1 if any(c.status in (STATUS_FAIL, STATUS_ERROR) for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
