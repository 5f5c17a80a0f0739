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

void GradRows(const float *__restrict y, const float *__restrict dy, float *__restrict dx,
              float *__restrict sums, int64_t cols, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float *out = y + r * cols, *d_out = dy + r * cols;
    float *d_in = dx + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float d = d_out[c];  // loaded either way: a select, not a branch
      const float g = out[c] > 0.0f ? d : 0.0f;
      d_in[c] = g;
      sums[c] += g;
    }
  }
}

bool Matrix(int index, int *ndims, const char **dtypes) {
  return ndims[index] == 2 && std::strcmp(dtypes[index], "float32") == 0;
}

int64_t Least(int64_t cols) { return std::max<int64_t>(1, kValuesPerThread / std::max<int64_t>(1, cols)); }

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
  recsys::ParallelParts(rows, wanted, Least(cols), [&](int64_t, int64_t begin, int64_t end) {
    Rows(x, bias, y, cols, begin, end);
  });
  return 0;
}

extern "C" int BiasReluGrad(int nparam, void **params, int *ndims, int64_t **shapes,
                            const char **dtypes, void *, void *) {
  if (nparam != 5 || !Matrix(0, ndims, dtypes) || !Matrix(1, ndims, dtypes) || ndims[2] != 1 ||
      std::strcmp(dtypes[2], "int32") != 0 || !Matrix(3, ndims, dtypes) || ndims[4] != 1 ||
      std::strcmp(dtypes[4], "float32") != 0) {
    return 1;
  }
  const int64_t rows = shapes[0][0], cols = shapes[0][1];
  for (int i : {1, 3}) {
    if (shapes[i][0] != rows || shapes[i][1] != cols) return 1;
  }
  if (shapes[2][0] < 1 || shapes[4][0] != cols) return 1;
  const float *y = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  const int64_t wanted = std::max<int32_t>(1, static_cast<const int32_t *>(params[2])[0]);
  float *dx = static_cast<float *>(params[3]);
  float *dbias = static_cast<float *>(params[4]);
  std::vector<float> sums(wanted * cols, 0.0f);
  recsys::ParallelParts(rows, wanted, Least(cols), [&](int64_t t, int64_t begin, int64_t end) {
    GradRows(y, dy, dx, &sums[t * cols], cols, begin, end);
  });
  std::fill(dbias, dbias + cols, 0.0f);
  for (int64_t t = 0; t < wanted; ++t)
    for (int64_t c = 0; c < cols; ++c) dbias[c] += sums[t * cols + c];
  return 0;
}
