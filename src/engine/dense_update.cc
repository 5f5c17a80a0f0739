// Every dense weight's optimizer update in one kernel, with the gradients'
// global-norm clipping and weight decay: MindSpore custom operators of the
// AOT kind, CPU (see src/engine/dense_update.py).
//
// Dense<Kind>(layout, hyper, decay, lr, step, [beta1_power, beta2_power],
//             params x P, grads x P, states...) -> (1,) int32 0
//
//   layout  int32 [P, threads]
//   hyper   float32 [clip_norm, the optimizer's constants]
//   decay   float32 (P,): each weight's decay rate (0 where it has none)
//   lr      float32 (L,): the per-step learning rates; step s uses lr[min(s, L - 1)]
//   step    int32 (1,): the step, incremented
//
// written in place: the step, Adam's beta powers, the params and their
// states. For each weight, as MindSpore's optimizers compute it after the
// train step's clipping:
//
//   g <- g * clip_norm / max(norm, clip_norm) + decay * p   (norm: of all grads;
//                                                            no clipping at clip_norm 0)
//   DenseSgd      hyper [clip_norm]:                 p -= lr g
//   DenseMomentum hyper [clip_norm, momentum], a:    a = a momentum + g, p -= lr a
//   DenseAdagrad  hyper [clip_norm], a:              a += g^2, p -= lr g / sqrt(a)
//   DenseAdam     hyper [clip_norm, beta1, beta2, eps], beta powers (1,), m, v:
//         beta1_power *= beta1, beta2_power *= beta2,
//         lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power),
//         m += (g - m) (1 - beta1), v += (g^2 - v) (1 - beta2),
//         p -= lr_t m / (sqrt(v) + eps)
//
// A NaN or infinite gradient with clipping makes every weight NaN (the norm is
// NaN), as the graph's clipping does, so the trainer's divergence check sees
// it. All weights are seen as one run of values, split among up to ``threads``
// threads, at least kPerThread values each. Error code 1 for inputs of the
// wrong count, dtypes or shapes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "parallel_parts.h"

namespace {

constexpr int64_t kPerThread = 1 << 16;

struct Weights {
  int64_t count = 0;                 // P
  std::vector<float *> params;
  std::vector<const float *> grads;
  std::vector<float *> first, second;  // the optimizer's states (Adam: m, v)
  std::vector<int64_t> sizes;
  int64_t total = 0;
};

int64_t Elements(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool IsFloat(const char *dtype) { return std::strcmp(dtype, "float32") == 0; }

// The head's inputs (layout, hyper, decay, lr, step, then `scalars` (1,)
// float32 inputs) and `groups` runs of P float32 tensors, each shaped as the
// params; checks them and fills `w`. False for anything else.
bool Parse(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
           int64_t hyper_size, int scalars, int groups, Weights *w) {
  const int head = 5 + scalars;
  if (nparam < head + 1 || std::strcmp(dtypes[0], "int32") != 0 || ndims[0] != 1 ||
      shapes[0][0] != 2) {
    return false;
  }
  const int64_t p = static_cast<const int32_t *>(params[0])[0];
  if (p < 1 || nparam != head + groups * p + 1) return false;
  if (!IsFloat(dtypes[1]) || ndims[1] != 1 || shapes[1][0] != hyper_size) return false;
  if (!IsFloat(dtypes[2]) || ndims[2] != 1 || shapes[2][0] != p) return false;
  if (!IsFloat(dtypes[3]) || ndims[3] != 1 || shapes[3][0] < 1) return false;
  if (std::strcmp(dtypes[4], "int32") != 0 || Elements(ndims[4], shapes[4]) != 1) return false;
  for (int i = 5; i < head; ++i) {
    if (!IsFloat(dtypes[i]) || Elements(ndims[i], shapes[i]) != 1) return false;
  }
  const int out = nparam - 1;
  if (std::strcmp(dtypes[out], "int32") != 0 || Elements(ndims[out], shapes[out]) != 1) return false;
  w->count = p;
  for (int64_t i = 0; i < p; ++i) {
    const int64_t size = Elements(ndims[head + i], shapes[head + i]);
    for (int g = 0; g < groups; ++g) {
      const int64_t at = head + g * p + i;
      if (!IsFloat(dtypes[at]) || Elements(ndims[at], shapes[at]) != size) return false;
    }
    w->sizes.push_back(size);
    w->total += size;
    w->params.push_back(static_cast<float *>(params[head + i]));
    w->grads.push_back(static_cast<const float *>(params[head + p + i]));
    if (groups > 2) w->first.push_back(static_cast<float *>(params[head + 2 * p + i]));
    if (groups > 3) w->second.push_back(static_cast<float *>(params[head + 3 * p + i]));
  }
  return true;
}

// fn(weight, begin, end) over the values [begin, end) of the run of all
// weights, cut at the weights' borders.
void ForRange(const Weights &w, int64_t begin, int64_t end,
              const std::function<void(int64_t, int64_t, int64_t)> &fn) {
  int64_t start = 0;
  for (int64_t i = 0; i < w.count && start < end; ++i) {
    const int64_t stop = start + w.sizes[i];
    const int64_t b = std::max(begin, start), e = std::min(end, stop);
    if (b < e) fn(i, b - start, e - start);
    start = stop;
  }
}

float Same(float lr) { return lr; }

// hyper[k] and decay[i], read only once the inputs are checked
float Hyper(void **params, int k) { return static_cast<const float *>(params[1])[k]; }
float Decay(void **params, int64_t i) { return static_cast<const float *>(params[2])[i]; }

// The loops over one weight's values [0, n), each built for AVX2 and FMA as
// well as for the baseline on x86, the copy picked at load time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DENSE_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define DENSE_CLONES
#endif
#define R __restrict

// The sum of squares: float sums of 8 lanes over blocks, added up in double.
DENSE_CLONES double SumSquares(const float *R g, int64_t n) {
  double total = 0.0;
  for (int64_t start = 0; start < n; start += 4096) {
    const int64_t end = std::min(n, start + 4096);
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = start;
    for (; j + 8 <= end; j += 8) {
      for (int k = 0; k < 8; ++k) lanes[k] += g[j + k] * g[j + k];
    }
    for (; j < end; ++j) total += static_cast<double>(g[j]) * g[j];
    for (int k = 0; k < 8; ++k) total += lanes[k];
  }
  return total;
}

DENSE_CLONES void SgdLoop(float *R p, const float *R g, int64_t n, float lr, float factor, float d) {
  for (int64_t j = 0; j < n; ++j) p[j] -= lr * (g[j] * factor + d * p[j]);
}

DENSE_CLONES void MomentumLoop(float *R p, float *R a, const float *R g, int64_t n, float lr,
                               float factor, float d, float momentum) {
  for (int64_t j = 0; j < n; ++j) {
    a[j] = a[j] * momentum + (g[j] * factor + d * p[j]);
    p[j] -= lr * a[j];
  }
}

DENSE_CLONES void AdagradLoop(float *R p, float *R a, const float *R g, int64_t n, float lr,
                              float factor, float d) {
  for (int64_t j = 0; j < n; ++j) {
    const float grad = g[j] * factor + d * p[j];
    a[j] += grad * grad;
    p[j] -= lr * grad / std::sqrt(a[j]);
  }
}

DENSE_CLONES void AdamLoop(float *R p, float *R m, float *R v, const float *R g, int64_t n,
                           float lr_t, float factor, float d, float beta1, float beta2, float eps) {
  for (int64_t j = 0; j < n; ++j) {
    const float grad = g[j] * factor + d * p[j];
    m[j] += (grad - m[j]) * (1.0f - beta1);
    v[j] += (grad * grad - v[j]) * (1.0f - beta2);
    p[j] -= lr_t * m[j] / (std::sqrt(v[j]) + eps);
  }
}

// clip_norm / max(global norm, clip_norm), or 1 without clipping.
float ClipFactor(const Weights &w, float clip_norm, int64_t threads) {
  if (!(clip_norm > 0.0f)) return 1.0f;
  std::vector<double> sums(std::max<int64_t>(1, threads), 0.0);
  recsys::ParallelParts(w.total, threads, kPerThread, [&](int64_t t, int64_t begin, int64_t end) {
    double sum = 0.0;
    ForRange(w, begin, end,
             [&](int64_t i, int64_t b, int64_t e) { sum += SumSquares(w.grads[i] + b, e - b); });
    sums[t] = sum;
  });
  double total = 0.0;
  for (double s : sums) total += s;
  const float norm = static_cast<float>(std::sqrt(total));
  if (std::isnan(norm)) return norm;
  return clip_norm / std::max(norm, clip_norm);
}

float StepRate(void **params, int64_t **shapes) {
  const float *lr = static_cast<const float *>(params[3]);
  int32_t *step = static_cast<int32_t *>(params[4]);
  const int64_t at = std::min<int64_t>(std::max<int32_t>(step[0], 0), shapes[3][0] - 1);
  step[0] += 1;
  return lr[at];
}

// The common frame of every kernel: parse, take the step's rate (through
// rate(lr)), clip, and run update(weights, i, begin, end, rate, factor) over
// the parts of the run. Nothing is written when the inputs are refused.
template <typename Rate, typename Update>
int Run(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
        int64_t hyper_size, int scalars, int groups, Rate rate, Update update) {
  Weights w;
  if (!Parse(nparam, params, ndims, shapes, dtypes, hyper_size, scalars, groups, &w)) return 1;
  const int64_t threads = recsys::ThreadsAsked(params[0], 1);
  const float lr = rate(StepRate(params, shapes));
  const float factor = ClipFactor(w, Hyper(params, 0), threads);
  recsys::ParallelParts(w.total, threads, kPerThread, [&](int64_t, int64_t begin, int64_t end) {
    ForRange(w, begin, end, [&](int64_t i, int64_t b, int64_t e) { update(w, i, b, e, lr, factor); });
  });
  static_cast<int32_t *>(params[nparam - 1])[0] = 0;
  return 0;
}

}  // namespace

extern "C" int DenseSgd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                        void *, void *) {
  return Run(nparam, params, ndims, shapes, dtypes, 1, 0, 2, Same,
             [&](const Weights &w, int64_t i, int64_t b, int64_t e, float lr, float factor) {
               SgdLoop(w.params[i] + b, w.grads[i] + b, e - b, lr, factor, Decay(params, i));
             });
}

extern "C" int DenseMomentum(int nparam, void **params, int *ndims, int64_t **shapes,
                             const char **dtypes, void *, void *) {
  return Run(nparam, params, ndims, shapes, dtypes, 2, 0, 3, Same,
             [&](const Weights &w, int64_t i, int64_t b, int64_t e, float lr, float factor) {
               MomentumLoop(w.params[i] + b, w.first[i] + b, w.grads[i] + b, e - b, lr, factor,
                            Decay(params, i), Hyper(params, 1));
             });
}

extern "C" int DenseAdagrad(int nparam, void **params, int *ndims, int64_t **shapes,
                            const char **dtypes, void *, void *) {
  return Run(nparam, params, ndims, shapes, dtypes, 1, 0, 3, Same,
             [&](const Weights &w, int64_t i, int64_t b, int64_t e, float lr, float factor) {
               AdagradLoop(w.params[i] + b, w.first[i] + b, w.grads[i] + b, e - b, lr, factor,
                           Decay(params, i));
             });
}

extern "C" int DenseAdam(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                         void *, void *) {
  auto corrected = [&](float lr) {  // called once the inputs are checked
    const float beta1 = Hyper(params, 1), beta2 = Hyper(params, 2);
    float *beta1_power = static_cast<float *>(params[5]);
    float *beta2_power = static_cast<float *>(params[6]);
    beta1_power[0] *= beta1;
    beta2_power[0] *= beta2;
    return lr * std::sqrt(1.0f - beta2_power[0]) / (1.0f - beta1_power[0]);
  };
  return Run(nparam, params, ndims, shapes, dtypes, 4, 2, 4, corrected,
             [&](const Weights &w, int64_t i, int64_t b, int64_t e, float lr_t, float factor) {
               AdamLoop(w.params[i] + b, w.first[i] + b, w.second[i] + b, w.grads[i] + b, e - b, lr_t,
                        factor, Decay(params, i), Hyper(params, 1), Hyper(params, 2), Hyper(params, 3));
             });
}
