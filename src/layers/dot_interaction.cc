// DLRM's dot interaction in one pass over the batch: MindSpore custom
// operators of the AOT kind, CPU (see src/layers/dot_interaction.py).
//
// DotInteraction(table (R x D float32), cat (B x F int32), bottom (B x D float32),
//                layout (2 int32: threads, self_interaction))
//   -> out (B x (D + P) float32)                       prediction: lookup too
// DotPairs(bottom (B x D), emb (B x F x D), layout) -> out (B x (D + P))
// DotPairsGrad(bottom, emb, layout, dout (B x (D + P)))
//   -> d_bottom (B x D), d_emb (B x F x D)             training
//
// With t_0 = bottom[b] and t_i = table[cat[b, i - 1]] (or emb[b, i - 1]),
// i = 1 .. F, V = F + 1 vectors: out[b] = (t_0, then t_i . t_j for
// i = 0 .. V-1 and j = 0 .. i - 1, or j = 0 .. i with self_interaction),
// P = V(V-1)/2 (+ V) products: the pairs of numpy's tril_indices(V, -1) (or
// 0) in its order, as the network's graph selects them from the Gram matrix
// (sums in another order). The gradient: d t_i = sum_j S_ij t_j with S the
// symmetric matrix of the pairs' output gradients (twice a diagonal one),
// plus the output gradient of t_0's copy for d_bottom.
//
// A sample's vectors are stored transposed (one column of blocks of lanes per
// coordinate), so a vector's products with all the vectors before it are a
// few register accumulators updated once per coordinate; the gradient runs
// along the rows. Each pass is compiled twice: with 8-float vectors for AVX2
// with FMA (x86-64, taken when the CPU has them) and with 4-float ones for
// any CPU (-DDOT_INTERACTION_PORTABLE keeps only these). Rows are split among
// up to ``threads`` threads, at least 128 rows each.
//
// Error codes: 1 for shapes or dtypes it does not take, 2 for an id outside
// the table.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../engine/parallel_parts.h"

#if defined(__x86_64__) && !defined(DOT_INTERACTION_PORTABLE)
#define DOT_INTERACTION_AVX2 1
#endif
#define DOT_INLINE inline __attribute__((always_inline))

namespace {

constexpr int64_t kRowsPerThread = 128;
typedef float V8 __attribute__((vector_size(32)));  // the AVX2 path's vectors
typedef float V4 __attribute__((vector_size(16)));  // the baseline's (SSE on x86, NEON on ARM)

template <typename V> constexpr int64_t kLanes = sizeof(V) / sizeof(float);

// Unaligned loads and stores (through pointers: no vector passed by value).
template <typename V> DOT_INLINE void Load(V *v, const float *p) { std::memcpy(v, p, sizeof(V)); }
template <typename V> DOT_INLINE void Store(float *p, const V *v) { std::memcpy(p, v, sizeof(V)); }

struct Shapes {
  int64_t batch, fields, dim, width;
  bool self_interaction;
  int64_t vectors() const { return fields + 1; }
  int64_t pairs() const {
    return vectors() * (vectors() - 1) / 2 + (self_interaction ? vectors() : 0);
  }
};

// acc[lanes q ..] = sum_k vi[k] * cols[k][lanes q ..] for the blocks of
// lanes q < NB (NB 0: nb of them); cols' rows are ``stride`` floats apart.
template <typename V, int NB>
DOT_INLINE void GramRow(const float *cols, int64_t stride, const float *vi, int64_t d,
                        int64_t nb, float *acc) {
  constexpr int64_t L = kLanes<V>;
  V t;
  if constexpr (NB > 0) {
    V a[NB] = {};
    for (int64_t k = 0; k < d; ++k) {
      for (int q = 0; q < NB; ++q) {
        Load(&t, cols + k * stride + L * q);
        a[q] += vi[k] * t;
      }
    }
    for (int q = 0; q < NB; ++q) Store(acc + L * q, &a[q]);
  } else {
    std::fill(acc, acc + nb * L, 0.0f);
    for (int64_t k = 0; k < d; ++k) {
      for (int64_t q = 0; q < nb; ++q) {
        V a;
        Load(&a, acc + L * q);
        Load(&t, cols + k * stride + L * q);
        a += vi[k] * t;
        Store(acc + L * q, &a);
      }
    }
  }
}

// One sample's vectors: their addresses and their transposed copy
// (cols[k * blocks + i / lanes][i % lanes] = t_i[k]).
template <typename V> struct Sample {
  const Shapes &s;
  int64_t stride;  // the vectors rounded up to whole blocks of lanes
  std::vector<const float *> rows;
  std::vector<float> cols, acc;
  explicit Sample(const Shapes &shapes)
      : s(shapes), stride((shapes.vectors() + kLanes<V> - 1) / kLanes<V> * kLanes<V>),
        rows(shapes.vectors()), cols(shapes.dim * stride), acc(stride) {}

  // The pairs, written from o[0].
  DOT_INLINE void Pairs(float *o) {
    const int64_t d = s.dim, v = s.vectors();
    float *c = cols.data();
    for (int64_t i = 0; i < v; ++i)
      for (int64_t k = 0; k < d; ++k) c[k * stride + i] = rows[i][k];
    for (int64_t i = 0; i < v; ++i) {
      const int64_t n = s.self_interaction ? i + 1 : i;  // the pairs (i, 0 .. n)
      if (n == 0) continue;
      const int64_t nb = (n + kLanes<V> - 1) / kLanes<V>;
      switch (nb) {
        case 1: GramRow<V, 1>(c, stride, rows[i], d, nb, acc.data()); break;
        case 2: GramRow<V, 2>(c, stride, rows[i], d, nb, acc.data()); break;
        case 3: GramRow<V, 3>(c, stride, rows[i], d, nb, acc.data()); break;
        case 4: GramRow<V, 4>(c, stride, rows[i], d, nb, acc.data()); break;
        case 5: GramRow<V, 5>(c, stride, rows[i], d, nb, acc.data()); break;
        case 6: GramRow<V, 6>(c, stride, rows[i], d, nb, acc.data()); break;
        case 7: GramRow<V, 7>(c, stride, rows[i], d, nb, acc.data()); break;
        case 8: GramRow<V, 8>(c, stride, rows[i], d, nb, acc.data()); break;
        default: GramRow<V, 0>(c, stride, rows[i], d, nb, acc.data());
      }
      std::memcpy(o, acc.data(), n * sizeof(float));
      o += n;
    }
  }

  DOT_INLINE void SetRows(const float *bottom, const float *emb, int64_t b) {
    rows[0] = bottom + b * s.dim;
    for (int64_t i = 1; i < s.vectors(); ++i) rows[i] = emb + (b * s.fields + i - 1) * s.dim;
  }
};

template <typename V>
DOT_INLINE bool LookupRows(const Shapes &s, int64_t table_rows, const float *table,
                           const int32_t *cat, const float *bottom, float *out, int64_t begin,
                           int64_t end) {
  Sample<V> w(s);
  for (int64_t b = begin; b < end; ++b) {
    w.rows[0] = bottom + b * s.dim;
    for (int64_t i = 1; i < s.vectors(); ++i) {
      const int64_t id = cat[b * s.fields + i - 1];
      if (id < 0 || id >= table_rows) return false;
      w.rows[i] = table + id * s.dim;
    }
    float *o = out + b * s.width;
    std::memcpy(o, w.rows[0], s.dim * sizeof(float));
    w.Pairs(o + s.dim);
  }
  return true;
}

template <typename V>
DOT_INLINE void PairRows(const Shapes &s, const float *bottom, const float *emb, float *out,
                         int64_t begin, int64_t end) {
  Sample<V> w(s);
  for (int64_t b = begin; b < end; ++b) {
    w.SetRows(bottom, emb, b);
    float *o = out + b * s.width;
    std::memcpy(o, w.rows[0], s.dim * sizeof(float));
    w.Pairs(o + s.dim);
  }
}

// dst[off .. off + R lanes) = init + sum_j srow[j] * rows[j][off .. off + R lanes).
template <typename V, int R>
DOT_INLINE void SymBlock(const float *srow, const float *const *rows, int64_t v, int64_t off,
                         const float *init, float *dst) {
  constexpr int64_t L = kLanes<V>;
  V a[R] = {}, t;
  if (init)
    for (int q = 0; q < R; ++q) Load(&a[q], init + off + L * q);
  for (int64_t j = 0; j < v; ++j) {
    const float sj = srow[j];
    const float *r = rows[j] + off;
    for (int q = 0; q < R; ++q) {
      Load(&t, r + L * q);
      a[q] += sj * t;
    }
  }
  for (int q = 0; q < R; ++q) Store(dst + off + L * q, &a[q]);
}

template <typename V>
DOT_INLINE void GradRows(const Shapes &s, const float *bottom, const float *emb,
                         const float *dout, float *d_bottom, float *d_emb, int64_t begin,
                         int64_t end) {
  constexpr int64_t L = kLanes<V>;
  const int64_t d = s.dim, v = s.vectors();
  Sample<V> w(s);
  std::vector<float> sym(v * v, 0.0f);  // off the diagonal every entry is set per sample
  for (int64_t b = begin; b < end; ++b) {
    w.SetRows(bottom, emb, b);
    const float *const *rows = w.rows.data();
    const float *g = dout + b * s.width + d;
    for (int64_t i = 0; i < v; ++i) {
      for (int64_t j = 0; j < i; ++j) {
        sym[i * v + j] = *g;
        sym[j * v + i] = *g;
        ++g;
      }
      if (s.self_interaction) sym[i * v + i] = 2.0f * *g++;
    }
    for (int64_t i = 0; i < v; ++i) {
      float *dst = i == 0 ? d_bottom + b * d : d_emb + (b * s.fields + i - 1) * d;
      const float *init = i == 0 ? dout + b * s.width : nullptr;
      const float *srow = &sym[i * v];
      int64_t off = 0;
      for (; off + 4 * L <= d; off += 4 * L) SymBlock<V, 4>(srow, rows, v, off, init, dst);
      switch ((d - off) / L) {
        case 3: SymBlock<V, 3>(srow, rows, v, off, init, dst); off += 3 * L; break;
        case 2: SymBlock<V, 2>(srow, rows, v, off, init, dst); off += 2 * L; break;
        case 1: SymBlock<V, 1>(srow, rows, v, off, init, dst); off += L; break;
        default: break;
      }
      for (; off < d; ++off) {
        float a = init ? init[off] : 0.0f;
        for (int64_t j = 0; j < v; ++j) a += srow[j] * rows[j][off];
        dst[off] = a;
      }
    }
  }
}

// Each pass twice: with 8-float vectors for AVX2 and FMA, and with 4-float
// ones for any CPU; Avx2() tells which one runs.
bool Avx2() {
#ifdef DOT_INTERACTION_AVX2
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

#ifdef DOT_INTERACTION_AVX2
#define DOT_AVX2 __attribute__((target("avx2,fma")))
#else
#define DOT_AVX2
#endif

DOT_AVX2 bool LookupRows8(const Shapes &s, int64_t r, const float *t, const int32_t *c,
                          const float *x, float *o, int64_t b, int64_t e) {
  return LookupRows<V8>(s, r, t, c, x, o, b, e);
}
bool LookupRows4(const Shapes &s, int64_t r, const float *t, const int32_t *c, const float *x,
                 float *o, int64_t b, int64_t e) {
  return LookupRows<V4>(s, r, t, c, x, o, b, e);
}
DOT_AVX2 void PairRows8(const Shapes &s, const float *x, const float *m, float *o, int64_t b,
                        int64_t e) {
  PairRows<V8>(s, x, m, o, b, e);
}
void PairRows4(const Shapes &s, const float *x, const float *m, float *o, int64_t b, int64_t e) {
  PairRows<V4>(s, x, m, o, b, e);
}
DOT_AVX2 void GradRows8(const Shapes &s, const float *x, const float *m, const float *g,
                        float *dx, float *dm, int64_t b, int64_t e) {
  GradRows<V8>(s, x, m, g, dx, dm, b, e);
}
void GradRows4(const Shapes &s, const float *x, const float *m, const float *g, float *dx,
               float *dm, int64_t b, int64_t e) {
  GradRows<V4>(s, x, m, g, dx, dm, b, e);
}

bool IsType(const char *dtype, const char *wanted) { return std::strcmp(dtype, wanted) == 0; }

int64_t Threads(const int32_t *layout) { return recsys::ThreadsAsked(layout); }

}  // namespace

extern "C" int DotInteraction(int nparam, void **params, int *ndims, int64_t **shapes,
                              const char **dtypes, void *, void *) {
  if (nparam != 5 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 2 || ndims[3] != 1 ||
      ndims[4] != 2 || shapes[3][0] != 2) {
    return 1;
  }
  for (int i = 0; i < 5; ++i) {
    if (!IsType(dtypes[i], i == 1 || i == 3 ? "int32" : "float32")) return 1;
  }
  const int32_t *layout = static_cast<const int32_t *>(params[3]);
  const Shapes s{shapes[1][0], shapes[1][1], shapes[0][1], shapes[4][1], layout[1] != 0};
  if (s.dim < 1 || shapes[2][0] != s.batch || shapes[2][1] != s.dim || shapes[4][0] != s.batch ||
      s.width != s.dim + s.pairs()) {
    return 1;
  }
  const int64_t table_rows = shapes[0][0];
  const float *table = static_cast<const float *>(params[0]);
  const int32_t *cat = static_cast<const int32_t *>(params[1]);
  const float *bottom = static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[4]);
  std::atomic<bool> outside{false};
  recsys::ParallelParts(s.batch, Threads(layout), kRowsPerThread,
                        [&](int64_t, int64_t begin, int64_t end) {
    const auto rows = Avx2() ? LookupRows8 : LookupRows4;
    if (!rows(s, table_rows, table, cat, bottom, out, begin, end)) outside = true;
  });
  return outside ? 2 : 0;
}

namespace {

// The training kernels' shapes, or false: bottom (B x D), emb (B x F x D),
// layout (2: threads, self_interaction), then ``width_at`` the (B x (D + P))
// output or output gradient.
bool TrainShapes(int nparam, int want, void **params, int *ndims, int64_t **shapes,
                 const char **dtypes, int width_at, Shapes *s) {
  if (nparam != want || ndims[0] != 2 || ndims[1] != 3 || ndims[2] != 1 || shapes[2][0] != 2 ||
      ndims[width_at] != 2) {
    return false;
  }
  for (int i = 0; i < nparam; ++i) {
    if (!IsType(dtypes[i], i == 2 ? "int32" : "float32")) return false;
  }
  const bool self_interaction = static_cast<const int32_t *>(params[2])[1] != 0;
  *s = Shapes{shapes[0][0], shapes[1][1], shapes[0][1], shapes[width_at][1], self_interaction};
  return s->dim >= 1 && shapes[1][0] == s->batch && shapes[1][2] == s->dim &&
         shapes[width_at][0] == s->batch && s->width == s->dim + s->pairs();
}

}  // namespace

extern "C" int DotPairs(int nparam, void **params, int *ndims, int64_t **shapes,
                        const char **dtypes, void *, void *) {
  Shapes s{};
  if (!TrainShapes(nparam, 4, params, ndims, shapes, dtypes, 3, &s)) return 1;
  const int32_t *layout = static_cast<const int32_t *>(params[2]);
  const float *bottom = static_cast<const float *>(params[0]);
  const float *emb = static_cast<const float *>(params[1]);
  float *out = static_cast<float *>(params[3]);
  recsys::ParallelParts(s.batch, Threads(layout), kRowsPerThread,
                        [&](int64_t, int64_t begin, int64_t end) {
    (Avx2() ? PairRows8 : PairRows4)(s, bottom, emb, out, begin, end);
  });
  return 0;
}

extern "C" int DotPairsGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                            const char **dtypes, void *, void *) {
  Shapes s{};
  if (!TrainShapes(nparam, 6, params, ndims, shapes, dtypes, 3, &s)) return 1;
  const int32_t *layout = static_cast<const int32_t *>(params[2]);
  if (ndims[4] != 2 || ndims[5] != 3) return 1;
  for (int k = 0; k < 3; ++k) {   // the gradients have their inputs' shapes
    if (shapes[4][k % 2] != shapes[0][k % 2] || shapes[5][k] != shapes[1][k]) return 1;
  }
  const float *bottom = static_cast<const float *>(params[0]);
  const float *emb = static_cast<const float *>(params[1]);
  const float *dout = static_cast<const float *>(params[3]);
  float *d_bottom = static_cast<float *>(params[4]);
  float *d_emb = static_cast<float *>(params[5]);
  recsys::ParallelParts(s.batch, Threads(layout), kRowsPerThread,
                        [&](int64_t, int64_t begin, int64_t end) {
    (Avx2() ? GradRows8 : GradRows4)(s, bottom, emb, dout, d_bottom, d_emb, begin, end);
  });
  return 0;
}
