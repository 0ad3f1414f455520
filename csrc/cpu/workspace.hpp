// Aligned workspaces for the engines' per-call state arrays (kernels.cpp, density_kernels.cpp).
#pragma once

#include <stddef.h>
#include <stdlib.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "hdqnn/config.hpp"

HDQNN_NAMESPACE_BEGIN  // one copy per instruction set, as every helper (config.hpp)

constexpr size_t kWorkspaceAlignment = 64;
/// Workspaces from this size are placed on transparent huge pages: a 20-qubit block, or a noisy
/// VJP's kept density matrices, is tens of MiB, and with 4 KiB pages each call spends more time in
/// page faults than in a pass (and the chunk copies of cache blocking touch a new page every few
/// runs: TLB misses).
constexpr size_t kHugePage = size_t(2) << 20;

/// Aligned workspace of at least ``bytes``, or nullptr; release with free().
inline void* allocate_workspace(size_t bytes) {
  if (bytes < kHugePage) {
    return aligned_alloc(kWorkspaceAlignment, (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment);
  }
  void* memory = aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (memory != nullptr) madvise(memory, bytes, MADV_HUGEPAGE);  // a hint: failure only costs speed
#endif
  return memory;
}

HDQNN_NAMESPACE_END
