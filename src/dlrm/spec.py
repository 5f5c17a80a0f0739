"""How the registry builds DLRM: Criteo, one embedding table trained row-wise."""
from src.datasets import CRITEO
from src.registry import ModelSpec, Trial


def build_network(cfg, fmap):
    from src.dlrm.dlrm import DLRM
    from src.engine.distributed import table_shard
    return DLRM(fmap["cardinalities"], num_dense=fmap["num_dense"],
                embedding_dim=cfg.embedding_dim, bottom_units=cfg.bottom_units,
                top_units=cfg.top_units, interaction=cfg.interaction,
                self_interaction=cfg.self_interaction, seed=cfg.seed,
                shard=table_shard(cfg))


TRIAL = Trial(args=("--embedding_dim", "8", "--bottom_units", "32,8", "--top_units", "32",
                    "--batch_size", "256", "--learning_rate", "0.2", "--log_every_steps", "1000"),
              expect={"click_auc": 0.7}, epochs=2, data_scale=0.24,
              prepare_args=("--split", "random"))

QUICK_START = Trial(args=("--log_every_steps", "200"), expect={"click_auc": 0.7}, epochs=2,
                    data_scale=1.0, data_seed=7)

SPEC = ModelSpec(name="dlrm", title="DLRM", dataset=CRITEO, build_network=build_network,
                 capabilities=frozenset({"sparse_table"}),
                 bench_train_batches=(128, 2048), bench_predict_batch=16384,
                 trial=TRIAL, quick_start=QUICK_START)
