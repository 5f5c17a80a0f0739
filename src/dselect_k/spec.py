"""How the registry builds DSelect-k: MultiMNIST, CNN experts, gates whose
regulariser (the entropy of the selectors) joins the loss."""
from src.datasets import MULTIMNIST
from src.registry import ModelSpec, Trial


def build_network(cfg, fmap):
    from src.dselect_k.network import MultiTaskMoE
    return MultiTaskMoE(
        image_shape=fmap["image_shape"], num_tasks=len(fmap["tasks"]),
        num_classes=fmap["num_classes"], num_experts=cfg.num_experts,
        conv_channels=cfg.conv_channels, kernel_size=cfg.kernel_size,
        expert_units=cfg.expert_units, tower_units=cfg.tower_units, gate=cfg.gate, k=cfg.k,
        gamma=cfg.gamma, gate_mode=cfg.gate_mode, conv_impl=cfg.conv_impl, init=cfg.init,
        init_scale=cfg.init_scale, tower_dropout=cfg.tower_dropout, seed=cfg.seed)


def reg_schedule(cfg):
    from src.engine.heads import scheduled_weight
    return scheduled_weight(cfg.gate_reg_weight, cfg.gate_reg_warmup_epochs)


TRIAL = Trial(args=("--num_experts", "4", "--conv_channels", "4,8", "--expert_units", "16,16",
                    "--tower_units", "16", "--batch_size", "50", "--eval_batch_size", "128",
                    "--learning_rate", "0.003", "--log_every_steps", "1000"),
              expect={"left_accuracy": 0.5, "right_accuracy": 0.5}, epochs=3, data_scale=0.1)

QUICK_START = Trial(args=("--log_every_steps", "10"),
                    expect={"left_accuracy": 0.6, "right_accuracy": 0.6}, epochs=3,
                    data_scale=0.5, data_seed=7)

SPEC = ModelSpec(name="dselect_k", title="DSelect-k", dataset=MULTIMNIST,
                 build_network=build_network, capabilities=frozenset({"regularised"}),
                 reg_schedule=reg_schedule, export_overrides={"conv_impl": "native"},
                 bench_train_batches=(256,), bench_predict_batch=1024,
                 trial=TRIAL, quick_start=QUICK_START)
