"""How the registry builds DeepFM: Criteo, one embedding table trained row-wise."""
from src.datasets import CRITEO
from src.engine.native import kernel_choice
from src.registry import ModelSpec, Trial

FM_KERNELS = ("graph", "native")


def build_network(cfg, fmap):
    from src.deepfm.deepfm import DeepFM
    from src.engine.distributed import table_shard
    from src.layers.bias_relu import predict_mlp, train_mlp
    return DeepFM(fmap["cardinalities"], num_dense=fmap["num_dense"],
                  embedding_dim=cfg.embedding_dim, deep_units=cfg.deep_units,
                  dropout=cfg.dropout, batch_norm=cfg.batch_norm, init=cfg.init,
                  init_scale=cfg.init_scale, embedding_scale=cfg.embedding_scale, seed=cfg.seed,
                  shard=table_shard(cfg), predict_fm=_predict_fm(cfg), predict_mlp=predict_mlp(cfg),
                  train_mlp=train_mlp(cfg), train_fm=_train_fm(cfg))


def _predict_fm(cfg):
    """The prediction's lookup and FM terms ``predict_fm`` names: None for
    ``graph`` (MindSpore's operators), the CPU kernel for ``native``."""
    def build(threads):
        from src.layers.fm_lookup import FmLookup
        return FmLookup(threads=threads)
    return kernel_choice(cfg, "predict_fm", FM_KERNELS, build)


def _train_fm(cfg):
    """The training's lookup in the batch's rows and FM terms ``train_fm``
    names: None for ``graph`` (MindSpore's operators), the CPU kernel with
    its gradient kernel for ``native``."""
    def build(threads):
        from src.layers.fm_lookup import FmRows
        return FmRows(threads=threads)
    return kernel_choice(cfg, "train_fm", FM_KERNELS, build)


TRIAL = Trial(args=("--embedding_dim", "8", "--deep_units", "32,32", "--batch_size", "300",
                    "--learning_rate", "0.003", "--embedding_l2", "1e-5",
                    "--log_every_steps", "1000"),
              expect={"click_auc": 0.7}, epochs=2, data_scale=0.24,
              prepare_args=("--min_count", "3"), deterministic_args=("--dropout", "0.0"))

QUICK_START = Trial(args=("--learning_rate", "0.002", "--log_every_steps", "20"),
                    expect={"click_auc": 0.7}, epochs=3, data_scale=1.0, data_seed=7)

SPEC = ModelSpec(name="deepfm", title="DeepFM", dataset=CRITEO, build_network=build_network,
                 capabilities=frozenset({"sparse_table"}),
                 compute_keys=frozenset({"predict_fm", "predict_mlp", "train_mlp", "train_fm"}),
                 export_overrides={"predict_fm": "graph", "predict_mlp": "graph",
                                   "train_mlp": "graph", "train_fm": "graph"},
                 bench_train_batches=(1024, 16000), bench_predict_batch=16384,
                 trial=TRIAL, quick_start=QUICK_START)
