"""The benchmark's data: generated raw files in the real formats, converted
to MindRecord by the project's own converters, cached in the work folder."""
import os

# Rows of the generated data sets: enough batches for every case without
# wrapping too often, small enough to generate in seconds.
CENSUS_TRAIN_ROWS = 120_000
CRITEO_LINES = 400_000
# Hashed Criteo ids (the reference DLRM's --max-ind-range): 26 tables of
# 200,000 rows, 5.2 M rows in all, whatever the number of generated lines.
CRITEO_HASH_ROWS = 200_000
MNIST_TRAIN_DIGITS = 8_000


# --quick (the smoke test) uses this fraction of the rows, in its own folder.
QUICK_FRACTION = 0.05


def _prepared(work_dir, name, build, load):
    """``work_dir/<name>/mindrecord``, built by ``build(raw_dir, out_dir)``
    unless a previous run completed it in the format this code reads
    (``load(out_dir)`` accepts its feature map; conversions are published
    whole, so a feature map means a complete data set)."""
    out = os.path.join(work_dir, name, "mindrecord")
    try:
        load(out)
    except (FileNotFoundError, ValueError):
        build(os.path.join(work_dir, name, "raw"), out)
    return out


def census(work_dir, fraction=1.0, log=print):
    """MindRecord of generated Census-Income files."""
    from src.data import census as census_data
    from src.synth import census as census_synth

    def build(raw, out):
        rows = int(CENSUS_TRAIN_ROWS * fraction)
        log(f"bench data: generating Census-Income ({rows:,} train rows)")
        census_synth.generate_dataset(raw, rows, rows // 2, seed=1)
        census_data.convert(raw, out, val_fraction=0.5, seed=1)
    return _prepared(work_dir, "census", build, census_data.load_feature_map)


def criteo(work_dir, fraction=1.0, log=print):
    """MindRecord of a generated Kaggle-format Criteo file, hashed into 26
    tables of CRITEO_HASH_ROWS rows."""
    from src.data import criteo as criteo_data
    from src.synth import criteo as criteo_synth

    def build(raw, out):
        lines = int(CRITEO_LINES * fraction)
        log(f"bench data: generating Criteo ({lines:,} lines)")
        criteo_synth.generate(raw, lines, seed=1)
        hash_rows = max(1000, int(CRITEO_HASH_ROWS * fraction))
        criteo_data.convert(raw, out, max_ind_range=hash_rows, split="random", val_fraction=0.05,
                            test_fraction=0.05, seed=1, log=log)
    return _prepared(work_dir, "criteo", build, criteo_data.load_feature_map)


def multimnist(work_dir, fraction=1.0, log=print):
    """MindRecord of MultiMNIST composed from generated IDX digits."""
    from src.data import multimnist as mm
    from src.synth import mnist as mnist_synth

    def build(raw, out):
        digits = int(MNIST_TRAIN_DIGITS * fraction)
        log(f"bench data: generating MNIST digits ({digits:,} train)")
        mnist_synth.generate_idx(raw, train=digits, test=max(200, digits // 8), seed=1)
        mm.convert(raw, out, source="idx", seed=1)
    return _prepared(work_dir, "multimnist", build, mm.load_feature_map)


PREPARE = {"census": census, "criteo": criteo, "multimnist": multimnist}    # by data set


def data_path(model, work_dir, quick=False, log=print):
    """The converted data folder for ``model``, prepared on first use
    (``quick``: a small fraction of the rows, in ``work_dir/quick``)."""
    from src.registry import get_model_spec
    prepare = PREPARE[get_model_spec(model).dataset.name]
    if quick:
        return prepare(os.path.join(work_dir, "quick"), fraction=QUICK_FRACTION, log=log)
    return prepare(work_dir, log=log)
