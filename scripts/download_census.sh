#!/usr/bin/env bash
# Download the Census-Income (KDD) raw files from the UCI repository.
# Usage: bash scripts/download_census.sh [RAW_DIR]   (default: ./data/census/raw)
set -euo pipefail
DEST="${1:-data/census/raw}"
BASE="${CENSUS_URL:-https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld}"
mkdir -p "$DEST"
for name in census-income.data.gz census-income.test.gz; do
  if [[ -s "$DEST/$name" ]]; then
    echo "$DEST/$name already present"; continue
  fi
  echo "downloading $BASE/$name"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$DEST/$name.part" "$BASE/$name"
  else
    wget -q -O "$DEST/$name.part" "$BASE/$name"
  fi
  gzip -t "$DEST/$name.part" || { echo "error: $name is not a valid gzip file" >&2; exit 1; }
  mv "$DEST/$name.part" "$DEST/$name"
done
echo "raw files in $DEST; next: python prepare_data.py --raw_data_path $DEST --data_path data/census/mindrecord"
