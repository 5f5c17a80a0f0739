// ReLU, then max pooling over 2x2 windows with stride 2 (an odd last row or
// column is dropped), in one pass: nn.ReLU followed by nn.MaxPool2d(2, 2) as a
// MindSpore custom operator of the AOT kind, CPU (see src/layers/relu_pool.py).
//
// ReluPool(x (B x C x H x W float32), layout (1 int32: threads))
// -> out (B x C x H/2 x W/2): out = max(0, the window's largest value).
//
// ReluPoolGrad(x, layout, dout (B x C x H/2 x W/2)) -> dx (B x C x H x W): each
// window's dout goes to its first largest value (row-major order), when that
// value is above 0, and every other entry of dx is 0: the gradient of the two
// operators it replaces. A NaN is never a window's largest value (the
// graph's ReLU maps NaN to 0); a window of NaNs gives 0. The B*C planes are
// split among up to ``threads`` threads, at least 16 planes each.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../engine/parallel_parts.h"

namespace {

constexpr int64_t kPlanesPerThread = 16;

// Whether the `want` parameters fit: x (B, C, H, W) with H, W >= 2, the
// layout, then (B, C, H/2, W/2) (ReluPool's output, ReluPoolGrad's dout) and,
// for the gradient, dx of x's shape.
bool Parse(int nparam, int want, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != want || ndims[0] != 4 || ndims[1] != 1 || shapes[1][0] < 1) return false;
  for (int i = 0; i < want; ++i) {
    if (std::strcmp(dtypes[i], i == 1 ? "int32" : "float32") != 0) return false;
  }
  const int64_t *x = shapes[0], *pooled = shapes[2];
  if (x[2] < 2 || x[3] < 2 || ndims[2] != 4 || pooled[0] != x[0] || pooled[1] != x[1] ||
      pooled[2] != x[2] / 2 || pooled[3] != x[3] / 2) {
    return false;
  }
  if (want == 4) {
    if (ndims[3] != 4) return false;
    for (int i = 0; i < 4; ++i) {
      if (shapes[3][i] != x[i]) return false;
    }
  }
  return true;
}

int64_t Threads(void **params) {
  return recsys::ThreadsAsked(params[1]);
}

// The position (0-3: row-major in the window) of the window's first largest
// value, and that value; NaN is never the largest.
inline int Largest(const float *r0, const float *r1, float *value) {
  const float v[4] = {r0[0], r0[1], r1[0], r1[1]};
  int at = 0;
  float best = v[0] == v[0] ? v[0] : -__builtin_inff();
  for (int i = 1; i < 4; ++i) {
    if (v[i] > best) {
      best = v[i];
      at = i;
    }
  }
  *value = best;
  return at;
}

}  // namespace

extern "C" int ReluPool(int nparam, void **params, int *ndims, int64_t **shapes,
                        const char **dtypes, void *, void *) {
  if (!Parse(nparam, 3, ndims, shapes, dtypes)) return 1;
  const int64_t planes = shapes[0][0] * shapes[0][1], h = shapes[0][2], w = shapes[0][3];
  const int64_t ho = h / 2, wo = w / 2;
  const float *x = static_cast<const float *>(params[0]);
  float *out = static_cast<float *>(params[2]);
  recsys::ParallelParts(planes, Threads(params), kPlanesPerThread,
                        [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t oy = 0; oy < ho; ++oy) {
        const float *r0 = x + (p * h + 2 * oy) * w, *r1 = r0 + w;
        float *o = out + (p * ho + oy) * wo;
        for (int64_t ox = 0; ox < wo; ++ox) {
          float value;
          Largest(r0 + 2 * ox, r1 + 2 * ox, &value);
          o[ox] = value > 0.0f ? value : 0.0f;
        }
      }
    }
  });
  return 0;
}

extern "C" int ReluPoolGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                            const char **dtypes, void *, void *) {
  if (!Parse(nparam, 4, ndims, shapes, dtypes)) return 1;
  const int64_t planes = shapes[0][0] * shapes[0][1], h = shapes[0][2], w = shapes[0][3];
  const int64_t ho = h / 2, wo = w / 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *dout = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  recsys::ParallelParts(planes, Threads(params), kPlanesPerThread,
                        [&](int64_t, int64_t begin, int64_t end) {
    std::memset(dx + begin * h * w, 0, sizeof(float) * (end - begin) * h * w);
    for (int64_t p = begin; p < end; ++p) {
      for (int64_t oy = 0; oy < ho; ++oy) {
        const int64_t row = (p * h + 2 * oy) * w;
        const float *d = dout + (p * ho + oy) * wo;
        for (int64_t ox = 0; ox < wo; ++ox) {
          float value;
          const int at = Largest(x + row + 2 * ox, x + row + w + 2 * ox, &value);
          if (value > 0.0f) dx[row + (at >> 1) * w + 2 * ox + (at & 1)] = d[ox];
        }
      }
    }
  });
  return 0;
}
