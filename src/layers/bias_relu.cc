// A layer's bias and ReLU in one pass: y = max(x + bias, 0), bias broadcast
// over the rows, and its gradient in one pass. MindSpore custom operators of
// the AOT kind, CPU (see src/layers/bias_relu.py); the graph's bias addition
// and ReLU are two passes over the layer's output, and their gradients two
// more (ReluGrad, then the bias's ReduceSum).
//
// BiasRelu(x (B x N float32), bias (N float32), threads (1 int32)) -> y (B x N float32)
// BiasReluGrad(y (B x N), dy (B x N), threads (1 int32))
//   -> dx (B x N) = dy where y > 0, else 0; dbias (N) = dx summed over the rows
//
// With dropout of rate p (training's, inverted: kept values scaled by
// 1 / (1 - p)) in the same pass:
// BiasReluDropout(x, bias, key (2 int32), threads, rate (1 float32: p))
//   -> y = max(x + bias, 0) / (1 - p) where value i is kept, else 0
// BiasReluDropoutGrad(y, dy, threads, rate) -> dx = dy / (1 - p) where y > 0,
//   else 0; dbias as above
// Value i (row-major, modulo 2^32) is dropped when a hash of i and the key,
// a uniform 32-bit number, falls below p 2^32: the mask depends on the key
// and the shape only, not on the threads; a new key (the caller draws one
// per call) gives a new mask. The gradient needs no mask: a dropped value is
// 0 in y.
//
// Rows are split among up to ``threads`` threads, at least kValuesPerThread
// values each (the gradient's column sums per thread, then added in thread
// order). Error code 1 for shapes or dtypes it does not take.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../engine/parallel_parts.h"

namespace {

constexpr int64_t kValuesPerThread = 1 << 18;  // below it a thread costs more than it saves

void Rows(const float *x, const float *bias, float *y, int64_t cols, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float *in = x + r * cols;
    float *out = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = std::max(in[c] + bias[c], 0.0f);
  }
}

#if defined(__x86_64__)
#define DROPOUT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DROPOUT_CLONES
#endif

// One row of BiasReluDropout, values first .. first + cols - 1 of the
// output: the hash is murmur3's 32-bit finaliser of (i ^ key0) times the
// golden ratio plus key1 (vectorised: 8 lanes with AVX2, taken when the CPU
// has it, else 4).
DROPOUT_CLONES void DropoutRow(const float *__restrict x, const float *__restrict bias,
                               float *__restrict y, int64_t cols, uint32_t first, uint32_t key0,
                               uint32_t key1, uint32_t threshold, float scale) {
  for (int64_t c = 0; c < cols; ++c) {
    uint32_t h = ((first + static_cast<uint32_t>(c)) ^ key0) * 0x9e3779b9u + key1;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    y[c] = std::max(x[c] + bias[c], 0.0f) * (h >= threshold ? scale : 0.0f);
  }
}

uint32_t ToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// noinline: its __restrict holds (see the loop)
__attribute__((noinline)) void GradRows(const float *__restrict y, const float *__restrict dy,
                                        float *__restrict dx, float *__restrict sums,
                                        int64_t cols, float scale, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float *out = y + r * cols, *d_out = dy + r * cols;
    float *d_in = dx + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      // the select as a bit mask: written `out[c] > 0 ? d : 0` (or inlined
      // into the caller, which loses __restrict), g++ 12 made this loop a
      // scalar branch, mispredicted on about half of a ReLU's values
      const uint32_t keep = 0u - static_cast<uint32_t>(out[c] > 0.0f);
      const float g = FromBits(ToBits(d_out[c] * scale) & keep);
      d_in[c] = g;
      sums[c] += g;
    }
  }
}

bool Matrix(int index, int *ndims, const char **dtypes) {
  return ndims[index] == 2 && std::strcmp(dtypes[index], "float32") == 0;
}

int64_t Least(int64_t cols) { return std::max<int64_t>(1, kValuesPerThread / std::max<int64_t>(1, cols)); }

// BiasReluGrad's and BiasReluDropoutGrad's work: params y, dy, threads, [rate,]
// dx, dbias; `dropout`: with the rate.
int Grad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
         bool dropout) {
  const int o = dropout ? 1 : 0;  // the outputs' shift
  if (nparam != 5 + o || !Matrix(0, ndims, dtypes) || !Matrix(1, ndims, dtypes) || ndims[2] != 1 ||
      std::strcmp(dtypes[2], "int32") != 0 || !Matrix(3 + o, ndims, dtypes) || ndims[4 + o] != 1 ||
      std::strcmp(dtypes[4 + o], "float32") != 0) {
    return 1;
  }
  if (dropout && (ndims[3] != 1 || shapes[3][0] < 1 || std::strcmp(dtypes[3], "float32") != 0)) {
    return 1;
  }
  const int64_t rows = shapes[0][0], cols = shapes[0][1];
  for (int i : {1, 3 + o}) {
    if (shapes[i][0] != rows || shapes[i][1] != cols) return 1;
  }
  if (shapes[2][0] < 1 || shapes[4 + o][0] != cols) return 1;
  float scale = 1.0f;
  if (dropout) {
    const float rate = static_cast<const float *>(params[3])[0];
    if (!(rate >= 0.0f && rate < 1.0f)) return 1;
    scale = 1.0f / (1.0f - rate);
  }
  const float *y = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  const int64_t wanted = recsys::ThreadsAsked(params[2]);
  float *dx = static_cast<float *>(params[3 + o]);
  float *dbias = static_cast<float *>(params[4 + o]);
  std::vector<float> sums(wanted * cols, 0.0f);
  recsys::ParallelParts(rows, wanted, Least(cols), [&](int64_t t, int64_t begin, int64_t end) {
    GradRows(y, dy, dx, &sums[t * cols], cols, scale, begin, end);
  });
  std::fill(dbias, dbias + cols, 0.0f);
  for (int64_t t = 0; t < wanted; ++t)
    for (int64_t c = 0; c < cols; ++c) dbias[c] += sums[t * cols + c];
  return 0;
}

}  // namespace

extern "C" int BiasRelu(int nparam, void **params, int *ndims, int64_t **shapes,
                        const char **dtypes, void *, void *) {
  if (nparam != 4 || ndims[0] != 2 || ndims[1] != 1 || ndims[2] != 1 || ndims[3] != 2) return 1;
  for (int i = 0; i < 4; ++i) {
    if (std::strcmp(dtypes[i], i == 2 ? "int32" : "float32") != 0) return 1;
  }
  const int64_t rows = shapes[0][0], cols = shapes[0][1];
  if (shapes[1][0] != cols || shapes[2][0] < 1 || shapes[3][0] != rows || shapes[3][1] != cols) {
    return 1;
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  const int64_t wanted = recsys::ThreadsAsked(params[2]);
  float *y = static_cast<float *>(params[3]);
  recsys::ParallelParts(rows, wanted, Least(cols), [&](int64_t, int64_t begin, int64_t end) {
    Rows(x, bias, y, cols, begin, end);
  });
  return 0;
}

extern "C" int BiasReluGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                            const char **dtypes, void *, void *) {
  return Grad(nparam, params, ndims, shapes, dtypes, false);
}

extern "C" int BiasReluDropout(int nparam, void **params, int *ndims, int64_t **shapes,
                               const char **dtypes, void *, void *) {
  static const char *const kDtypes[] = {"float32", "float32", "int32", "int32", "float32",
                                        "float32"};
  static const int kDims[] = {2, 1, 1, 1, 1, 2};
  if (nparam != 6) return 1;
  for (int i = 0; i < 6; ++i) {
    if (ndims[i] != kDims[i] || std::strcmp(dtypes[i], kDtypes[i]) != 0) return 1;
  }
  const int64_t rows = shapes[0][0], cols = shapes[0][1];
  if (shapes[1][0] != cols || shapes[2][0] != 2 || shapes[3][0] < 1 || shapes[4][0] < 1 ||
      shapes[5][0] != rows || shapes[5][1] != cols) {
    return 1;
  }
  const float rate = static_cast<const float *>(params[4])[0];
  if (!(rate >= 0.0f && rate < 1.0f)) return 1;
  // dropped below p 2^32 (p 2^32 < 2^32: rate < 1)
  const uint32_t threshold = static_cast<uint32_t>(static_cast<double>(rate) * 4294967296.0);
  const float scale = 1.0f / (1.0f - rate);
  const int32_t *key = static_cast<const int32_t *>(params[2]);
  const float *x = static_cast<const float *>(params[0]);
  const float *bias = static_cast<const float *>(params[1]);
  const int64_t wanted = recsys::ThreadsAsked(params[3]);
  float *y = static_cast<float *>(params[5]);
  recsys::ParallelParts(rows, wanted, Least(cols), [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      DropoutRow(x + r * cols, bias, y + r * cols, cols, static_cast<uint32_t>(r * cols),
                 static_cast<uint32_t>(key[0]), static_cast<uint32_t>(key[1]), threshold, scale);
    }
  });
  return 0;
}

extern "C" int BiasReluDropoutGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                                   const char **dtypes, void *, void *) {
  return Grad(nparam, params, ndims, shapes, dtypes, true);
}
