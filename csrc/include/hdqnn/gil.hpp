// Releasing and retaking the GIL around an engine call, safely at interpreter shutdown. Host-only,
// for the pybind11 bindings (never included by kernels or NVRTC sources).
#pragma once

#include <Python.h>
#include <unistd.h>

#include <type_traits>
#include <utility>

namespace hdqnn {

/// Blocks the calling thread until the process exits.
[[noreturn]] inline void park_forever() {
  for (;;) pause();
}

/// PyEval_RestoreThread for a thread that released the GIL around an engine call. At interpreter
/// shutdown CPython (before 3.14) ends a daemon thread that asks for the GIL with pthread_exit, a
/// forced unwind: through a destructor (pybind11's gil_scoped_release) it aborts the process
/// ("terminate called without an active exception"), and it would drop this call's arrays without
/// the GIL. The thread is parked instead until the process exits, as Python 3.14 does.
inline void restore_thread(PyThreadState* state) {
  try {
    PyEval_RestoreThread(state);
  } catch (...) {  // pthread_exit's forced unwind: PyEval_RestoreThread throws nothing else
    park_forever();
  }
}

/// Runs work() without the GIL and retakes it with restore_thread, also when work() throws.
template <class Work>
decltype(auto) without_gil(Work&& work) {
  PyThreadState* state = PyEval_SaveThread();
  try {
    if constexpr (std::is_void_v<decltype(work())>) {
      std::forward<Work>(work)();
      restore_thread(state);
    } else {
      auto result = std::forward<Work>(work)();
      restore_thread(state);
      return result;
    }
  } catch (...) {
    restore_thread(state);
    throw;
  }
}

}  // namespace hdqnn
