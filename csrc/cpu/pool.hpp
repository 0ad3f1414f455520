// Sample-parallel execution: a persistent pool of worker threads that claim blocks from a shared
// counter. Unlike an OpenMP parallel region, the caller never waits for a worker that has not
// claimed a block: on a shared machine a descheduled worker only delays the block it holds, not
// the whole call (measured here: OpenMP's join put the 90th percentile of a 0.6 ms call at 7 ms).
#pragma once

#include "engine_types.hpp"

namespace hdqnn {
namespace cpu {

/// Runs body(ctx, worker, block) for every block in [0, n_blocks) on the calling thread (worker
/// 0) and up to threads - 1 pool workers (ids 1 .. threads - 1); returns when all are done.
void parallel_blocks(int threads, Index n_blocks, BlockBody body, void* ctx);

/// Whether OpenMP parallel regions work in this process: false in a child forked after this
/// process (or an ancestor) started one. libgomp is not fork-safe: its worker threads do not
/// survive fork(), and the child's next region would wait for them forever.
bool openmp_regions_usable();

/// Records that an OpenMP parallel region is about to start (see openmp_regions_usable).
void note_openmp_region();

}  // namespace cpu
}  // namespace hdqnn
