// The softmax-gated mixture of ReLU experts, in one pass: a MindSpore custom
// operator of the AOT kind, CPU (see src/layers/gated_mixture.py).
//
// GatedMixture(experts (B x N1 float32), gates (B x N2 float32),
// layout (6 int32: T, E, U, expert_offset, gate_offset, threads))
// -> out (B x T*U float32):
//
//   out[b, t*U + u] = sum over e of softmax(gates[b, go + t*E .. go + t*E + E))[e]
//                                   * max(experts[b, eo + e*U + u], 0)
//
// with eo, go the offsets of the experts' and gates' columns in their inputs
// (the two inputs may be one tensor holding both). The softmax subtracts each
// task's largest logit first. As with MindSpore's operators, a NaN (or
// infinite) logit makes its task's outputs NaN, and the ReLU maps NaN to 0.
// Rows are split among up to ``threads`` threads, at least 1024 rows each.
//
// GatedMixtureGrad(experts, gates, layout, dout (B x T*U float32))
// -> (d_experts (B x N1), d_gates (B x N2)): its gradient (see GradRows), the
// columns of neither zero (so where one tensor holds both, the sum of the
// two is its gradient). The ReLU's gradient is 0 at 0 and for NaN.
//
// On x86 with AVX2 and FMA (checked at run time) the exponentials are taken
// 8 at a time with a polynomial (range reduction by ln 2, a degree-5
// polynomial on [-ln2/2, ln2/2]; the tests hold the mixture within 2e-6 of a
// float64 reference), and 8 rows go through at once; elsewhere, or built
// with -DGATED_MIXTURE_PORTABLE, a row at a time with std::exp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../engine/parallel_parts.h"
#if (defined(__x86_64__) || defined(__i386__)) && !defined(GATED_MIXTURE_PORTABLE)
#include <immintrin.h>
#define GATED_MIXTURE_AVX2 1
#endif

namespace {

constexpr int64_t kRowsPerThread = 1024;

struct Layout {
  int64_t tasks, experts, units, expert_offset, gate_offset;
};

// The threads the layout (params[2]) asks for, at least one.
int64_t Threads(void **params) {
  return recsys::ThreadsAsked(params[2], 5);
}

using ExpFn = void (*)(float *, int64_t);

void ExpPortable(float *v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::exp(v[i]);
}

#ifdef GATED_MIXTURE_AVX2
// e^x for 8 lanes: x = n ln2 + r with n an integer and |r| <= ln2/2, e^x =
// 2^n e^r, e^r = 1 + r + r^2 P(r) with P of degree 5 (a minimax fit).
__attribute__((target("avx2,fma"))) __m256 Exp8(__m256 x) {
  // clamp to where 2^n is a normal float; min/max keep NaN when it is the second operand
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365447505531f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, ln2 in two parts so that n * high is exact
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n through the exponent bits (n is in [-126, 127] after the clamp)
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__attribute__((target("avx2,fma"))) void ExpAvx2(float *v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, Exp8(_mm256_loadu_ps(v + i)));
  if (i < n) {  // the tail through a padded copy
    float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(v + i, v + n, tail);
    _mm256_storeu_ps(tail, Exp8(_mm256_loadu_ps(tail)));
    std::copy(tail, tail + (n - i), v + i);
  }
}
#endif

void MixRows(const float *experts, int64_t expert_stride, const float *gates, int64_t gate_stride,
             float *out, const Layout &l, int64_t begin, int64_t end, ExpFn exp_fn) {
  const int64_t t_n = l.tasks, e_n = l.experts, u_n = l.units;
  std::vector<float> weight(t_n * e_n), relu(e_n * u_n);
  for (int64_t b = begin; b < end; ++b) {
    const float *g = gates + b * gate_stride + l.gate_offset;
    for (int64_t t = 0; t < t_n; ++t) {  // logits less the task's largest
      float top = g[t * e_n];
      for (int64_t e = 1; e < e_n; ++e) top = g[t * e_n + e] > top ? g[t * e_n + e] : top;
      for (int64_t e = 0; e < e_n; ++e) weight[t * e_n + e] = g[t * e_n + e] - top;
    }
    exp_fn(weight.data(), t_n * e_n);
    const float *x = experts + b * expert_stride + l.expert_offset;
    for (int64_t i = 0; i < e_n * u_n; ++i) relu[i] = x[i] > 0.0f ? x[i] : 0.0f;
    float *o = out + b * t_n * u_n;
    for (int64_t t = 0; t < t_n; ++t) {
      const float *w = weight.data() + t * e_n;
      float total = 0.0f;
      for (int64_t e = 0; e < e_n; ++e) total += w[e];
      const float scale = 1.0f / total;
      for (int64_t u = 0; u < u_n; ++u) {
        float sum = 0.0f;
        for (int64_t e = 0; e < e_n; ++e) sum += w[e] * relu[e * u_n + u];
        o[t * u_n + u] = sum * scale;
      }
    }
  }
}

void MixRowsPortable(const float *experts, int64_t expert_stride, const float *gates,
                     int64_t gate_stride, float *out, const Layout &l, int64_t begin, int64_t end) {
  MixRows(experts, expert_stride, gates, gate_stride, out, l, begin, end, ExpPortable);
}

#ifdef GATED_MIXTURE_AVX2
// Eight rows at a time, one row per lane: every step is the same vector
// operation, with no sums across lanes. Each input column of the 8 rows is
// gathered into one vector, and each output column scattered back.
__attribute__((target("avx2,fma"))) void MixRowsAvx2(const float *experts, int64_t expert_stride,
                                                     const float *gates, int64_t gate_stride,
                                                     float *out, const Layout &l, int64_t begin,
                                                     int64_t end) {
  const int64_t t_n = l.tasks, e_n = l.experts, u_n = l.units;
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i at_expert = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(int32_t(expert_stride)));
  const __m256i at_gate = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(int32_t(gate_stride)));
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  std::vector<float> relu(8 * e_n * u_n), weight(8 * e_n), mixed(8 * t_n * u_n);
  int64_t b = begin;
  for (; b + 8 <= end; b += 8) {
    const float *x = experts + b * expert_stride + l.expert_offset;
    for (int64_t i = 0; i < e_n * u_n; ++i) {  // max(v, 0) is 0 for NaN
      _mm256_storeu_ps(&relu[8 * i], _mm256_max_ps(_mm256_i32gather_ps(x + i, at_expert, 4), zero));
    }
    const float *g = gates + b * gate_stride + l.gate_offset;
    for (int64_t t = 0; t < t_n; ++t) {
      __m256 top = _mm256_i32gather_ps(g + t * e_n, at_gate, 4);
      _mm256_storeu_ps(&weight[0], top);
      for (int64_t e = 1; e < e_n; ++e) {  // a NaN logit makes every weight NaN below
        const __m256 v = _mm256_i32gather_ps(g + t * e_n + e, at_gate, 4);
        _mm256_storeu_ps(&weight[8 * e], v);
        top = _mm256_max_ps(top, v);
      }
      __m256 total = zero;
      for (int64_t e = 0; e < e_n; ++e) {
        const __m256 w = Exp8(_mm256_sub_ps(_mm256_loadu_ps(&weight[8 * e]), top));
        _mm256_storeu_ps(&weight[8 * e], w);
        total = _mm256_add_ps(total, w);
      }
      const __m256 scale = _mm256_div_ps(one, total);
      for (int64_t u = 0; u < u_n; ++u) {
        __m256 sum = zero;
        for (int64_t e = 0; e < e_n; ++e) {
          sum = _mm256_fmadd_ps(_mm256_loadu_ps(&weight[8 * e]),
                                _mm256_loadu_ps(&relu[8 * (e * u_n + u)]), sum);
        }
        _mm256_storeu_ps(&mixed[8 * (t * u_n + u)], _mm256_mul_ps(sum, scale));
      }
    }
    float *o = out + b * t_n * u_n;
    for (int64_t lane = 0; lane < 8; ++lane) {
      for (int64_t j = 0; j < t_n * u_n; ++j) o[lane * t_n * u_n + j] = mixed[8 * j + lane];
    }
  }
  MixRows(experts, expert_stride, gates, gate_stride, out, l, b, end, ExpAvx2);
}
#endif

using RowsFn = void (*)(const float *, int64_t, const float *, int64_t, float *, const Layout &,
                        int64_t, int64_t);

// The AVX2 path needs the 8 rows' offsets as int32 (strides below 2^28).
RowsFn PickRows(int64_t expert_stride, int64_t gate_stride) {
#ifdef GATED_MIXTURE_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2 && expert_stride < (int64_t(1) << 28) && gate_stride < (int64_t(1) << 28)) {
    return MixRowsAvx2;
  }
#endif
  (void)expert_stride;
  (void)gate_stride;
  return MixRowsPortable;
}

// The gradient of the mixture for rows [begin, end): given dout (B x T*U),
// d_experts (B x N1) and d_gates (B x N2), zero outside the experts' and the
// gates' columns. With w the softmax weights and r the ReLU of the experts:
//   d_experts[e*U + u] = [x > 0] sum over t of w[t, e] dout[t, u]
//   d_gates[t*E + e]   = w[t, e] (a[t, e] - sum over e' of w[t, e'] a[t, e']),
//   a[t, e] = sum over u of dout[t, u] r[e, u]
void GradRows(const float *experts, int64_t n1, const float *gates, int64_t n2, const float *dout,
              float *d_experts, float *d_gates, const Layout &l, int64_t begin, int64_t end,
              ExpFn exp_fn) {
  const int64_t t_n = l.tasks, e_n = l.experts, u_n = l.units;
  std::vector<float> weight(t_n * e_n), relu(e_n * u_n), dot(t_n * e_n);
  for (int64_t b = begin; b < end; ++b) {
    const float *g = gates + b * n2 + l.gate_offset;
    for (int64_t t = 0; t < t_n; ++t) {
      float top = g[t * e_n];
      for (int64_t e = 1; e < e_n; ++e) top = g[t * e_n + e] > top ? g[t * e_n + e] : top;
      for (int64_t e = 0; e < e_n; ++e) weight[t * e_n + e] = g[t * e_n + e] - top;
    }
    exp_fn(weight.data(), t_n * e_n);
    for (int64_t t = 0; t < t_n; ++t) {
      float total = 0.0f;
      for (int64_t e = 0; e < e_n; ++e) total += weight[t * e_n + e];
      const float scale = 1.0f / total;
      for (int64_t e = 0; e < e_n; ++e) weight[t * e_n + e] *= scale;
    }
    const float *x = experts + b * n1 + l.expert_offset;
    for (int64_t i = 0; i < e_n * u_n; ++i) relu[i] = x[i] > 0.0f ? x[i] : 0.0f;
    const float *d = dout + b * t_n * u_n;
    float *dx = d_experts + b * n1, *dg = d_gates + b * n2;
    std::fill(dx, dx + n1, 0.0f);
    std::fill(dg, dg + n2, 0.0f);
    for (int64_t t = 0; t < t_n; ++t) {
      float weighted = 0.0f;
      for (int64_t e = 0; e < e_n; ++e) {
        float sum = 0.0f;
        for (int64_t u = 0; u < u_n; ++u) sum += d[t * u_n + u] * relu[e * u_n + u];
        dot[t * e_n + e] = sum;
        weighted += weight[t * e_n + e] * sum;
      }
      for (int64_t e = 0; e < e_n; ++e) {
        dg[l.gate_offset + t * e_n + e] = weight[t * e_n + e] * (dot[t * e_n + e] - weighted);
      }
    }
    for (int64_t e = 0; e < e_n; ++e) {
      for (int64_t u = 0; u < u_n; ++u) {
        float sum = 0.0f;
        for (int64_t t = 0; t < t_n; ++t) sum += weight[t * e_n + e] * d[t * u_n + u];
        dx[l.expert_offset + e * u_n + u] = x[e * u_n + u] > 0.0f ? sum : 0.0f;  // no branch
      }
    }
  }
}

#ifdef GATED_MIXTURE_AVX2
// GradRows eight rows at a time, one row per lane, as MixRowsAvx2.
__attribute__((target("avx2,fma"))) void GradRowsAvx2(const float *experts, int64_t n1,
                                                      const float *gates, int64_t n2,
                                                      const float *dout, float *d_experts,
                                                      float *d_gates, const Layout &l,
                                                      int64_t begin, int64_t end) {
  const int64_t t_n = l.tasks, e_n = l.experts, u_n = l.units;
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i at_expert = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(int32_t(n1)));
  const __m256i at_gate = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(int32_t(n2)));
  const __m256i at_dout = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(int32_t(t_n * u_n)));
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  std::vector<float> x(8 * e_n * u_n), relu(8 * e_n * u_n), weight(8 * t_n * e_n);
  std::vector<float> d(8 * t_n * u_n), dx(8 * e_n * u_n), dg(8 * t_n * e_n);
  int64_t b = begin;
  for (; b + 8 <= end; b += 8) {
    const float *xs = experts + b * n1 + l.expert_offset;
    for (int64_t i = 0; i < e_n * u_n; ++i) {
      const __m256 v = _mm256_i32gather_ps(xs + i, at_expert, 4);
      _mm256_storeu_ps(&x[8 * i], v);
      _mm256_storeu_ps(&relu[8 * i], _mm256_max_ps(v, zero));  // 0 for NaN
    }
    for (int64_t i = 0; i < t_n * u_n; ++i) {
      _mm256_storeu_ps(&d[8 * i], _mm256_i32gather_ps(dout + b * t_n * u_n + i, at_dout, 4));
    }
    const float *g = gates + b * n2 + l.gate_offset;
    for (int64_t t = 0; t < t_n; ++t) {
      float *w = &weight[8 * t * e_n];
      __m256 top = _mm256_i32gather_ps(g + t * e_n, at_gate, 4);
      _mm256_storeu_ps(w, top);
      for (int64_t e = 1; e < e_n; ++e) {
        const __m256 v = _mm256_i32gather_ps(g + t * e_n + e, at_gate, 4);
        _mm256_storeu_ps(w + 8 * e, v);
        top = _mm256_max_ps(top, v);
      }
      __m256 total = zero;
      for (int64_t e = 0; e < e_n; ++e) {
        const __m256 v = Exp8(_mm256_sub_ps(_mm256_loadu_ps(w + 8 * e), top));
        _mm256_storeu_ps(w + 8 * e, v);
        total = _mm256_add_ps(total, v);
      }
      const __m256 scale = _mm256_div_ps(one, total);
      __m256 weighted = zero;
      for (int64_t e = 0; e < e_n; ++e) {
        const __m256 we = _mm256_mul_ps(_mm256_loadu_ps(w + 8 * e), scale);
        _mm256_storeu_ps(w + 8 * e, we);
        __m256 dot = zero;
        for (int64_t u = 0; u < u_n; ++u) {
          dot = _mm256_fmadd_ps(_mm256_loadu_ps(&d[8 * (t * u_n + u)]),
                                _mm256_loadu_ps(&relu[8 * (e * u_n + u)]), dot);
        }
        _mm256_storeu_ps(&dg[8 * (t * e_n + e)], dot);
        weighted = _mm256_fmadd_ps(we, dot, weighted);
      }
      for (int64_t e = 0; e < e_n; ++e) {
        const __m256 dot = _mm256_loadu_ps(&dg[8 * (t * e_n + e)]);
        _mm256_storeu_ps(&dg[8 * (t * e_n + e)],
                         _mm256_mul_ps(_mm256_loadu_ps(w + 8 * e), _mm256_sub_ps(dot, weighted)));
      }
    }
    for (int64_t e = 0; e < e_n; ++e) {
      for (int64_t u = 0; u < u_n; ++u) {
        __m256 sum = zero;
        for (int64_t t = 0; t < t_n; ++t) {
          sum = _mm256_fmadd_ps(_mm256_loadu_ps(&weight[8 * (t * e_n + e)]),
                                _mm256_loadu_ps(&d[8 * (t * u_n + u)]), sum);
        }
        const __m256 positive = _mm256_cmp_ps(_mm256_loadu_ps(&x[8 * (e * u_n + u)]), zero, _CMP_GT_OQ);
        _mm256_storeu_ps(&dx[8 * (e * u_n + u)], _mm256_and_ps(sum, positive));
      }
    }
    for (int64_t lane = 0; lane < 8; ++lane) {
      float *rx = d_experts + (b + lane) * n1, *rg = d_gates + (b + lane) * n2;
      std::fill(rx, rx + n1, 0.0f);
      std::fill(rg, rg + n2, 0.0f);
      for (int64_t j = 0; j < e_n * u_n; ++j) rx[l.expert_offset + j] = dx[8 * j + lane];
      for (int64_t j = 0; j < t_n * e_n; ++j) rg[l.gate_offset + j] = dg[8 * j + lane];
    }
  }
  GradRows(experts, n1, gates, n2, dout, d_experts, d_gates, l, b, end, ExpAvx2);
}
#endif

using GradFn = void (*)(const float *, int64_t, const float *, int64_t, const float *, float *,
                        float *, const Layout &, int64_t, int64_t);

void GradRowsPortable(const float *experts, int64_t n1, const float *gates, int64_t n2,
                      const float *dout, float *d_experts, float *d_gates, const Layout &l,
                      int64_t begin, int64_t end) {
  GradRows(experts, n1, gates, n2, dout, d_experts, d_gates, l, begin, end, ExpPortable);
}

// As PickRows (the rows of dout are T*U wide, below the strides).
GradFn PickGrad(int64_t n1, int64_t n2) {
#ifdef GATED_MIXTURE_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2 && n1 < (int64_t(1) << 28) && n2 < (int64_t(1) << 28)) return GradRowsAvx2;
#endif
  (void)n1;
  (void)n2;
  return GradRowsPortable;
}

// The inputs both kernels start with: experts, gates, layout and the
// (B x T*U) tensor at index 3 (out or dout); false for shapes, dtypes or a
// layout they do not take.
bool ParseMixture(int nparam, int expected, int *ndims, int64_t **shapes, const char **dtypes,
                  void **params, Layout *l) {
  if (nparam != expected || ndims[2] != 1 || shapes[2][0] != 6) return false;
  for (int i = 0; i < expected; ++i) {
    if (i != 2 && ndims[i] != 2) return false;
    if (std::strcmp(dtypes[i], i == 2 ? "int32" : "float32") != 0) return false;
  }
  const int32_t *layout = static_cast<const int32_t *>(params[2]);
  *l = Layout{layout[0], layout[1], layout[2], layout[3], layout[4]};
  const int64_t rows = shapes[0][0], n1 = shapes[0][1], n2 = shapes[1][1];
  return l->tasks >= 1 && l->experts >= 1 && l->units >= 1 && l->expert_offset >= 0 &&
         l->gate_offset >= 0 && l->expert_offset + l->experts * l->units <= n1 &&
         l->gate_offset + l->tasks * l->experts <= n2 && shapes[1][0] == rows &&
         shapes[3][0] == rows && shapes[3][1] == l->tasks * l->units;
}

}  // namespace

// Error codes: 1 for shapes, dtypes or a layout it does not take.
extern "C" int GatedMixture(int nparam, void **params, int *ndims, int64_t **shapes,
                            const char **dtypes, void *, void *) {
  Layout l;
  if (!ParseMixture(nparam, 4, ndims, shapes, dtypes, params, &l)) return 1;
  const int64_t n1 = shapes[0][1], n2 = shapes[1][1];
  const float *experts = static_cast<const float *>(params[0]);
  const float *gates = static_cast<const float *>(params[1]);
  float *out = static_cast<float *>(params[3]);
  const RowsFn rows_fn = PickRows(n1, n2);
  recsys::ParallelParts(shapes[0][0], Threads(params), kRowsPerThread, [&](int64_t, int64_t b, int64_t e) {
    rows_fn(experts, n1, gates, n2, out, l, b, e);
  });
  return 0;
}

// (experts, gates, layout, dout) -> (d_experts, d_gates); error code 1 as above.
extern "C" int GatedMixtureGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                                const char **dtypes, void *, void *) {
  Layout l;
  if (!ParseMixture(nparam, 6, ndims, shapes, dtypes, params, &l)) return 1;
  const int64_t rows = shapes[0][0], n1 = shapes[0][1], n2 = shapes[1][1];
  if (shapes[4][0] != rows || shapes[4][1] != n1 || shapes[5][0] != rows || shapes[5][1] != n2) {
    return 1;
  }
  const float *experts = static_cast<const float *>(params[0]);
  const float *gates = static_cast<const float *>(params[1]);
  const float *dout = static_cast<const float *>(params[3]);
  float *d_experts = static_cast<float *>(params[4]);
  float *d_gates = static_cast<float *>(params[5]);
  const GradFn grad_fn = PickGrad(n1, n2);
  recsys::ParallelParts(rows, Threads(params), kRowsPerThread, [&](int64_t, int64_t b, int64_t e) {
    grad_fn(experts, n1, gates, n2, dout, d_experts, d_gates, l, b, e);
  });
  return 0;
}
