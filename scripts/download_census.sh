#!/usr/bin/env bash
# Download the Census-Income (KDD) raw files from the UCI repository.
# Usage: bash scripts/download_census.sh [RAW_DIR]   (default: ./data/census/raw)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
DEST="${1:-data/census/raw}"
BASE="${CENSUS_URL:-https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld}"
mkdir -p "$DEST"
for name in census-income.data.gz census-income.test.gz; do
  if [[ -s "$DEST/$name" ]]; then
    echo "$DEST/$name already present"; continue
  fi
  download "$BASE/$name" "$DEST/$name"
done
echo "raw files in $DEST; next: python prepare_data.py --raw_data_path $DEST --data_path data/census/mindrecord"
