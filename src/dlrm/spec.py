"""How the registry builds DLRM: Criteo, one embedding table trained row-wise."""
from src.datasets import CRITEO
from src.engine.native import kernel_choice
from src.registry import ModelSpec, Trial

PREDICT_INTERACTIONS = ("graph", "native")


def build_network(cfg, fmap):
    from src.dlrm.dlrm import DLRM
    from src.engine.distributed import table_shard
    from src.layers.bias_relu import predict_mlp
    return DLRM(fmap["cardinalities"], num_dense=fmap["num_dense"],
                embedding_dim=cfg.embedding_dim, bottom_units=cfg.bottom_units,
                top_units=cfg.top_units, interaction=cfg.interaction,
                self_interaction=cfg.self_interaction, seed=cfg.seed,
                shard=table_shard(cfg), predict_interaction=_predict_interaction(cfg, fmap),
                predict_mlp=predict_mlp(cfg))


def _predict_interaction(cfg, fmap):
    """The prediction's lookup and interaction ``predict_interaction`` names:
    None for ``graph`` (MindSpore's operators), the CPU kernel for ``native``;
    None for ``interaction: cat`` either way (the kernel computes the dot
    interaction; a concatenation is one graph operator)."""
    def build(threads):
        if cfg.get("interaction", "dot") != "dot":
            return None                 # the key is still checked; nothing to compile
        from src.layers.dot_interaction import DotInteraction
        return DotInteraction(len(fmap["cardinalities"]), bool(cfg.get("self_interaction", False)),
                              threads=threads)
    return kernel_choice(cfg, "predict_interaction", PREDICT_INTERACTIONS, build)


TRIAL = Trial(args=("--embedding_dim", "8", "--bottom_units", "32,8", "--top_units", "32",
                    "--batch_size", "256", "--learning_rate", "0.2", "--log_every_steps", "1000"),
              expect={"click_auc": 0.7}, epochs=2, data_scale=0.24,
              prepare_args=("--split", "random"))

QUICK_START = Trial(args=("--log_every_steps", "200"), expect={"click_auc": 0.7}, epochs=2,
                    data_scale=1.0, data_seed=7)

SPEC = ModelSpec(name="dlrm", title="DLRM", dataset=CRITEO, build_network=build_network,
                 capabilities=frozenset({"sparse_table"}),
                 compute_keys=frozenset({"predict_interaction", "predict_mlp"}),
                 export_overrides={"predict_interaction": "graph", "predict_mlp": "graph"},
                 bench_train_batches=(128, 2048), bench_predict_batch=16384,
                 trial=TRIAL, quick_start=QUICK_START)
