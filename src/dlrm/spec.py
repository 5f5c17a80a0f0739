"""How the registry builds DLRM: Criteo, one embedding table trained row-wise."""
from src.datasets import CRITEO
from src.engine.native import kernel_choice
from src.registry import ModelSpec, Trial

INTERACTION_KERNELS = ("graph", "native")


def build_network(cfg, fmap):
    from src.dlrm.dlrm import DLRM
    from src.engine.distributed import table_shard
    from src.layers.bias_relu import predict_mlp, train_mlp
    return DLRM(fmap["cardinalities"], num_dense=fmap["num_dense"],
                embedding_dim=cfg.embedding_dim, bottom_units=cfg.bottom_units,
                top_units=cfg.top_units, interaction=cfg.interaction,
                self_interaction=cfg.self_interaction, seed=cfg.seed,
                shard=table_shard(cfg), predict_interaction=_interaction(cfg, fmap, "predict"),
                predict_mlp=predict_mlp(cfg), train_interaction=_interaction(cfg, fmap, "train"),
                train_mlp=train_mlp(cfg))


def _interaction(cfg, fmap, kind):
    """The dot interaction ``predict_interaction`` (the lookup too, for
    prediction) or ``train_interaction`` (from looked-up rows, with its
    gradient) names: None for ``graph`` (MindSpore's operators), the CPU
    kernel for ``native``; None for ``interaction: cat`` either way (the
    kernels compute the dot interaction; a concatenation is one graph
    operator)."""
    def build(threads):
        if cfg.get("interaction", "dot") != "dot":
            return None                 # the key is still checked; nothing to compile
        from src.layers import dot_interaction
        cell = dot_interaction.DotInteraction if kind == "predict" else dot_interaction.DotPairs
        return cell(len(fmap["cardinalities"]), bool(cfg.get("self_interaction", False)),
                    threads=threads)
    return kernel_choice(cfg, f"{kind}_interaction", INTERACTION_KERNELS, build)


TRIAL = Trial(args=("--embedding_dim", "8", "--bottom_units", "32,8", "--top_units", "32",
                    "--batch_size", "256", "--learning_rate", "0.2", "--log_every_steps", "1000"),
              expect={"click_auc": 0.7}, epochs=2, data_scale=0.24,
              prepare_args=("--split", "random"))

QUICK_START = Trial(args=("--log_every_steps", "200"), expect={"click_auc": 0.7}, epochs=2,
                    data_scale=1.0, data_seed=7)

SPEC = ModelSpec(name="dlrm", title="DLRM", dataset=CRITEO, build_network=build_network,
                 capabilities=frozenset({"sparse_table"}),
                 compute_keys=frozenset({"predict_interaction", "predict_mlp", "train_interaction",
                                         "train_mlp"}),
                 export_overrides={"predict_interaction": "graph", "predict_mlp": "graph",
                                   "train_interaction": "graph", "train_mlp": "graph"},
                 bench_train_batches=(128, 2048), bench_predict_batch=16384,
                 trial=TRIAL, quick_start=QUICK_START)
