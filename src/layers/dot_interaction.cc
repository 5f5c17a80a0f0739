// DLRM's prediction between its two MLPs in one pass over the batch: the
// fields' rows looked up and the dot interaction (the pairwise dot products
// of the bottom MLP's output and the rows, after that output). A MindSpore
// custom operator of the AOT kind, CPU (see src/layers/dot_interaction.py).
//
// DotInteraction(table (R x D float32), cat (B x F int32), bottom (B x D float32),
//                layout (2 int32: threads, self_interaction))
//   -> out (B x (D + P) float32)
//
// With t_0 = bottom[b] and t_i = table[cat[b, i - 1]] (i = 1 .. F), V = F + 1
// vectors: out[b] = (t_0, then t_i . t_j for i = 0 .. V-1 and j = 0 .. i - 1,
// or j = 0 .. i with self_interaction), P = V(V-1)/2 (+ V) products: the pairs
// of numpy's tril_indices(V, -1) (or 0) in its order, as the network's graph
// selects them from the Gram matrix (sums in another order). Rows are split
// among up to ``threads`` threads, at least 128 rows each.
//
// Error codes: 1 for shapes or dtypes it does not take, 2 for an id outside
// the table.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../engine/parallel_parts.h"

namespace {

constexpr int64_t kRowsPerThread = 128;

struct Shapes {
  int64_t table_rows, dim, batch, fields, width;
  bool self_interaction;
};

// acc[0 .. n) += a * column[0 .. n): the products of one vector with the ones
// before it, for one coordinate (vectorised over the vectors).
inline void AddScaled(float *__restrict acc, const float *__restrict column, float a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += a * column[j];
}

// Rows [begin, end) of the batch; false at the first id outside the table.
bool Rows(const Shapes &s, const float *table, const int32_t *cat, const float *bottom,
          float *out, int64_t begin, int64_t end) {
  const int64_t d = s.dim, v = s.fields + 1;
  std::vector<float> columns(d * v);  // columns[k * v + i] = t_i[k]
  std::vector<float> acc(v);
  for (int64_t b = begin; b < end; ++b) {
    const float *x = bottom + b * d;
    float *o = out + b * s.width;
    for (int64_t k = 0; k < d; ++k) {
      o[k] = x[k];
      columns[k * v] = x[k];
    }
    for (int64_t i = 1; i < v; ++i) {
      const int64_t id = cat[b * s.fields + i - 1];
      if (id < 0 || id >= s.table_rows) return false;
      const float *row = table + id * d;
      for (int64_t k = 0; k < d; ++k) columns[k * v + i] = row[k];
    }
    int64_t at = d;
    for (int64_t i = 0; i < v; ++i) {
      const int64_t n = s.self_interaction ? i + 1 : i;  // the pairs (i, 0 .. n)
      if (n == 0) continue;
      std::fill(acc.begin(), acc.begin() + n, 0.0f);
      for (int64_t k = 0; k < d; ++k) AddScaled(acc.data(), &columns[k * v], columns[k * v + i], n);
      std::copy(acc.begin(), acc.begin() + n, o + at);
      at += n;
    }
  }
  return true;
}

}  // namespace

extern "C" int DotInteraction(int nparam, void **params, int *ndims, int64_t **shapes,
                              const char **dtypes, void *, void *) {
  if (nparam != 5 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 2 || ndims[3] != 1 ||
      ndims[4] != 2 || shapes[3][0] != 2) {
    return 1;
  }
  for (int i = 0; i < 5; ++i) {
    if (std::strcmp(dtypes[i], i == 1 || i == 3 ? "int32" : "float32") != 0) return 1;
  }
  const int32_t *layout = static_cast<const int32_t *>(params[3]);
  Shapes s{shapes[0][0], shapes[0][1], shapes[1][0], shapes[1][1], shapes[4][1], layout[1] != 0};
  const int64_t v = s.fields + 1;
  const int64_t pairs = v * (v - 1) / 2 + (s.self_interaction ? v : 0);
  if (s.dim < 1 || shapes[2][0] != s.batch || shapes[2][1] != s.dim || shapes[4][0] != s.batch ||
      s.width != s.dim + pairs) {
    return 1;
  }
  const float *table = static_cast<const float *>(params[0]);
  const int32_t *cat = static_cast<const int32_t *>(params[1]);
  const float *bottom = static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[4]);
  const int64_t wanted = std::max<int32_t>(1, layout[0]);
  std::atomic<bool> outside{false};
  recsys::ParallelParts(s.batch, wanted, kRowsPerThread, [&](int64_t, int64_t begin, int64_t end) {
    if (!Rows(s, table, cat, bottom, out, begin, end)) outside = true;
  });
  return outside ? 2 : 0;
}
