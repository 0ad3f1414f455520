"""How the GPU executor is launched: the shared-memory layout of a block and the launch policy.

A line-by-line mirror of ``csrc/cuda/kernels/layout.cuh`` and ``csrc/cuda/launch_policy.hpp``:
the compiled ``cuda`` backend decides in C++, the ``cupy`` backend here, and the tests compare the
two over a grid of shapes. Plain Python on purpose, so the policy is unit-tested without a GPU.

Policy: ``threads_per_sample`` threads run one sample (one amplitude pair each, up to
MAX_THREADS_PER_SAMPLE). Small registers pack several samples into a block until it has
TARGET_BLOCK_THREADS threads. When a block's tables and states fit the device's shared memory the
states live there (the shared-memory path: n up to 12 in complex128, 13 in complex64 for the
adjoint, one more for forward passes on a 227 KiB device); otherwise they live in a global
workspace and a persistent grid of at most GLOBAL_BLOCKS_PER_SM blocks per SM loops over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

from .device_program import TASK_SAMPLE, TASK_VJP

SMEM_ALIGN = 16
WARP_SIZE = 32
REDUCE_WIDTH = 8
DOUBLE_BYTES = 8
MAX_THREADS_PER_SAMPLE = 256
TARGET_BLOCK_THREADS = 128
GLOBAL_BLOCKS_PER_SM = 4
#: Share of the device's free memory the global-memory path may take for its states.
WORKSPACE_FRACTION = 0.25


@dataclass(frozen=True)
class SmemLayout:
    """Bytes of each region of a block's dynamic shared memory (layout.cuh)."""

    trig: int        # per sample: cos, sin of every slot's half angle
    matrices: int    # per sample: the 2x2 of every op
    states: int      # per sample: the states, on the shared-memory path
    per_sample: int
    reduce: int      # per block: two reduction buffers
    scan: int        # per block: one double per thread (sampling)
    total: int


@dataclass(frozen=True)
class LaunchConfig:
    shared_state: bool
    threads_per_sample: int
    samples_per_block: int
    block_threads: int
    grid: int
    smem_bytes: int
    workspace_bytes: int
    fits: bool  # False: one sample's angle and matrix tables alone exceed shared memory


def smem_align(nbytes: int) -> int:
    return (nbytes + SMEM_ALIGN - 1) // SMEM_ALIGN * SMEM_ALIGN


def states_per_sample(task: int) -> int:
    """The adjoint keeps psi and lambda, sampling psi and a CDF; the rest one state."""
    return 2 if task in (TASK_VJP, TASK_SAMPLE) else 1


def smem_layout(n_qubits: int, n_slots: int, n_ops: int, task: int, shared_state: bool, samples: int,
                threads_per_sample: int, warp: int, real_bytes: int) -> SmemLayout:
    trig = smem_align(2 * real_bytes * max(n_slots, 1))
    matrices = smem_align(8 * real_bytes * max(n_ops, 1))
    states = smem_align(2 * real_bytes * states_per_sample(task) * (1 << n_qubits)) if shared_state else 0
    per_sample = trig + matrices + states
    lanes = min(threads_per_sample, warp)
    block_threads = samples * threads_per_sample
    reduce = smem_align(2 * (block_threads // lanes) * REDUCE_WIDTH * DOUBLE_BYTES)
    scan = smem_align(block_threads * DOUBLE_BYTES)
    return SmemLayout(trig, matrices, states, per_sample, reduce, scan, samples * per_sample + reduce + scan)


def choose_launch(n_qubits: int, task: int, real_bytes: int, n_slots: int, n_ops: int, batch: int,
                  smem_limit: int, sm_count: int, workspace_limit: int) -> LaunchConfig:
    """The launch of launch_policy.hpp's choose_launch for these limits."""
    dim = 1 << n_qubits
    threads = min(max(dim // 2, 1), MAX_THREADS_PER_SAMPLE)
    samples = max(TARGET_BLOCK_THREADS // threads, 1)

    def layout(shared: bool, count: int) -> SmemLayout:
        return smem_layout(n_qubits, n_slots, n_ops, task, shared, count, threads, WARP_SIZE, real_bytes)

    while samples > 1 and layout(True, samples).total > smem_limit:
        samples //= 2
    shared = layout(True, samples)
    if shared.total <= smem_limit:
        return LaunchConfig(True, threads, samples, threads * samples, -(-batch // samples), shared.total, 0, True)
    smem = layout(False, 1).total
    state_bytes = states_per_sample(task) * dim * 2 * real_bytes
    grid = min(sm_count * GLOBAL_BLOCKS_PER_SM, batch)
    by_memory = workspace_limit // state_bytes
    if by_memory < grid:
        grid = max(by_memory, 1)
    return LaunchConfig(False, threads, 1, threads, grid, smem, grid * state_bytes, smem <= smem_limit)
