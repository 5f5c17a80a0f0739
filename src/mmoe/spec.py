"""How the registry builds MMoE: Census-Income, one-hot plus numeric input."""
from src.datasets import CENSUS
from src.datasets.census import CENSUS_QUICK_START, CENSUS_TRIAL, input_layer, input_product
from src.engine.native import kernel_choice
from src.registry import ModelSpec


MIXTURES = ("graph", "native")          # predict_mixture, train_mixture


def build_network(cfg, fmap):
    from src.mmoe.mmoe import MMoE
    layer, width = input_layer(cfg, fmap)
    return MMoE(input_dim=width, input_layer=layer, num_tasks=len(fmap["tasks"]),
                num_experts=cfg.num_experts, expert_units=cfg.expert_units,
                tower_units=cfg.tower_units, init=cfg.init, init_scale=cfg.init_scale,
                tower_dropout=cfg.tower_dropout, mixture=cfg.mixture,
                input_product=input_product(cfg),
                predict_mixture=_mixture(cfg, fmap, "predict_mixture"),
                train_mixture=_mixture(cfg, fmap, "train_mixture"),
                tower_output_init=cfg.tower_output_init)


def _mixture(cfg, fmap, key):
    """The mixture config ``key`` (``predict_mixture``, ``train_mixture``)
    names: None for ``graph`` (MindSpore's operators), the CPU kernel for
    ``native`` (its gradient is a kernel too)."""
    def build(threads):
        from src.layers.gated_mixture import GatedMixture
        return GatedMixture(len(fmap["tasks"]), cfg.num_experts, cfg.expert_units,
                            threads=threads, key=key)
    return kernel_choice(cfg, key, MIXTURES, build)


SPEC = ModelSpec(name="mmoe", title="MMoE", dataset=CENSUS, build_network=build_network,
                 compute_keys=frozenset({"mixture", "input_product", "predict_mixture",
                                         "train_mixture"}),
                 export_overrides={"mixture": "broadcast", "input_product": "matmul",
                                   "predict_mixture": "graph", "train_mixture": "graph"},
                 bench_train_batches=(32, 256, 2048), bench_predict_batch=8192,
                 trial=CENSUS_TRIAL, quick_start=CENSUS_QUICK_START)
