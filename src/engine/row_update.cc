// In-place row-wise optimizer updates of an embedding table: MindSpore
// custom operators of the AOT kind, CPU (see src/engine/row_update.py).
//
// Every kernel takes the table (rows x D float32), the step's row ids
// (N int32), their gradients (N x D float32), a small float32 vector of
// hyper-parameters and an int32 thread count (1), and writes the updated rows
// into the table's own memory (and into the optimizer state's); its output is
// one int32, 0. The ids are split among up to that many threads, at least
// kRowsPerThread each; a row's update does not depend on the split.
//
// The ids are distinct except for a trailing run of one id (the padding with
// the scratch row, see unique_rows in src/engine/sparse.py). A row is updated
// once, from its value before the step, as a ScatterUpdate of rows computed
// from a gather would: so only the first id of the trailing run is used.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "parallel_parts.h"

namespace {

constexpr int64_t kRowsPerThread = 1024;
constexpr int64_t kAhead = 8;

// Asks for the cache lines of `values` floats from `at` (a hint, no fault).
inline void Prefetch(float *at, int64_t values) {
  for (int64_t j = 0; j < values; j += 16) __builtin_prefetch(at + j, 1);
  __builtin_prefetch(at + values - 1, 1);
}

// The number of ids to apply: up to and including the first of the trailing run.
int64_t Distinct(const int32_t *ids, int64_t n) {
  if (n == 0) return 0;
  int64_t first = n - 1;
  while (first > 0 && ids[first - 1] == ids[n - 1]) --first;
  return first + 1;
}

// Shapes (table rows x D, ids N, grad N x D) and dtypes (float32, int32, float32).
bool Valid(int nparam, int expected, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != expected || ndims[0] != 2 || ndims[1] != 1 || ndims[2] != 2) return false;
  if (std::strcmp(dtypes[0], "float32") != 0 || std::strcmp(dtypes[1], "int32") != 0 ||
      std::strcmp(dtypes[2], "float32") != 0) {
    return false;
  }
  return shapes[2][0] == shapes[1][0] && shapes[2][1] == shapes[0][1];
}

bool InRange(const int32_t *ids, int64_t n, int64_t rows) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= rows) return false;
  }
  return true;
}

// The inputs every kernel starts with: the table, the ids and their gradients.
struct Rows {
  float *table;
  const int32_t *ids;
  const float *grad;
  int64_t d;  // values per row
  int64_t n;  // ids to apply (see Distinct)
  int64_t threads;

  // update(row id, its gradient) for each id to apply, among the threads
  // (``ahead(id)`` first, for the id kAhead places on: the rows lie at random
  // in a large table, so their reads are started early)
  template <typename Update, typename Ahead>
  void Each(const Update &update, const Ahead &ahead) const {
    recsys::ParallelParts(n, threads, kRowsPerThread, [&](int64_t, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (i + kAhead < end) ahead(static_cast<int64_t>(ids[i + kAhead]));
        update(static_cast<int64_t>(ids[i]), grad + i * d);
      }
    });
  }
};

// Reads them, and the thread count (the input before the output), into
// ``rows``; 0, or the kernel's error code: 1 for shapes or dtypes it does not
// take, 2 for an id outside the table.
int Parse(int nparam, int expected, void **params, int *ndims, int64_t **shapes,
          const char **dtypes, Rows *rows) {
  if (!Valid(nparam, expected, ndims, shapes, dtypes)) return 1;
  const int at = expected - 2;
  if (ndims[at] != 1 || shapes[at][0] != 1 || std::strcmp(dtypes[at], "int32") != 0) return 1;
  rows->threads = recsys::ThreadsAsked(params[at]);
  rows->table = static_cast<float *>(params[0]);
  rows->ids = static_cast<const int32_t *>(params[1]);
  rows->grad = static_cast<const float *>(params[2]);
  rows->d = shapes[0][1];
  rows->n = Distinct(rows->ids, shapes[1][0]);
  return InRange(rows->ids, rows->n, shapes[0][0]) ? 0 : 2;
}

}  // namespace

// (table, ids, grad, [lr], threads) : table[id] -= lr * grad
extern "C" int RowSgd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                      void *, void *) {
  Rows r;
  if (const int error = Parse(nparam, 6, params, ndims, shapes, dtypes, &r)) return error;
  const float lr = static_cast<const float *>(params[3])[0];
  r.Each([&](int64_t id, const float *g) {
    float *row = r.table + id * r.d;
    for (int64_t j = 0; j < r.d; ++j) row[j] = row[j] - lr * g[j];
  }, [&](int64_t id) { Prefetch(r.table + id * r.d, r.d); });
  static_cast<int32_t *>(params[5])[0] = 0;
  return 0;
}

// (table, ids, grad, accum, [lr, eps], threads) : accum[id] += grad^2;
// table[id] -= lr * grad / (sqrt(accum[id]) + eps)
extern "C" int RowAdagrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                          void *, void *) {
  Rows r;
  if (const int error = Parse(nparam, 7, params, ndims, shapes, dtypes, &r)) return error;
  float *accum = static_cast<float *>(params[3]);
  const float *hyper = static_cast<const float *>(params[4]);
  const float lr = hyper[0], eps = hyper[1];
  r.Each([&](int64_t id, const float *g) {
    const int64_t at = id * r.d;
    for (int64_t j = 0; j < r.d; ++j) {
      const float acc = accum[at + j] + g[j] * g[j];
      accum[at + j] = acc;
      r.table[at + j] = r.table[at + j] - lr * g[j] / (std::sqrt(acc) + eps);
    }
  }, [&](int64_t id) {
    Prefetch(r.table + id * r.d, r.d);
    Prefetch(accum + id * r.d, r.d);
  });
  static_cast<int32_t *>(params[6])[0] = 0;
  return 0;
}

// (table, ids, grad, moments (rows x 2 x D), [corrected lr, beta1, beta2, eps],
// threads): lazy Adam, the moments of a row side by side (first, then second)
extern "C" int RowAdam(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                       void *, void *) {
  Rows r;
  if (const int error = Parse(nparam, 7, params, ndims, shapes, dtypes, &r)) return error;
  if (ndims[3] != 3 || shapes[3][0] != shapes[0][0] || shapes[3][1] != 2 || shapes[3][2] != r.d) {
    return 1;
  }
  float *moments = static_cast<float *>(params[3]);
  const float *hyper = static_cast<const float *>(params[4]);
  const float corrected = hyper[0], beta1 = hyper[1], beta2 = hyper[2], eps = hyper[3];
  r.Each([&](int64_t row, const float *g) {
    float *w = r.table + row * r.d;
    float *m = moments + row * 2 * r.d;
    float *v = m + r.d;
    for (int64_t j = 0; j < r.d; ++j) {
      m[j] = beta1 * m[j] + (1.0f - beta1) * g[j];
      v[j] = beta2 * v[j] + (1.0f - beta2) * (g[j] * g[j]);
      w[j] = w[j] - corrected * m[j] / (std::sqrt(v[j]) + eps);
    }
  }, [&](int64_t id) {
    Prefetch(r.table + id * r.d, r.d);
    Prefetch(moments + id * 2 * r.d, 2 * r.d);
  });
  static_cast<int32_t *>(params[6])[0] = 0;
  return 0;
}
