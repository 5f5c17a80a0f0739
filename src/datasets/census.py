"""Census-Income (KDD 1994/1995 extract): two binary tasks on one-hot plus
numeric features."""
import numpy as np

from src.datasets.base import DataSet
from src.registry import Trial


def _convert(cfg):
    from src.data import census
    return census.convert(cfg.raw_data_path, cfg.data_path,
                          keep_instance_weight=cfg.keep_instance_weight,
                          val_fraction=cfg.val_fraction, seed=cfg.seed, block_rows=cfg.block_rows,
                          numeric_transform=cfg.numeric_transform,
                          numeric_buckets=cfg.numeric_buckets, val_source=cfg.val_source)


def _load(data_dir):
    from src.data import census
    return census.load_feature_map(data_dir)


def _make_batch(batch, fmap):
    from src.data.census import to_dense
    x = to_dense(batch["cat"], batch["num"], fmap["input_dim"])
    return x, batch["label"].astype(np.float32)


def fields_of(fmap):
    """``(fields, num_numeric)``: each one-hot field's ``(offset, size)`` (the
    categorical columns, then the numeric buckets) and the numeric width."""
    fields = [(f["offset"], len(f["vocab"])) for f in fmap["categorical"]]
    fields += [(s["buckets"]["offset"], len(s["buckets"]["edges"]) + 1)
               for s in fmap["numeric"] if "buckets" in s]
    return fields, len(fmap["numeric"])


def input_layer(cfg, fmap):
    """``(layer, width)``: the cell a Census-Income network puts before its
    first layer and the width it gives: per-field embeddings of
    ``field_embedding_dim`` (:class:`src.layers.fields.FieldEmbedding`), or
    ``(None, input_dim)`` for the one-hot input (0, upstream)."""
    dim = int(cfg.field_embedding_dim)
    if dim < 0:
        raise ValueError(f"field_embedding_dim must be 0 (one-hot input) or positive, got {dim}")
    if dim == 0:
        return None, fmap["input_dim"]
    from src.layers.fields import FieldEmbedding
    from src.layers.initializers import make_initializer
    fields, num_numeric = fields_of(fmap)
    layer = FieldEmbedding(fields, num_numeric, dim, make_initializer(cfg.init, cfg.init_scale))
    return layer, layer.output_dim


INPUT_PRODUCTS = ("matmul", "sparse")


def input_product(cfg):
    """The cell config key ``input_product`` names for a Census-Income
    network's first product in prediction: None for ``matmul`` (the graph's
    MatMul), :class:`src.layers.sparse_input.SparseInputProduct` (a CPU kernel
    skipping the one-hot input's zeros) for ``sparse``."""
    from src.engine.native import kernel_choice

    def build(threads):
        from src.layers.sparse_input import SparseInputProduct
        return SparseInputProduct(threads=threads)
    return kernel_choice(cfg, "input_product", INPUT_PRODUCTS, build)


def _synthetic(raw_dir, seed=1, scale=1.0):
    """Train and test files of 40,000 and 20,000 rows times ``scale``."""
    from src.synth import census
    rows = max(100, int(40_000 * scale))
    census.generate_dataset(raw_dir, rows, rows // 2, seed=seed)


CENSUS = DataSet(
    name="census", title="Census-Income",
    convert=_convert, load_feature_map=_load, make_batch=_make_batch,
    input_signature=lambda fmap: [("x", np.float32, (fmap["input_dim"],))],
    task_names=lambda fmap: list(fmap["tasks"]),
    synthetic=_synthetic,
    convert_keys=("keep_instance_weight", "numeric_transform", "numeric_buckets", "val_source",
                  "val_fraction", "block_rows"))


# The runs every Census-Income model makes in the registry contract tests and
# its quick start (the models take the same flags and reach the same figures).
CENSUS_TRIAL = Trial(args=("--batch_size", "128", "--learning_rate", "0.01", "--warmup_epochs", "0.5",
                           "--eval_batch_size", "1024", "--log_every_steps", "1000"),
                     expect={"income_auc": 0.8, "marital_auc": 0.8}, epochs=2, data_scale=0.15)

CENSUS_QUICK_START = Trial(args=("--batch_size", "256", "--learning_rate", "0.005",
                                 "--warmup_epochs", "1", "--log_every_steps", "50"),
                           expect={"income_auc": 0.85, "marital_auc": 0.95}, epochs=4,
                           data_scale=1.0, data_seed=7)
