#!/usr/bin/env bash
# Download and unpack the Criteo Display Advertising Challenge (Kaggle) data:
# train.txt (45,840,617 lines, about 11 GB unpacked) for DeepFM and DLRM.
# Usage: bash scripts/download_criteo.sh [RAW_DIR]   (default: ./data/criteo/raw)
#   CRITEO_URL overrides the archive's location. The Terabyte logs (day_0 ..
#   day_23) need Criteo's licence acceptance: fetch them by hand into RAW_DIR;
#   prepare_data.py reads them plain or gzip'd.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
DEST="${1:-data/criteo/raw}"
URL="${CRITEO_URL:-https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz}"
mkdir -p "$DEST"
if [[ -s "$DEST/train.txt" ]]; then
  echo "$DEST/train.txt already present"
else
  ARCHIVE="$DEST/criteo-kaggle.tar.gz"
  if [[ ! -s "$ARCHIVE" ]]; then
    echo "the archive is about 4.3 GB"
    download "$URL" "$ARCHIVE"
  fi
  echo "unpacking train.txt"
  tar -xzf "$ARCHIVE" -C "$DEST" train.txt || { echo "error: $ARCHIVE holds no train.txt" >&2; exit 1; }
fi
MODEL="$(models_on criteo)"
echo "raw data in $DEST; next: python prepare_data.py --config_path default_config_cpu.yaml" \
     "--model $MODEL --raw_data_path $DEST (MODEL: one of $MODEL; each has its own data_path)"
