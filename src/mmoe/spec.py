"""How the registry builds MMoE: Census-Income, one-hot plus numeric input."""
from src.datasets import CENSUS
from src.datasets.census import input_layer
from src.registry import ModelSpec, Trial


def build_network(cfg, fmap):
    from src.mmoe.mmoe import MMoE
    layer, width = input_layer(cfg, fmap)
    return MMoE(input_dim=width, input_layer=layer, num_tasks=len(fmap["tasks"]),
                num_experts=cfg.num_experts, expert_units=cfg.expert_units,
                tower_units=cfg.tower_units, init=cfg.init, init_scale=cfg.init_scale,
                tower_dropout=cfg.tower_dropout, mixture=cfg.mixture)


TRIAL = Trial(args=("--batch_size", "128", "--learning_rate", "0.01", "--warmup_epochs", "0.5",
                    "--eval_batch_size", "1024", "--log_every_steps", "1000"),
              expect={"income_auc": 0.8, "marital_auc": 0.8}, epochs=2, data_scale=0.15)

QUICK_START = Trial(args=("--batch_size", "256", "--learning_rate", "0.005", "--warmup_epochs", "1",
                          "--log_every_steps", "50"),
                    expect={"income_auc": 0.85, "marital_auc": 0.95}, epochs=4, data_scale=1.0,
                    data_seed=7)

SPEC = ModelSpec(name="mmoe", title="MMoE", dataset=CENSUS, build_network=build_network,
                 export_overrides={"mixture": "broadcast"},
                 bench_train_batches=(32, 256, 2048), bench_predict_batch=8192,
                 trial=TRIAL, quick_start=QUICK_START)
