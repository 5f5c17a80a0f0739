r"""Convert the configured model's raw data set to MindRecord splits
(train / val / test) plus feature_map.json in data_path. The model selects
the data set (src/<model>/spec.py); models on one data set share its options.

    python prepare_data.py --config_path default_config_cpu.yaml \
        --raw_data_path ./data/census/raw --data_path ./data/census/mindrecord

Census-Income: reads census-income.data(.gz) and census-income.test(.gz);
vocabularies and scaling are fitted on the training file only; half of the
test file (seeded) becomes the validation split, the other half the test split.

Criteo: streams train.txt or the Terabyte day files (plain or gzip) twice in
parallel chunks, vocabularies from the training lines (or hashing), random or
time split; see src/data/criteo.py.

MultiMNIST: builds 36x36 two-digit images from MNIST or Fashion-MNIST IDX
files (--source idx), or reads the Pareto-MTL / PaddleRec pickles (--source
pickle); see src/data/multimnist.py.

    python prepare_data.py --config_path default_config_cpu.yaml --model MODEL \
        --raw_data_path ./data/mnist --data_path ./data/multimnist/mindrecord

(MODEL: a model on the data set; python prepare_data.py --help lists them.)
"""
import sys

from src.config import load_config, require_path
from src.engine.cli import run_main
from src.datasets import DATASETS
from src.registry import get_model_spec

CONVERT_KEYS = {"model", "seed", "raw_data_path", "data_path"}.union(
    *(d.convert_keys for d in DATASETS.values()))


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv,
                      shown=lambda key, kind: key in CONVERT_KEYS)
    require_path(cfg, "raw_data_path", kind="dir")
    fmap = get_model_spec(cfg.model).prepare_data(cfg)
    print(f"splits {fmap.get('splits')} and feature_map.json written to {cfg.data_path}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
