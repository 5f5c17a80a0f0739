#!/usr/bin/env bash
# Build the inference program into ascend310_infer/out/main.
# Usage: bash build.sh [MINDSPORE_PATH] [MS_LIB]
#   MINDSPORE_PATH: folder with include/api and lib (default: $MINDSPORE_PATH, else the
#   installed mindspore package); MS_LIB: library name to link (default: mindspore).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MS="${1:-${MINDSPORE_PATH:-}}"
if [[ -z "$MS" ]]; then
  MS="$(python3 -c 'import mindspore, os; print(os.path.dirname(mindspore.__file__))' 2>/dev/null || true)"
fi
[[ -n "$MS" && -f "$MS/include/api/model.h" ]] || {
  echo "error: no MindSpore C++ headers found (MINDSPORE_PATH='$MS'); pass the package folder" >&2; exit 2; }
mkdir -p "$HERE/out"
cd "$HERE/out"
cmake .. -DMINDSPORE_PATH="$MS" -DMS_LIB="${2:-mindspore}" > cmake.log || { cat cmake.log >&2; exit 1; }
make -j"$(nproc)" > make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
echo "built $HERE/out/main$([[ -x "$HERE/out/convert_onnx" ]] && echo " and $HERE/out/convert_onnx")"
