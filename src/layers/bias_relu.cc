// A layer's bias and ReLU in one pass, for prediction: y = max(x + bias, 0),
// bias broadcast over the rows. A MindSpore custom operator of the AOT kind,
// CPU (see src/layers/bias_relu.py); the graph's BiasAdd and ReLU are two
// passes over the layer's output.
//
// BiasRelu(x (B x N float32), bias (N float32), threads (1 int32)) -> y (B x N float32)
//
// Rows are split among up to ``threads`` threads, at least kValuesPerThread
// values each. Error code 1 for shapes or dtypes it does not take.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../engine/parallel_parts.h"

namespace {

constexpr int64_t kValuesPerThread = 32768;

void Rows(const float *x, const float *bias, float *y, int64_t cols, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float *in = x + r * cols;
    float *out = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = std::max(in[c] + bias[c], 0.0f);
  }
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
  const int64_t wanted = std::max<int32_t>(1, static_cast<const int32_t *>(params[2])[0]);
  float *y = static_cast<float *>(params[3]);
  const int64_t least = std::max<int64_t>(1, kValuesPerThread / std::max<int64_t>(1, cols));
  recsys::ParallelParts(rows, wanted, least, [&](int64_t, int64_t begin, int64_t end) {
    Rows(x, bias, y, cols, begin, end);
  });
  return 0;
}
