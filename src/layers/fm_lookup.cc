// DeepFM's lookup and factorisation machine in one pass over the batch: the
// fields' rows looked up, scaled by the fields' values, and the linear and
// factorisation-machine terms summed. MindSpore custom operators of the AOT
// kind, CPU (see src/layers/fm_lookup.py).
//
// FmLookup(table (R x (D+1) float32), cat (B x C int32), dense (B x N float32),
//          threads (1 int32)) -> vectors (B x (N+C)*D float32), first (B x 1 float32)
//                                                       prediction: from the table
// FmRows(rows (U x (D+1)), inverse (B x (N+C) int32), dense, threads)
//   -> vectors, first                                   training: from the rows
// FmRowsGrad(rows, inverse, dense, threads, d_vectors, d_first (B x 1))
//   -> d_rows (U x (D+1))
//
// Field j < N is numeric: its value is dense[b, j]; field N + c is
// categorical, of value 1. FmLookup takes field j's row from the table (row j
// for a numeric field, row N + cat[b, c] for a categorical one: the layout of
// DeepFM's table); FmRows takes row inverse[b, j] of the batch's unique rows.
// With x_j the value, v_j the row's first D values times x_j and w_j its last
// value times x_j:
//   vectors[b, j*D .. j*D + D) = v_j
//   first[b] = sum_j w_j + 1/2 sum_d ((sum_j v_jd)^2 - sum_j v_jd^2)
// what the network's graph computes from a gather of the rows (sums in
// another order). The gradient: with s_d = sum_j v_jd, field j's row gets
// x_j (d_vectors[b, j*D + d] + d_first[b] (s_d - v_jd)) in column d and
// x_j d_first[b] in column D, summed over the fields and samples that use it;
// it computes v_jd again from the rows (a few MB, which stay in cache) rather
// than read the forward's vectors (B x F x D: as much memory as d_vectors).
// Samples are split among up to ``threads`` threads, at least 128 each. The
// gradient cuts the batch into up to 4 runs of samples by its size alone
// (at least 2^15 (b, j) terms each), each run summing its terms in sample
// order into a table of its own, then adds the tables in run order; the runs
// are split among the threads, so the sums do not depend on their number.
//
// Error codes: 1 for shapes or dtypes it does not take, 2 for a row outside
// the table (FmLookup: a categorical id below 0 or at or past R - N; FmRows: an
// inverse below 0 or at or past U).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "../engine/parallel_parts.h"

namespace {

constexpr int64_t kRowsPerThread = 128;
constexpr int64_t kTermsPerThread = 1 << 15;  // the gradient: fewer (b, j) terms stay on one thread
constexpr int64_t kMaxRuns = 4;               // the gradient: runs of samples, each a table of its own

struct Shapes {
  int64_t table_rows, dim, batch, num_cat, num_dense;
  int64_t fields() const { return num_dense + num_cat; }
};

// Field j's value in sample b.
float Value(const Shapes &s, const float *dense, int64_t b, int64_t j) {
  return j < s.num_dense ? dense[b * s.num_dense + j] : 1.0f;
}

// Samples [begin, end): the FM of each; row(b, j) gives field j's row of sample
// b, or nullptr for one outside the table (then false, at the first such).
template <typename RowOf>
bool Samples(const Shapes &s, const RowOf &row_of, const float *dense, float *vectors, float *first,
             int64_t begin, int64_t end) {
  const int64_t d = s.dim, fields = s.fields();
  std::vector<float> sums(d), squares(d);
  for (int64_t b = begin; b < end; ++b) {
    std::fill(sums.begin(), sums.end(), 0.0f);
    std::fill(squares.begin(), squares.end(), 0.0f);
    float linear = 0.0f;
    float *out = vectors + b * fields * d;
    for (int64_t j = 0; j < fields; ++j) {
      const float x = Value(s, dense, b, j);
      const float *row = row_of(b, j);
      if (row == nullptr) return false;
      float *o = out + j * d;
      for (int64_t k = 0; k < d; ++k) {
        const float v = row[k] * x;
        o[k] = v;
        sums[k] += v;
        squares[k] += v * v;
      }
      linear += row[d] * x;
    }
    float pairs = 0.0f;
    for (int64_t k = 0; k < d; ++k) pairs += sums[k] * sums[k] - squares[k];
    first[b] = linear + 0.5f * pairs;
  }
  return true;
}

// FmRows' and FmRowsGrad's shapes: rows (U x (D+1)), inverse (B x F), dense
// (B x N), threads, then float32 matrices of B rows, one per letter of
// `batch_widths`: 'v' for F*D columns (the vectors), '1' for one (first).
bool RowsShapes(int nparam, int *ndims, int64_t **shapes, const char **dtypes,
                const char *batch_widths, Shapes *s) {
  const int n = 4 + static_cast<int>(std::strlen(batch_widths));
  if (nparam < n) return false;
  for (int i = 0; i < n; ++i) {
    if (ndims[i] != (i == 3 ? 1 : 2)) return false;
    if (std::strcmp(dtypes[i], i == 1 || i == 3 ? "int32" : "float32") != 0) return false;
  }
  *s = Shapes{shapes[0][0], shapes[0][1] - 1, shapes[1][0], shapes[1][1] - shapes[2][1],
              shapes[2][1]};
  if (s->dim < 1 || s->num_cat < 0 || shapes[2][0] != s->batch || shapes[3][0] < 1) return false;
  for (int i = 4; i < n; ++i) {
    const int64_t cols = batch_widths[i - 4] == '1' ? 1 : s->fields() * s->dim;
    if (shapes[i][0] != s->batch || shapes[i][1] != cols) return false;
  }
  return true;
}

int64_t Threads(void **params) { return recsys::ThreadsAsked(params[3]); }

// FmLookup's and FmRows' work, over the batch among the threads: params
// [2] dense, [3] threads, [4] vectors, [5] first; the error code.
template <typename RowOf>
int AllSamples(const Shapes &s, const RowOf &row_of, void **params) {
  const float *dense = static_cast<const float *>(params[2]);
  float *vectors = static_cast<float *>(params[4]);
  float *first = static_cast<float *>(params[5]);
  std::atomic<bool> outside{false};
  recsys::ParallelParts(s.batch, Threads(params), kRowsPerThread,
                        [&](int64_t, int64_t begin, int64_t end) {
    if (!Samples(s, row_of, dense, vectors, first, begin, end)) outside = true;
  });
  return outside ? 2 : 0;
}

}  // namespace

extern "C" int FmLookup(int nparam, void **params, int *ndims, int64_t **shapes,
                        const char **dtypes, void *, void *) {
  if (nparam != 6 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 2 || ndims[3] != 1 ||
      ndims[4] != 2 || ndims[5] != 2) {
    return 1;
  }
  for (int i = 0; i < 6; ++i) {
    if (std::strcmp(dtypes[i], i == 1 || i == 3 ? "int32" : "float32") != 0) return 1;
  }
  const Shapes s{shapes[0][0], shapes[0][1] - 1, shapes[1][0], shapes[1][1], shapes[2][1]};
  if (s.dim < 1 || shapes[2][0] != s.batch || s.table_rows < s.num_dense || shapes[3][0] < 1 ||
      shapes[4][0] != s.batch || shapes[4][1] != s.fields() * s.dim ||
      shapes[5][0] != s.batch || shapes[5][1] != 1) {
    return 1;
  }
  const float *table = static_cast<const float *>(params[0]);
  const int32_t *cat = static_cast<const int32_t *>(params[1]);
  const auto row_of = [&](int64_t b, int64_t j) -> const float * {
    int64_t id = j;
    if (j >= s.num_dense) {
      id = s.num_dense + static_cast<int64_t>(cat[b * s.num_cat + j - s.num_dense]);
      if (id < s.num_dense || id >= s.table_rows) return nullptr;
    }
    return table + id * (s.dim + 1);
  };
  return AllSamples(s, row_of, params);
}

extern "C" int FmRows(int nparam, void **params, int *ndims, int64_t **shapes,
                      const char **dtypes, void *, void *) {
  Shapes s;
  if (nparam != 6 || !RowsShapes(nparam, ndims, shapes, dtypes, "v1", &s)) return 1;
  const float *rows = static_cast<const float *>(params[0]);
  const int32_t *inverse = static_cast<const int32_t *>(params[1]);
  const auto row_of = [&](int64_t b, int64_t j) -> const float * {
    const int64_t r = inverse[b * s.fields() + j];
    return r < 0 || r >= s.table_rows ? nullptr : rows + r * (s.dim + 1);
  };
  return AllSamples(s, row_of, params);
}

extern "C" int FmRowsGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                          const char **dtypes, void *, void *) {
  Shapes s;
  if (nparam != 7 || !RowsShapes(nparam, ndims, shapes, dtypes, "v1", &s) || ndims[6] != 2 ||
      std::strcmp(dtypes[6], "float32") != 0 || shapes[6][0] != s.table_rows ||
      shapes[6][1] != s.dim + 1) {
    return 1;
  }
  const int64_t d = s.dim, width = d + 1, fields = s.fields();
  const float *rows = static_cast<const float *>(params[0]);
  const int32_t *inverse = static_cast<const int32_t *>(params[1]);
  const float *dense = static_cast<const float *>(params[2]);
  const float *d_vectors = static_cast<const float *>(params[4]);
  const float *d_first = static_cast<const float *>(params[5]);
  float *d_rows = static_cast<float *>(params[6]);
  for (int64_t i = 0; i < s.batch * fields; ++i) {
    if (inverse[i] < 0 || inverse[i] >= s.table_rows) return 2;
  }
  // The samples in `parts` runs, a number set by the batch's size alone (not
  // the threads): run p adds its samples' terms, in sample order, into a
  // table of its own (run 0 into d_rows), and the tables are then added in
  // run order; so the sums do not depend on the threads.
  const int64_t parts = std::clamp<int64_t>(s.batch * fields / kTermsPerThread, 1, kMaxRuns);
  // (uninitialised: each run clears its own table)
  std::unique_ptr<float[]> own(new float[(parts - 1) * s.table_rows * width]);
  recsys::ParallelParts(parts, Threads(params), 1, [&](int64_t, int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      float *table = p == 0 ? d_rows : own.get() + (p - 1) * s.table_rows * width;
      std::fill_n(table, s.table_rows * width, 0.0f);
      std::vector<float> sum(d);
      for (int64_t b = s.batch * p / parts; b < s.batch * (p + 1) / parts; ++b) {
        // s_d times d_first: field j's column d gets x_j (d_vectors + g s_d - g v_jd)
        const float g = d_first[b];
        std::fill(sum.begin(), sum.end(), 0.0f);
        for (int64_t j = 0; j < fields; ++j) {
          const float x = Value(s, dense, b, j);
          const float *row = rows + inverse[b * fields + j] * width;
          for (int64_t k = 0; k < d; ++k) sum[k] += row[k] * x;
        }
        for (int64_t k = 0; k < d; ++k) sum[k] *= g;
        for (int64_t j = 0; j < fields; ++j) {
          const int64_t r = inverse[b * fields + j];
          const float x = Value(s, dense, b, j);
          const float *row = rows + r * width, *dv = d_vectors + (b * fields + j) * d;
          float *out = table + r * width;
          for (int64_t k = 0; k < d; ++k) out[k] += x * (dv[k] + sum[k] - g * (row[k] * x));
          out[d] += x * g;
        }
      }
    }
  });
  if (parts > 1) {
    recsys::ParallelParts(s.table_rows * width, Threads(params), 1 << 16,
                          [&](int64_t, int64_t begin, int64_t end) {
      for (int64_t p = 1; p < parts; ++p) {
        const float *add = own.get() + (p - 1) * s.table_rows * width;
        for (int64_t i = begin; i < end; ++i) d_rows[i] += add[i];
      }
    });
  }
  return 0;
}
