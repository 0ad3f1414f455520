"""Noisy simulation benchmark: hdqnn's density-matrix engines (compiled C++ and its Numba twin; expval
and exact VJP) and trajectories, against Qiskit Aer's EstimatorV2 (method density_matrix), on the
hDQNN ansatz.

The circuit is ``hdqnn.ansatz.hardware_efficient(n, L)`` (RY encoding, RY/RZ rotations, CNOT
ring) with depolarizing(1e-3 one-qubit, 1e-2 two-qubit) then amplitude damping(1e-3) after every
gate; outputs <Z_q> on every wire; no readout error (Aer's estimator has none). Each point times
  expval    hdqnn.expval(..., noise=model, method="density_matrix"), [B, n], on the engine hdqnn
            picks (the compiled one where built: the "engine" line says which)
  vjp       hdqnn.vjp(..., noise=model): the exact VJP of the noisy expectations, same engine
  nb fwd, nb vjp   the same two on the Numba twin (HDQNN_BACKEND=numba; skipped with --no-numba or
            where the picked engine is already Numba)
  traj      hdqnn.expval(..., method="trajectories", trajectories=--traj), per batch (--no-traj skips)
  aer       EstimatorV2(options={"backend_options": {"method": "density_matrix"}}), one thread,
            all B parameter bindings in one run (skipped where Aer is missing or with --no-aer)
and checks hdqnn's expval against Aer on the batch. Median of --repeats runs (after a warm-up, so
the Numba JIT is not timed). The "engine" line gives the threads of the compiled engine, the last
line Numba's. On a loaded machine the wall times favour one-thread Aer; the "cpu" columns (process
CPU time, all threads) compare the work: "aer/hdqnn cpu" is the wall-time ratio a quiet machine
would give hdqnn on one thread.

    python bench/bench_noise.py                 # the issue's points
    python bench/bench_noise.py --quick         # smoke run
    python bench/bench_noise.py --points 6,4,256 8,4,64 --repeats 2
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # hdqnn from a checkout

import hdqnn  # noqa: E402
from hdqnn import noise  # noqa: E402
from hdqnn.backends import density  # noqa: E402

POINTS = ((4, 2, 256), (6, 4, 256), (8, 4, 64), (10, 10, 8))
QUICK_POINTS = ((4, 2, 32), (6, 2, 16))
P1, P2, GAMMA = 1e-3, 1e-2, 1e-3
ONE_QUBIT = ["ry", "rz"]


def noise_model() -> noise.NoiseModel:
    return (noise.NoiseModel()
            .add(noise.depolarizing(P1), gates=ONE_QUBIT)
            .add(noise.amplitude_damping(GAMMA), gates=ONE_QUBIT)
            .add(noise.depolarizing(P2, n_qubits=2), gates="cx")
            .add(noise.amplitude_damping(GAMMA).tensor(noise.amplitude_damping(GAMMA)), gates="cx"))


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds of the process, all threads, output)."""
    out = fn()  # warm-up (JIT, caches)
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def aer_runner(circuit: hdqnn.Circuit, x: np.ndarray, w: np.ndarray):
    """A callable running the batch on Aer's EstimatorV2 (density matrix), or None without Aer."""
    try:
        from qiskit import QuantumCircuit
        from qiskit.circuit import ParameterVector
        from qiskit.quantum_info import SparsePauliOp
        from qiskit_aer import noise as aer_noise
        from qiskit_aer.primitives import EstimatorV2
    except ImportError:
        return None
    n = circuit.n_qubits
    params = ParameterVector("x", n)
    qc = QuantumCircuit(n)
    for op in circuit.operations:
        qubits = [n - 1 - q for q in op.wires]  # hdqnn's wire 0 is Qiskit's top qubit
        if op.name == "cx":
            qc.cx(*qubits)
            continue
        angle = op.angles[0]
        value = params[angle.index] if isinstance(angle, hdqnn.Input) else float(w[angle.index])
        getattr(qc, op.name)(value, *qubits)
    model = aer_noise.NoiseModel()
    err1 = aer_noise.depolarizing_error(P1, 1).compose(aer_noise.amplitude_damping_error(GAMMA))
    ad = aer_noise.amplitude_damping_error(GAMMA)
    err2 = aer_noise.depolarizing_error(P2, 2).compose(ad.tensor(ad))
    model.add_all_qubit_quantum_error(err1, ONE_QUBIT)
    model.add_all_qubit_quantum_error(err2, ["cx"])
    estimator = EstimatorV2(options={"backend_options": {"method": "density_matrix", "noise_model": model,
                                                         "max_parallel_threads": 1}})
    obs = np.empty((n, 1), dtype=object)  # broadcast against the [B] bindings: evs [n, B]
    for q in range(n):
        obs[q, 0] = SparsePauliOp("I" * q + "Z" + "I" * (n - 1 - q))  # Qiskit labels: top qubit first

    def run() -> np.ndarray:
        result = estimator.run([(qc, obs, x)], precision=0.0).result()[0]
        return np.asarray(result.data.evs).T  # [B, n]

    return run


@contextlib.contextmanager
def numba_engine():
    """Noisy calls inside run on the Numba twin (HDQNN_BACKEND=numba)."""
    before = os.environ.get("HDQNN_BACKEND")
    os.environ["HDQNN_BACKEND"] = "numba"
    try:
        yield
    finally:
        if before is None:
            del os.environ["HDQNN_BACKEND"]
        else:
            os.environ["HDQNN_BACKEND"] = before


def point(text: str) -> tuple[int, int, int]:
    n, layers, batch = (int(v) for v in text.split(","))
    return n, layers, batch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny points, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--traj", type=int, default=100, help="trajectories per sample for the traj column")
    parser.add_argument("--no-aer", action="store_true")
    parser.add_argument("--no-numba", action="store_true", help="skip the Numba twin's columns")
    parser.add_argument("--no-traj", action="store_true", help="skip the trajectories column")
    parser.add_argument("--points", type=point, nargs="+", metavar="N,L,B", help="points to run instead of the "
                        "issue's")
    args = parser.parse_args(argv)
    points = args.points or (QUICK_POINTS if args.quick else POINTS)
    repeats = 1 if args.quick else args.repeats
    model = noise_model()
    engine = density.density_engine()
    with_numba = engine != "numba" and not args.no_numba
    nan = float("nan")
    threads = density._compiled().get_num_threads() if engine == "cpp" else None
    print(f"engine: {engine}" + (f", threads: {threads}" if threads else ""))
    print(f"{'n':>3} {'L':>3} {'B':>5} {'expval ms':>10} {'vjp ms':>9} {'vjp/fwd':>8} {'nb fwd ms':>10} "
          f"{'nb vjp ms':>10} {'traj ms':>9} {'aer ms':>9} {'aer/hdqnn':>10} {'aer/nb':>7} {'fwd cpu ms':>11} "
          f"{'vjp/fwd cpu':>12} {'aer cpu ms':>11} {'aer/hdqnn cpu':>14} {'max |diff|':>11}")
    for n, layers, batch in points:
        circuit = hdqnn.ansatz.hardware_efficient(n, layers)
        rng = np.random.default_rng(0)
        x = rng.uniform(-np.pi, np.pi, (batch, circuit.n_inputs))
        w = rng.uniform(-np.pi, np.pi, circuit.n_weights)
        g = rng.normal(size=(batch, n))

        def fwd():
            return hdqnn.expval(circuit, x, w, noise=model, method="density_matrix")

        def vjp():
            return hdqnn.vjp(circuit, x, w, g, noise=model, method="density_matrix")

        t_fwd, c_fwd, out = timed(fwd, repeats)
        t_vjp, c_vjp, _ = timed(vjp, repeats)
        t_nb_fwd = t_nb_vjp = nan
        if with_numba:
            with numba_engine():
                t_nb_fwd, _, _ = timed(fwd, repeats)
                t_nb_vjp, _, _ = timed(vjp, repeats)
        t_traj = nan
        if not args.no_traj:
            t_traj, _, _ = timed(lambda: hdqnn.expval(circuit, x, w, noise=model, method="trajectories",
                                                      trajectories=args.traj, seed=0), repeats)
        run = None if args.no_aer else aer_runner(circuit, x, w)
        t_aer, c_aer, diff = nan, nan, nan
        if run is not None:
            t_aer, c_aer, ref = timed(run, repeats)
            diff = float(np.abs(ref - out).max())
        print(f"{n:>3} {layers:>3} {batch:>5} {1e3 * t_fwd:>10.2f} {1e3 * t_vjp:>9.2f} {t_vjp / t_fwd:>8.2f} "
              f"{1e3 * t_nb_fwd:>10.2f} {1e3 * t_nb_vjp:>10.2f} {1e3 * t_traj:>9.2f} {1e3 * t_aer:>9.1f} "
              f"{t_aer / t_fwd:>10.1f} {t_aer / t_nb_fwd:>7.1f} {1e3 * c_fwd:>11.2f} {c_vjp / c_fwd:>12.2f} "
              f"{1e3 * c_aer:>11.1f} {c_aer / c_fwd:>14.1f} {diff:>11.2e}", flush=True)
    print(f"numba threads: {__import__('numba').get_num_threads()}")


if __name__ == "__main__":
    main()
