"""How the registry builds Shared-Bottom: Census-Income, one-hot plus numeric input."""
from src.datasets import CENSUS
from src.datasets.census import CENSUS_QUICK_START, CENSUS_TRIAL, input_layer, input_product
from src.registry import ModelSpec


def build_network(cfg, fmap):
    from src.shared_bottom.network import SharedBottom
    layer, width = input_layer(cfg, fmap)
    return SharedBottom(input_dim=width, input_layer=layer, num_tasks=len(fmap["tasks"]),
                        bottom_units=cfg.bottom_units, tower_units=cfg.tower_units,
                        init=cfg.init, init_scale=cfg.init_scale,
                        tower_dropout=cfg.tower_dropout,
                        tower_output_init=cfg.tower_output_init,
                        input_product=input_product(cfg))


SPEC = ModelSpec(name="shared_bottom", title="Shared-Bottom", dataset=CENSUS,
                 build_network=build_network,
                 compute_keys=frozenset({"input_product"}),
                 export_overrides={"input_product": "matmul"},
                 bench_train_batches=(32, 256, 2048),
                 bench_predict_batch=8192, trial=CENSUS_TRIAL, quick_start=CENSUS_QUICK_START)
