// DeepFM's prediction up to its MLP in one pass over the batch: the fields'
// rows looked up, scaled by the fields' values, and the linear and
// factorisation-machine terms summed. A MindSpore custom operator of the AOT
// kind, CPU (see src/layers/fm_lookup.py).
//
// FmLookup(table (R x (D+1) float32), cat (B x C int32), dense (B x N float32),
//          threads (1 int32)) -> vectors (B x (N+C)*D float32), first (B x 1 float32)
//
// Field j < N is numeric: its row is row j of the table and its value
// dense[b, j]; field N + c is categorical: its row is row N + cat[b, c] and its
// value 1 (the layout of DeepFM's table). With x_j the value, v_j the
// row's first D values times x_j and w_j its last value times x_j:
//   vectors[b, j*D .. j*D + D) = v_j
//   first[b] = sum_j w_j + 1/2 sum_d ((sum_j v_jd)^2 - sum_j v_jd^2)
// what the network's graph computes from a gather of the rows (sums in
// another order). Rows are split among up to ``threads`` threads, at least
// 128 rows each.
//
// Error codes: 1 for shapes or dtypes it does not take, 2 for a row outside
// the table (a categorical id below 0 or at or past R - N).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../engine/parallel_parts.h"

namespace {

constexpr int64_t kRowsPerThread = 128;

struct Shapes {
  int64_t table_rows, dim, batch, num_cat, num_dense;
};

// Rows [begin, end) of the batch; false at the first row id outside the table.
bool Rows(const Shapes &s, const float *table, const int32_t *cat, const float *dense,
          float *vectors, float *first, int64_t begin, int64_t end) {
  const int64_t d = s.dim, width = d + 1, fields = s.num_dense + s.num_cat;
  std::vector<float> sums(d), squares(d);
  for (int64_t b = begin; b < end; ++b) {
    std::fill(sums.begin(), sums.end(), 0.0f);
    std::fill(squares.begin(), squares.end(), 0.0f);
    float linear = 0.0f;
    float *out = vectors + b * fields * d;
    for (int64_t j = 0; j < fields; ++j) {
      int64_t id = j;
      float x = 1.0f;
      if (j < s.num_dense) {
        x = dense[b * s.num_dense + j];
      } else {
        id = s.num_dense + static_cast<int64_t>(cat[b * s.num_cat + j - s.num_dense]);
        if (id < s.num_dense || id >= s.table_rows) return false;
      }
      const float *row = table + id * width;
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
      shapes[4][0] != s.batch || shapes[4][1] != (s.num_dense + s.num_cat) * s.dim ||
      shapes[5][0] != s.batch || shapes[5][1] != 1) {
    return 1;
  }
  const float *table = static_cast<const float *>(params[0]);
  const int32_t *cat = static_cast<const int32_t *>(params[1]);
  const float *dense = static_cast<const float *>(params[2]);
  const int64_t wanted = std::max<int32_t>(1, static_cast<const int32_t *>(params[3])[0]);
  float *vectors = static_cast<float *>(params[4]);
  float *first = static_cast<float *>(params[5]);
  std::atomic<bool> outside{false};
  recsys::ParallelParts(s.batch, wanted, kRowsPerThread, [&](int64_t, int64_t begin, int64_t end) {
    if (!Rows(s, table, cat, dense, vectors, first, begin, end)) outside = true;
  });
  return outside ? 2 : 0;
}
