// Cache blocking: the amplitudes of one chunk of a phase (see Phase in engine_types.hpp), copied
// between a block's full state and a small contiguous register that stays in cache while every op
// of the phase runs on it (included by kernels.cpp).
#pragma once

#include "lanes.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {
namespace {  // included by kernels.cpp only, once per instruction set

/// Geometry of the chunks of a phase: chunk c holds the amplitudes whose bits outside ``chunk``
/// spell c, and its local index is made of the chunk bits in their order. The chunk's lowest bits
/// are all set (the plan includes them), so a chunk is a series of contiguous runs.
struct ChunkMap {
  Mask outer;      ///< bits that number the chunks
  Mask spread;     ///< chunk bits above the contiguous run
  Index run;       ///< amplitudes per contiguous run
  Index n_runs;
  Index n_chunks;

  ChunkMap(Mask chunk, int n_qubits) {
    const Mask all = (Mask(1) << n_qubits) - 1;
    outer = all & ~chunk;
    run = Index(1) << __builtin_ctzll(~chunk);
    spread = chunk & ~Mask(run - 1);
    n_runs = Index(1) << __builtin_popcountll(spread);
    n_chunks = Index(1) << __builtin_popcountll(outer);
  }

  /// Index of the first amplitude of chunk c: the bits of c deposited at the outer bits.
  Index base(Index c) const {
    Mask deposited = 0;
    Mask rest = outer;
    for (Index bit = 1; rest != 0; bit <<= 1) {
      if (c & bit) deposited |= rest & (~rest + 1);  // lowest outer bit not yet used
      rest &= rest - 1;
    }
    return Index(deposited);
  }
};

/// Calls f(global, local) with the element offsets (index * S) of every contiguous run of the chunk
/// starting at ``base``, in the full state and in the chunk's register.
template <int S, class F>
HDQNN_INLINE void for_each_run(const ChunkMap& map, Index base, F&& f) {
  Mask spread_bits = 0;
  for (Index r = 0; r < map.n_runs; ++r) {
    f((base | Index(spread_bits)) * S, r * map.run * S);
    spread_bits = ((spread_bits | ~map.spread) + 1) & map.spread;  // next subset of spread, ascending
  }
}

/// local[0, 2**chunk_bits * S) <- the chunk at ``base`` of ``state``.
template <class T, int S>
void gather_chunk(const ChunkMap& map, Index base, const T* state, T* local) {
  const Index len = map.run * S;
  for_each_run<S>(map, base, [&](Index g, Index l) {
#pragma omp simd
    for (Index i = 0; i < len; ++i) local[l + i] = state[g + i];
  });
}

/// The chunk at ``base`` of ``state`` <- local.
template <class T, int S>
void scatter_chunk(const ChunkMap& map, Index base, const T* local, T* state) {
  const Index len = map.run * S;
  for_each_run<S>(map, base, [&](Index g, Index l) {
#pragma omp simd
    for (Index i = 0; i < len; ++i) state[g + i] = local[l + i];
  });
}

}  // namespace
}  // namespace kernels
HDQNN_NAMESPACE_END
