"""Noisy simulation benchmark: hdqnn's density-matrix engines (compiled C++ and its Numba twin; expval
and exact VJP) and trajectories, against Qiskit Aer's EstimatorV2 (method density_matrix), PennyLane's
default.mixed, Cirq, Qulacs and TensorCircuit-NG (JAX), on the hDQNN ansatz.

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
            all B parameter bindings in one run
  pennylane default.mixed, the B inputs broadcast in one QNode call (a loop over them only where
            broadcasting fails: the "peers" line says which)
  cirq      DensityMatrixSimulator (complex128), the B inputs as one parameter sweep
  qulacs    DensityMatrix through a ParametricQuantumCircuit, one sample after another
  tensorcircuit  TensorCircuit-NG's DMCircuit on JAX (complex128), one sample's circuit under
            jax.vmap over the batch and jax.jit; the timing excludes the compilation (the warm-up
            call on the same shapes compiles); XLA on one thread (XLA_FLAGS, set at import)
and checks hdqnn's expval against Aer on the batch ("max |diff|"), each other peer against hdqnn
("|d| <peer>"). Peers run on one thread (BLAS and OpenMP pools limited through threadpoolctl
where installed; start the script with OMP_NUM_THREADS=1 as well). --peers picks them (default:
every one that imports; --no-aer drops Aer); a peer whose one-sample time extrapolates to more than
--peer-limit seconds for the batch shows "slow" at that point. "fastest peer" names the quickest
peer at the point, "fastest/hdqnn" its wall time over hdqnn's expval. Median of --repeats runs
(after a warm-up, so the Numba JIT is not timed). hdqnn's engines run on --threads threads
(default 1, as the peers), set once for the whole run: the "engine" line gives them, the last line
Numba's pool (its kernels use --threads of it). On a loaded machine the wall times favour
one-thread Aer; the "cpu" columns (process CPU time, all threads) compare the work: "aer/hdqnn cpu"
is the wall-time ratio a quiet machine would give hdqnn on one thread.

    python bench/bench_noise.py                 # the issue's points
    python bench/bench_noise.py --quick         # smoke run
    python bench/bench_noise.py --points 6,4,256 8,4,64 --repeats 2
    python bench/bench_noise.py --peers aer,qulacs
    python bench/bench_noise.py --peers tensorcircuit
"""
from __future__ import annotations

import os

# XLA (the tensorcircuit peer's JAX) reads its thread flags when its CPU backend starts: set them
# before anything can start it, so that peer runs on one thread like the others (as bench_engine.py)
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

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


def angle_value(angle, x: np.ndarray, w: np.ndarray):
    """An operation's angle: its (scaled) input column of ``x`` [..., n_inputs], or its weight."""
    if isinstance(angle, hdqnn.Input):
        return angle.scale * x[..., angle.index]
    return angle.scale * float(w[angle.index])


def aer_runner(circuit: hdqnn.Circuit, w: np.ndarray):
    """run(x) -> [B, n]: the batch on Aer's EstimatorV2 (density matrix), all bindings in one run."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer import noise as aer_noise
    from qiskit_aer.primitives import EstimatorV2

    n = circuit.n_qubits
    params = ParameterVector("x", circuit.n_inputs)
    qc = QuantumCircuit(n)
    for op in circuit.operations:
        qubits = [n - 1 - q for q in op.wires]  # hdqnn's wire 0 is Qiskit's top qubit
        if op.name == "cx":
            qc.cx(*qubits)
            continue
        angle = op.angles[0]
        value = params[angle.index] * angle.scale if isinstance(angle, hdqnn.Input) else angle_value(angle, None, w)
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

    def run(x: np.ndarray) -> np.ndarray:
        result = estimator.run([(qc, obs, x)], precision=0.0).result()[0]
        return np.asarray(result.data.evs).T  # [B, n]

    return run


def pennylane_runner(circuit: hdqnn.Circuit, w: np.ndarray):
    """run(x) -> [B, n] on PennyLane's default.mixed, the B inputs broadcast in one QNode call, or
    a loop over them where broadcasting fails (``run.mode`` says which)."""
    import pennylane as qml

    n = circuit.n_qubits
    # PennyLane's DepolarizingChannel(p) puts p / 3 on each Pauli, hdqnn's (as Qiskit's) p / 4.
    # It has no two-qubit depolarizing channel: hdqnn's Kraus operators carry the same wire order.
    depol2 = [np.asarray(k) for k in noise.depolarizing(P2, n_qubits=2).kraus_ops]
    gates = {"ry": qml.RY, "rz": qml.RZ}

    @qml.qnode(qml.device("default.mixed", wires=n), diff_method=None)
    def qnode(x):
        for op in circuit.operations:
            if op.name == "cx":
                qml.CNOT(wires=list(op.wires))
                qml.QubitChannel(depol2, wires=list(op.wires))
                for q in op.wires:
                    qml.AmplitudeDamping(GAMMA, wires=q)
                continue
            q = op.wires[0]
            gates[op.name](angle_value(op.angles[0], x, w), wires=q)
            qml.DepolarizingChannel(3 * P1 / 4, wires=q)
            qml.AmplitudeDamping(GAMMA, wires=q)
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    def broadcast(x: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(v) for v in qnode(x)], axis=-1)  # [B, n]

    def loop(x: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(qnode(row), dtype=float) for row in x])

    probe = np.zeros((2, circuit.n_inputs))
    try:
        ok = broadcast(probe).shape == (2, n)
    except Exception:  # noqa: BLE001 - any failure of broadcasting means: loop instead
        ok = False
    run = broadcast if ok else loop
    run.mode = "broadcast" if ok else "loop"
    return run


def cirq_runner(circuit: hdqnn.Circuit, w: np.ndarray):
    """run(x) -> [B, n] on Cirq's DensityMatrixSimulator (complex128), the B inputs as one sweep."""
    import cirq
    import sympy

    n = circuit.n_qubits
    qubits = cirq.LineQubit.range(n)
    symbols = sympy.symbols(f"x0:{circuit.n_inputs}")
    gates = {"ry": cirq.ry, "rz": cirq.rz}
    ops = []
    for op in circuit.operations:
        wires = [qubits[q] for q in op.wires]
        if op.name == "cx":
            # Cirq's depolarize(p, n_qubits=2) puts p / 15 on each non-identity Pauli pair, hdqnn's p / 16.
            ops += [cirq.CNOT(*wires), cirq.depolarize(15 * P2 / 16, n_qubits=2)(*wires)]
            ops += [cirq.amplitude_damp(GAMMA)(q) for q in wires]
            continue
        angle = op.angles[0]
        value = angle.scale * symbols[angle.index] if isinstance(angle, hdqnn.Input) else angle_value(angle, None, w)
        ops += [gates[op.name](value)(wires[0]), cirq.depolarize(3 * P1 / 4)(wires[0]),
                cirq.amplitude_damp(GAMMA)(wires[0])]
    program = cirq.Circuit(ops)
    simulator = cirq.DensityMatrixSimulator(dtype=np.complex128)
    observables = [cirq.Z(q) for q in qubits]

    def run(x: np.ndarray) -> np.ndarray:
        sweep = [cirq.ParamResolver(dict(zip(symbols, row))) for row in x]
        return np.real(np.asarray(simulator.simulate_expectation_values_sweep(program, observables, sweep)))

    return run


def qulacs_runner(circuit: hdqnn.Circuit, w: np.ndarray):
    """run(x) -> [B, n] on Qulacs' DensityMatrix, one sample after another (Qulacs has no batch)."""
    from peers import qulacs_z_observables  # the engine benchmark's adapters (bench/, the script's folder)
    from qulacs import DensityMatrix, ParametricQuantumCircuit, gate

    n = circuit.n_qubits
    qc = ParametricQuantumCircuit(n)
    fixed = {"ry": gate.RotY, "rz": gate.RotZ}  # RotY/RotZ turn as exp(-i theta P / 2), as hdqnn's
    parametric = {"ry": qc.add_parametric_RY_gate, "rz": qc.add_parametric_RZ_gate}
    inputs = []  # (scale, input index) of each parametric gate, in Qulacs' parameter order
    for op in circuit.operations:
        if op.name == "cx":
            a, b = op.wires
            # Qulacs' depolarizing noises put p / 3 (p / 15) on each Pauli (pair), hdqnn's p / 4 (p / 16).
            for g in (gate.CNOT(a, b), gate.TwoQubitDepolarizingNoise(a, b, 15 * P2 / 16),
                      gate.AmplitudeDampingNoise(a, GAMMA), gate.AmplitudeDampingNoise(b, GAMMA)):
                qc.add_gate(g)
            continue
        q, angle = op.wires[0], op.angles[0]
        if isinstance(angle, hdqnn.Input):
            parametric[op.name](q, 0.0)
            inputs.append((angle.scale, angle.index))
        else:
            qc.add_gate(fixed[op.name](q, angle_value(angle, None, w)))
        qc.add_gate(gate.DepolarizingNoise(q, 3 * P1 / 4))
        qc.add_gate(gate.AmplitudeDampingNoise(q, GAMMA))
    observables = qulacs_z_observables(n)
    state = DensityMatrix(n)

    def run(x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), n))
        for b, row in enumerate(x):
            for slot, (scale, index) in enumerate(inputs):
                # Qulacs' parametric rotations turn as exp(+i theta P / 2): the opposite sign.
                qc.set_parameter(slot, -scale * row[index])
            state.set_zero_state()
            qc.update_quantum_state(state)
            out[b] = [obs.get_expectation_value(state).real for obs in observables]
        return out

    return run


def tensorcircuit_runner(circuit: hdqnn.Circuit, w: np.ndarray):
    """run(x) -> [B, n] on TensorCircuit-NG's DMCircuit (JAX, complex128): one sample's circuit,
    jax.vmap over the batch, jax.jit (compiled on the first call per batch shape)."""
    import jax
    import jax.numpy as jnp
    import tensorcircuit as tc

    jax.config.update("jax_enable_x64", True)  # float64 inputs stay float64 in complex128 runs
    # set_backend("jax") warns that optax (for TensorCircuit's optimizers, unused here) is missing,
    # in the middle of the "peers" line
    logging.getLogger("tensorcircuit.backends.jax_backend").setLevel(logging.ERROR)
    n = circuit.n_qubits
    # TensorCircuit's generaldepolarizingchannel(p, k) puts p on each non-identity Pauli (string),
    # hdqnn's p / 4 (p / 16); the Pauli strings are symmetric in the two wires. Its
    # amplitudedampingchannel(gamma, p) is the generalized one: p = 1 is plain amplitude damping.
    depol1, depol2 = P1 / 4, P2 / 16

    def select_backend():
        # set_backend / set_dtype are global and read at trace time: set them before every call
        tc.set_backend("jax")
        tc.set_dtype("complex128")

    def one_sample(xb):
        c = tc.DMCircuit(n)  # wire q is hdqnn's wire q, as in peers.build_tensorcircuit
        for op in circuit.operations:
            if op.name == "cx":
                a, b = op.wires
                c.cnot(a, b)
                c.generaldepolarizing(a, b, p=depol2, num_qubits=2)
                c.amplitudedamping(a, gamma=GAMMA, p=1.0)
                c.amplitudedamping(b, gamma=GAMMA, p=1.0)
                continue
            q = op.wires[0]
            getattr(c, op.name)(q, theta=angle_value(op.angles[0], xb, w))  # exp(-i theta P / 2), as hdqnn's
            c.generaldepolarizing(q, p=depol1, num_qubits=1)
            c.amplitudedamping(q, gamma=GAMMA, p=1.0)
        # reuse (the default) contracts the density matrix once for the n expectations
        return jnp.real(jnp.stack([c.expectation_ps(z=[q]) for q in range(n)]))

    batched = jax.jit(jax.vmap(one_sample))

    def run(x: np.ndarray) -> np.ndarray:
        select_backend()
        return np.asarray(batched(jnp.asarray(x)))  # np.asarray waits for JAX's asynchronous result

    return run


PEERS = {"aer": aer_runner, "pennylane": pennylane_runner, "cirq": cirq_runner, "qulacs": qulacs_runner,
         "tensorcircuit": tensorcircuit_runner}
# The modules each peer needs: TensorCircuit imports without JAX, its backend here
PEER_MODULES = {"aer": ("qiskit_aer",), "pennylane": ("pennylane",), "cirq": ("cirq",), "qulacs": ("qulacs",),
                "tensorcircuit": ("tensorcircuit", "jax")}


def available_peers() -> list[str]:
    """The peers whose libraries import here."""
    found = []
    for name, modules in PEER_MODULES.items():
        try:
            for module in modules:
                __import__(module)
        except ImportError:
            continue
        found.append(name)
    return found


def one_thread():
    """BLAS and OpenMP pools at one thread for a peer (threadpoolctl where installed; without it the
    peers follow OMP_NUM_THREADS and friends)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def time_peer(run, x: np.ndarray, repeats: int, limit: float) -> tuple[float, float, np.ndarray | None]:
    """(wall s, CPU s, [B, n]) of ``run`` on the batch, or (inf, inf, None) where one sample's time
    times B passes ``limit`` seconds (an upper bound for the batched peers: it counts their per-call
    overhead B times)."""
    run(x[:1])  # warm-up: the first call pays for setup (Aer's transpilation, caches)
    start = time.perf_counter()
    run(x[:1])
    if (time.perf_counter() - start) * len(x) > limit:
        return float("inf"), float("inf"), None
    return timed(lambda: run(x), repeats)


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


def peer_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    return names


def pick_peers(args) -> list[str]:
    """The peers to run: --peers (each must import) or every available one, less Aer with --no-aer."""
    available = available_peers()
    if args.peers is not None:
        missing = [name for name in args.peers if name not in available]
        if missing:
            raise SystemExit(f"peer(s) {missing} do not import here (modules {[PEER_MODULES[m] for m in missing]})")
        chosen = args.peers
    else:
        chosen = available
    return [name for name in chosen if not (args.no_aer and name == "aer")]


def fmt_ms(seconds: float, digits: int) -> str:
    return "slow" if seconds == float("inf") else f"{1e3 * seconds:.{digits}f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny points, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--traj", type=int, default=100, help="trajectories per sample for the traj column")
    parser.add_argument("--peers", type=peer_list, metavar="P,P", help=f"peers to run among {','.join(PEERS)} "
                        "(default: every one that imports)")
    parser.add_argument("--peer-limit", type=float, default=60.0, metavar="S", help="skip a peer at a point "
                        "(\"slow\") where one sample extrapolates to more than S seconds per batch")
    parser.add_argument("--threads", type=int, default=1, help="threads of hdqnn's engines (default 1, as the "
                        "peers; set for the whole run, so the Numba twin's columns cannot change it)")
    parser.add_argument("--no-aer", action="store_true", help="drop Aer from the peers")
    parser.add_argument("--no-numba", action="store_true", help="skip the Numba twin's columns")
    parser.add_argument("--no-traj", action="store_true", help="skip the trajectories column")
    parser.add_argument("--points", type=point, nargs="+", metavar="N,L,B", help="points to run instead of the "
                        "issue's")
    args = parser.parse_args(argv)
    points = args.points or (QUICK_POINTS if args.quick else POINTS)
    repeats = 1 if args.quick else args.repeats
    peers = pick_peers(args)
    others = [name for name in peers if name != "aer"]
    model = noise_model()
    hdqnn.set_num_threads(args.threads)
    engine = density.density_engine()
    with_numba = engine != "numba" and not args.no_numba
    nan = float("nan")
    print(f"engine: {engine}, threads: {args.threads}")
    print(f"peers: {', '.join(peers) or 'none'}", end="", flush=True)
    header = (f"{'n':>3} {'L':>3} {'B':>5} {'expval ms':>10} {'vjp ms':>9} {'vjp/fwd':>8} {'nb fwd ms':>10} "
              f"{'nb vjp ms':>10} {'traj ms':>9} {'aer ms':>9} {'aer/hdqnn':>10} {'aer/nb':>7} {'fwd cpu ms':>11} "
              f"{'vjp/fwd cpu':>12} {'aer cpu ms':>11} {'aer/hdqnn cpu':>14} {'max |diff|':>11}")
    header += "".join(f" {name + ' ms':>12} {'|d| ' + name:>13}" for name in others)
    header += f" {'fastest peer':>12} {'fastest/hdqnn':>14}"
    header_printed = False
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
        walls, cpus, diffs = {}, {}, {}
        for name in peers:
            with one_thread():
                run = PEERS[name](circuit, w)
                if not header_printed and hasattr(run, "mode"):
                    print(f" ({name}: {run.mode})", end="")
                walls[name], cpus[name], ref = time_peer(run, x, repeats, args.peer_limit)
            diffs[name] = nan if ref is None else float(np.abs(ref - out).max())
        if not header_printed:
            print(f"\n{header}")
            header_printed = True
        t_aer, c_aer, diff = walls.get("aer", nan), cpus.get("aer", nan), diffs.get("aer", nan)
        measured = {name: t for name, t in walls.items() if np.isfinite(t)}
        fastest = min(measured, key=measured.get) if measured else "-"
        t_fastest = measured[fastest] if measured else nan
        line = (f"{n:>3} {layers:>3} {batch:>5} {1e3 * t_fwd:>10.2f} {1e3 * t_vjp:>9.2f} {t_vjp / t_fwd:>8.2f} "
                f"{1e3 * t_nb_fwd:>10.2f} {1e3 * t_nb_vjp:>10.2f} {1e3 * t_traj:>9.2f} {fmt_ms(t_aer, 1):>9} "
                f"{t_aer / t_fwd:>10.1f} {t_aer / t_nb_fwd:>7.1f} {1e3 * c_fwd:>11.2f} {c_vjp / c_fwd:>12.2f} "
                f"{fmt_ms(c_aer, 1):>11} {c_aer / c_fwd:>14.1f} {diff:>11.2e}")
        line += "".join(f" {fmt_ms(walls[name], 1):>12} {diffs[name]:>13.2e}" for name in others)
        line += f" {fastest:>12} {t_fastest / t_fwd:>14.1f}"
        print(line, flush=True)
    print(f"numba threads: {__import__('numba').get_num_threads()}")


if __name__ == "__main__":
    main()
