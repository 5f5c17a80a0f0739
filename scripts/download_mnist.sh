#!/usr/bin/env bash
# Download the MNIST or Fashion-MNIST IDX files (the raw data of the MultiMNIST /
# Multi-Fashion data set, built by prepare_data.py for a model on it).
# Usage: bash scripts/download_mnist.sh [RAW_DIR] [mnist|fashion]
#   RAW_DIR defaults to ./data/mnist (./data/fashion for fashion).
#   MNIST_URL overrides the download location (default: the PyTorch mirror
#   of MNIST, or the Fashion-MNIST S3 bucket).
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
KIND="${2:-mnist}"
case "$KIND" in
  mnist)   DEST="${1:-data/mnist}";   BASE="${MNIST_URL:-https://ossci-datasets.s3.amazonaws.com/mnist}" ;;
  fashion) DEST="${1:-data/fashion}"; BASE="${MNIST_URL:-http://fashion-mnist.s3-website.eu-central-1.amazonaws.com}" ;;
  *) echo "error: the second argument must be mnist or fashion, got '$KIND'" >&2; exit 2 ;;
esac
mkdir -p "$DEST"
for name in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
            t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  if [[ -s "$DEST/$name" ]]; then
    echo "$DEST/$name already present"; continue
  fi
  download "$BASE/$name" "$DEST/$name"
done
echo "IDX files in $DEST; next: python prepare_data.py --config_path default_config_cpu.yaml" \
     "--model $(models_on multimnist) --raw_data_path $DEST --data_path data/multimnist/mindrecord"
