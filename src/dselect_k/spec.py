"""How the registry builds DSelect-k: MultiMNIST, CNN experts, gates whose
regulariser (the entropy of the selectors) joins the loss."""
from src.datasets import MULTIMNIST
from src.engine.native import kernel_choice
from src.registry import ModelSpec, Trial

EXPERT_POOLS = ("graph", "native")


def _expert_pool(cfg):
    """What ``expert_pool`` names: None for ``graph`` (nn.ReLU, then
    nn.MaxPool2d), else a maker of the ReLU-and-pooling CPU kernel's cells."""
    def build(threads):
        from src.layers.relu_pool import ReluPool
        return lambda: ReluPool(threads=threads)
    return kernel_choice(cfg, "expert_pool", EXPERT_POOLS, build)


def build_network(cfg, fmap):
    from src.dselect_k.network import MultiTaskMoE
    return MultiTaskMoE(
        image_shape=fmap["image_shape"], num_tasks=len(fmap["tasks"]),
        num_classes=fmap["num_classes"], num_experts=cfg.num_experts,
        conv_channels=cfg.conv_channels, kernel_size=cfg.kernel_size,
        expert_units=cfg.expert_units, tower_units=cfg.tower_units, gate=cfg.gate, k=cfg.k,
        gamma=cfg.gamma, gate_mode=cfg.gate_mode, conv_impl=cfg.conv_impl, init=cfg.init,
        init_scale=cfg.init_scale, tower_dropout=cfg.tower_dropout, seed=cfg.seed,
        gate_balance=cfg.gate_balance_weight, gate_overlap=cfg.gate_overlap_weight,
        gate_start=cfg.gate_start, expert_pool=_expert_pool(cfg),
        predict_conv=cfg.predict_conv)


def expert_usage(network, inputs, task_names, threshold=0.01):
    """How many experts each task's gate uses on a batch (weight above
    ``threshold``) and its mean weight per expert: a sparse gate that has
    converged shows k experts or fewer, a dense mixture all of them."""
    import numpy as np
    weights = network.gate_weights(inputs[0]).asnumpy()                    # (B, T, E)
    tasks, lines = {}, []
    for t, name in enumerate(task_names):
        used = (weights[:, t, :] > threshold).sum(axis=1)
        mean = weights[:, t, :].mean(axis=0)
        tasks[name] = {"experts_used_mean": float(used.mean()), "experts_used_max": int(used.max()),
                       "mean_weight": [round(float(v), 4) for v in mean]}
        top = ", ".join(f"{e}: {mean[e]:.3f}" for e in np.argsort(-mean) if mean[e] > threshold)
        lines.append(f"task {name}: {used.mean():.2f} experts on average (at most {used.max()}) "
                     f"carry more than {threshold:.0%} of the weight; mean weight by expert {{{top}}}")
    return {"rows": int(weights.shape[0]), "threshold": threshold, "tasks": tasks, "lines": lines}


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
                 reg_schedule=reg_schedule,
                 compute_keys=frozenset({"conv_impl", "predict_conv", "expert_pool"}),
                 export_overrides={"conv_impl": "native", "predict_conv": "native",
                                   "expert_pool": "graph"},
                 bench_train_batches=(256,), bench_predict_batch=1024,
                 trial=TRIAL, quick_start=QUICK_START, describe=expert_usage)
