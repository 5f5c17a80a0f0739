#!/usr/bin/env bash
# Fetch the MindSpore Lite 2.0.0 C++ SDK (headers and CPU runtime) from PyPI into a
# cache folder and print that folder. Its wheel (cp37, 168 MB) is fetched for any
# Python; only include/ and lib/ are kept.
# Usage: bash fetch_lite_sdk.sh [CACHE_DIR]   (default: $LITE_SDK_DIR or .cache/mindspore-lite-2.0.0)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
DEST="$(abs_path "${1:-${LITE_SDK_DIR:-$REPO_ROOT/.cache/mindspore-lite-2.0.0}}")"
have_sdk() {
  [[ -f "$DEST/mindspore_lite/include/api/model.h" && -f "$DEST/mindspore_lite/lib/libmindspore-extendrt_python.so" ]]
}
if have_sdk; then echo "$DEST/mindspore_lite"; exit 0; fi
hold_lock "$DEST.lock"         # another fetch of the same folder: wait for it, then use its SDK
if have_sdk; then echo "$DEST/mindspore_lite"; exit 0; fi
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
echo "fetching mindspore-lite==2.0.0 from PyPI (168 MB) into $DEST" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 37 \
  --implementation cp --platform manylinux1_x86_64 mindspore-lite==2.0.0 -d "$TMP" >&2 \
  || { echo "error: could not download mindspore-lite 2.0.0 from the package index" >&2; exit 1; }
mkdir -p "$DEST.partial"
(cd "$TMP" && "$PYTHON" -m zipfile -e mindspore_lite-2.0.0-*.whl unpacked >&2) \
  || { echo "error: the downloaded wheel is damaged" >&2; exit 1; }
rm -rf "$DEST.partial"/* && mkdir -p "$DEST.partial/mindspore_lite"
mv "$TMP/unpacked/mindspore_lite/include" "$TMP/unpacked/mindspore_lite/lib" "$DEST.partial/mindspore_lite/"
rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
echo "$DEST/mindspore_lite"
