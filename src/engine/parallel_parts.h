// Work split among threads, for the project's C++ CPU kernels (included by
// src/engine/dense_update.cc, src/engine/row_update.cc and src/layers/*.cc;
// src/engine/native.py builds a kernel again when a header it includes
// changes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace recsys {

// The thread count a kernel's int32 input `ints` holds at position `at`, at
// least one.
inline int64_t ThreadsAsked(const void *ints, int64_t at = 0) {
  return std::max<int32_t>(1, static_cast<const int32_t *>(ints)[at]);
}

// part(t, begin, end) over the items [0, n), cut into up to `wanted` parts
// of at least `least` items each (one part when n is smaller). Part 0 runs
// on the calling thread, and so does a part whose thread cannot be started.
// Returns when every part is done.
template <typename Part>
void ParallelParts(int64_t n, int64_t wanted, int64_t least, const Part &part) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(wanted, n / least));
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < parts; ++t) {
    const int64_t begin = n * t / parts, end = n * (t + 1) / parts;
    try {
      pool.emplace_back([&part, t, begin, end] { part(t, begin, end); });
    } catch (...) {  // no thread to be had: this one does the part
      part(t, begin, end);
    }
  }
  part(0, 0, n / parts);
  for (auto &thread : pool) thread.join();
}

}  // namespace recsys
