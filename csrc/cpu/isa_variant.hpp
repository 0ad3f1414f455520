// Included first by the kernel files compiled once per instruction set (kernels.cpp,
// density_kernels.cpp): CMake passes -DHDQNN_ISA=base|avx2|avx512, which selects the inline
// namespace of every hdqnn helper in that object (config.hpp) and names the variant's entry points
// (run_job_avx2, ...). Must come before any other hdqnn header.
#pragma once

#ifndef HDQNN_ISA
#define HDQNN_ISA base
#endif
#define HDQNN_PASTE2(a, b) a##b
#define HDQNN_PASTE(a, b) HDQNN_PASTE2(a, b)
#define HDQNN_ISA_NAMESPACE HDQNN_PASTE(isa_, HDQNN_ISA)
