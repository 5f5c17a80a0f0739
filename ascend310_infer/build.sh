#!/usr/bin/env bash
# Build the inference program into ascend310_infer/out/main (with CMake when it is
# installed, else with the C++ compiler directly), and out/convert_onnx when the
# SDK is a MindSpore Lite package.
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
LIB="${2:-mindspore}"
mkdir -p "$HERE/out"
cd "$HERE/out"
# one build at a time (a second waits, then finds the program up to date)
if command -v flock >/dev/null 2>&1; then exec {LOCK}>"$HERE/out/.build.lock"; flock "$LOCK"; fi
if command -v cmake >/dev/null 2>&1; then
  cmake .. -DMINDSPORE_PATH="$MS" -DMS_LIB="$LIB" > cmake.log || { cat cmake.log >&2; exit 1; }
  make -j"$(nproc)" > make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
else   # no CMake: the same build with the compiler directly
  CXX="${CXX:-g++}"
  FLAGS=(-std=c++17 -O2 -Wall -Wextra -D_GLIBCXX_USE_CXX11_ABI=0 -I"$HERE" -isystem "$MS")
  RPATH="-Wl,--disable-new-dtags,-rpath,$MS/lib"
  # linked under a temporary name and renamed: a program another run is executing stays whole
  "$CXX" "${FLAGS[@]}" -o main.partial "$HERE/src/main.cc" "$HERE/src/utils.cc" -L"$MS/lib" -l"$LIB" \
    -lpthread "$RPATH" > make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
  mv -f main.partial main
  if [[ -f "$MS/lib/libmindspore_converter.so" && -f "$MS/lib/libmindspore_core.so" ]]; then
    "$CXX" "${FLAGS[@]}" -o convert_onnx.partial "$HERE/tools/convert_onnx.cc" -L"$MS/lib" \
      -lmindspore_converter -lmindspore_core "$RPATH" >> make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
    mv -f convert_onnx.partial convert_onnx
  fi
fi
echo "built $HERE/out/main$([[ -x "$HERE/out/convert_onnx" ]] && echo " and $HERE/out/convert_onnx")"
