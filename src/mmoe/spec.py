"""How the registry builds MMoE: Census-Income, one-hot plus numeric input."""
from src.datasets import CENSUS
from src.datasets.census import CENSUS_QUICK_START, CENSUS_TRIAL, input_layer
from src.registry import ModelSpec


def build_network(cfg, fmap):
    from src.mmoe.mmoe import MMoE
    layer, width = input_layer(cfg, fmap)
    return MMoE(input_dim=width, input_layer=layer, num_tasks=len(fmap["tasks"]),
                num_experts=cfg.num_experts, expert_units=cfg.expert_units,
                tower_units=cfg.tower_units, init=cfg.init, init_scale=cfg.init_scale,
                tower_dropout=cfg.tower_dropout, mixture=cfg.mixture)


SPEC = ModelSpec(name="mmoe", title="MMoE", dataset=CENSUS, build_network=build_network,
                 export_overrides={"mixture": "broadcast"},
                 bench_train_batches=(32, 256, 2048), bench_predict_batch=8192,
                 trial=CENSUS_TRIAL, quick_start=CENSUS_QUICK_START)
