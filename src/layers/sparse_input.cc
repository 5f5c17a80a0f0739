// The product x @ w + bias of a mostly-zero input (one-hot columns): a
// MindSpore custom operator of the AOT kind, CPU (see src/layers/sparse_input.py).
//
// SparseInputProduct(x (B x K float32), w (K x N float32), bias (N float32),
// threads (1 int32)) -> out (B x N float32): out[b] = bias + the sum over the
// columns c with x[b, c] != 0 of x[b, c] * w[c]. The zeros of x are skipped,
// so the work is one pass over x plus N multiply-adds per nonzero, instead of
// K * N per row. NaN counts as nonzero. Rows are split among up to
// ``threads`` threads, at least 256 rows each.
//
// On x86 with AVX2 and FMA (checked at run time) each row's nonzero columns
// are listed 8 at a time without branches (a compare, its 8-bit mask and a
// table of the set bits' positions), then out[b] is accumulated 64 columns
// at a time in registers; elsewhere, or built with -DSPARSE_INPUT_PORTABLE,
// a plain loop does the same.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../engine/parallel_parts.h"
#if (defined(__x86_64__) || defined(__i386__)) && !defined(SPARSE_INPUT_PORTABLE)
#include <immintrin.h>
#define SPARSE_INPUT_AVX2 1
#endif

namespace {

using RowsFn = void (*)(const float *, const float *, const float *, float *, int64_t, int64_t,
                        int64_t, int64_t);

void RowsPortable(const float *x, const float *w, const float *bias, float *out, int64_t begin,
                  int64_t end, int64_t k, int64_t n) {
  for (int64_t b = begin; b < end; ++b) {
    float *o = out + b * n;
    std::copy(bias, bias + n, o);
    const float *xr = x + b * k;
    for (int64_t c = 0; c < k; ++c) {
      const float v = xr[c];
      if (v == 0.0f) continue;
      const float *wr = w + c * n;
      for (int64_t j = 0; j < n; ++j) o[j] += v * wr[j];
    }
  }
}

#ifdef SPARSE_INPUT_AVX2
// kSetBits.at[m]: the positions of the set bits of the 8-bit mask m, in order.
struct SetBits {
  int32_t at[256][8];
  SetBits() {
    for (int m = 0; m < 256; ++m) {
      int count = 0;
      for (int j = 0; j < 8; ++j) {
        if (m >> j & 1) at[m][count++] = j;
      }
      for (; count < 8; ++count) at[m][count] = 0;
    }
  }
};
const SetBits kSetBits;

// The nonzero columns of row xr into idx (room for k + 8); returns how many.
__attribute__((target("avx2,fma"))) int64_t NonZeros(const float *xr, int64_t k, int32_t *idx) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t count = 0, c = 0;
  for (; c + 8 <= k; c += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(xr + c), zero, _CMP_NEQ_UQ));
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(kSetBits.at[mask]));
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(idx + count),
                        _mm256_add_epi32(bits, _mm256_set1_epi32(static_cast<int32_t>(c))));
    count += __builtin_popcount(static_cast<unsigned>(mask));
  }
  for (; c < k; ++c) {
    if (xr[c] != 0.0f) idx[count++] = static_cast<int32_t>(c);
  }
  return count;
}

// o[0 .. 8 * V) = bias + the sum over the listed columns of xr[c] * w[c, 0 .. 8 * V).
template <int V>
__attribute__((target("avx2,fma"))) void Accumulate(const float *xr, const int32_t *idx,
                                                    int64_t count, const float *w, int64_t n,
                                                    const float *bias, float *o) {
  __m256 acc[V];
  for (int q = 0; q < V; ++q) acc[q] = _mm256_loadu_ps(bias + 8 * q);
  for (int64_t i = 0; i < count; ++i) {
    const __m256 v = _mm256_set1_ps(xr[idx[i]]);
    const float *wr = w + static_cast<int64_t>(idx[i]) * n;
    for (int q = 0; q < V; ++q) acc[q] = _mm256_fmadd_ps(v, _mm256_loadu_ps(wr + 8 * q), acc[q]);
  }
  for (int q = 0; q < V; ++q) _mm256_storeu_ps(o + 8 * q, acc[q]);
}

__attribute__((target("avx2,fma"))) void RowsAvx2(const float *x, const float *w,
                                                  const float *bias, float *out, int64_t begin,
                                                  int64_t end, int64_t k, int64_t n) {
  using Block = void (*)(const float *, const int32_t *, int64_t, const float *, int64_t,
                         const float *, float *);
  static const Block kBlocks[9] = {nullptr,       Accumulate<1>, Accumulate<2>,
                                   Accumulate<3>, Accumulate<4>, Accumulate<5>,
                                   Accumulate<6>, Accumulate<7>, Accumulate<8>};
  std::vector<int32_t> idx(k + 8);
  for (int64_t b = begin; b < end; ++b) {
    const float *xr = x + b * k;
    float *o = out + b * n;
    const int64_t count = NonZeros(xr, k, idx.data());
    int64_t j = 0;
    for (; j + 8 <= n;) {  // blocks of up to 64 columns, 8 at a time
      const int64_t vectors = std::min<int64_t>(8, (n - j) / 8);
      kBlocks[vectors](xr, idx.data(), count, w + j, n, bias + j, o + j);
      j += 8 * vectors;
    }
    for (; j < n; ++j) {  // the last n % 8 columns
      float sum = bias[j];
      for (int64_t i = 0; i < count; ++i) {
        sum += xr[idx[i]] * w[static_cast<int64_t>(idx[i]) * n + j];
      }
      o[j] = sum;
    }
  }
}
#endif

RowsFn PickRows() {
#ifdef SPARSE_INPUT_AVX2
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return RowsAvx2;
#endif
  return RowsPortable;
}

}  // namespace

// Error codes: 1 for shapes or dtypes it does not take.
extern "C" int SparseInputProduct(int nparam, void **params, int *ndims, int64_t **shapes,
                                  const char **dtypes, void *, void *) {
  if (nparam != 5 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 1 || ndims[3] != 1 ||
      ndims[4] != 2) {
    return 1;
  }
  for (int i = 0; i < 5; ++i) {
    if (std::strcmp(dtypes[i], i == 3 ? "int32" : "float32") != 0) return 1;
  }
  const int64_t rows = shapes[0][0], k = shapes[0][1], n = shapes[1][1];
  if (shapes[1][0] != k || shapes[2][0] != n || shapes[4][0] != rows || shapes[4][1] != n) {
    return 1;
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const int64_t wanted = recsys::ThreadsAsked(params[3]);
  float *out = static_cast<float *>(params[4]);
  static const RowsFn rows_fn = PickRows();
  recsys::ParallelParts(rows, wanted, 256, [&](int64_t, int64_t begin, int64_t end) {
    rows_fn(x, w, bias, out, begin, end, k, n);
  });
  return 0;
}
