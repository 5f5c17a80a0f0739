"""Pieces the PyTorch peers share: initialisers, stacked per-task towers,
MLPs, the optimizer mapping, the learning-rate table and the
:class:`PeerModel` train/predict loop.

Nothing here imports MindSpore (only :meth:`PeerModel.load_from_mindspore`
and :meth:`PeerModel.state_in_mindspore_layout` touch MindSpore objects, and
they are handed them), so a benchmark worker for the peer side never loads
the other framework.

Optimizer semantics (our side: ``src/engine/optim.py``, ``src/engine/sparse.py``):

* MindSpore's ``nn.Adam`` (and our row-wise lazy Adam) update
  ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``: ``eps`` is
  added to the *uncorrected* ``sqrt(v)``. ``torch.optim.Adam`` adds it to the
  bias-corrected ``sqrt(v / (1 - b2^t))``; the two are the same update when
  torch's ``eps`` is ``eps / sqrt(1 - b2^t)``, which :class:`PeerModel` sets
  before every step (one float per parameter group). ``torch.optim.SparseAdam``
  already uses our form, so it gets ``eps`` unchanged.
* Weight decay is coupled L2 (``g += wd * p``) in MindSpore's Adam, SGD,
  Momentum and Adagrad, for every parameter whose MindSpore name has neither
  ``beta`` nor ``gamma`` in it, i.e. not for batch-norm scales and shifts;
  torch's optimizers do the same with ``weight_decay`` per parameter group.
  The embedding rows get no weight decay (our row optimizer has none).
* MindSpore's dense ``nn.Adagrad`` starts its accumulator at 0.1 and has no
  epsilon; our row-wise Adagrad starts at 0 and uses ``adam_eps``.
* Clipping: MindSpore's ``clip_by_global_norm`` scales by
  ``clip / max(norm, clip)`` (torch's ``clip_grad_norm_`` uses
  ``clip / (norm + 1e-6)``), so :func:`clip_global_norm_` does ours.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INITIALIZERS = ("truncated_normal", "normal", "uniform", "xavier_uniform", "xavier_normal",
                "he_uniform", "he_normal", "zeros")


def torch_threads(n):
    """Intra-op threads of torch (the benchmark calls this; nothing is set at import)."""
    torch.set_num_threads(int(n))


# ---------------------------------------------------------------- initialisation
@torch.no_grad()
def init_matrix_(t, name, scale, fan_in, fan_out, generator):
    """Fill ``t`` like ``src.layers.initializers.make_initializer(name, scale)``
    fills an ``x @ W`` matrix of ``fan_in`` rows and ``fan_out`` columns
    (the fans are given, so stacked per-task weights get per-matrix fans).

    MindSpore's ``TruncatedNormal(sigma)`` truncates at the *absolute* values
    +-2 (its ``a``/``b`` are bounds, not multiples of sigma), like
    ``torch.nn.init.trunc_normal_`` with its defaults."""
    g = generator
    if name == "truncated_normal":
        return nn.init.trunc_normal_(t, 0.0, scale, -2.0, 2.0, generator=g)
    if name == "normal":
        return nn.init.normal_(t, 0.0, scale, generator=g)
    if name == "uniform":
        return nn.init.uniform_(t, -scale, scale, generator=g)
    if name == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return nn.init.uniform_(t, -bound, bound, generator=g)
    if name == "xavier_normal":
        return nn.init.normal_(t, 0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=g)
    if name == "he_uniform":
        bound = math.sqrt(6.0 / fan_in)
        return nn.init.uniform_(t, -bound, bound, generator=g)
    if name == "he_normal":
        return nn.init.normal_(t, 0.0, math.sqrt(2.0 / fan_in), generator=g)
    if name == "zeros":
        return t.zero_()
    raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}")


def init_stack(count, fan_in, fan_out, name, scale, generator):
    """``(count, fan_in, fan_out)`` tensor of independently initialised matrices."""
    out = torch.empty(count, fan_in, fan_out)
    for i in range(count):
        init_matrix_(out[i], name, scale, fan_in, fan_out, generator)
    return out


# ---------------------------------------------------------------- layers
class TaskTowers(nn.Module):
    """One MLP per task, all tasks at once (``src.layers.towers.TaskTowers``):
    ``(B, T, D) -> (B, T, out)``; layer ``l`` has ``weight{l}`` ``(T, d_l, d_l+1)``
    and ``bias{l}`` ``(T, 1, d_l+1)``; ReLU and dropout after hidden layers;
    ``output_init="zero"``: the last layer's weights start at zero."""

    def __init__(self, num_tasks, in_dim, hidden_units, out_dim, init, scale, dropout, generator,
                 output_init="init"):
        super().__init__()
        dims = [int(in_dim)] + [int(u) for u in hidden_units] + [int(out_dim)]
        self.num_layers = len(dims) - 1
        for i in range(self.num_layers):
            weight = init_stack(num_tasks, dims[i], dims[i + 1], init, scale, generator)
            if output_init == "zero" and i == self.num_layers - 1:
                weight.zero_()
            self.register_parameter(f"weight{i}", nn.Parameter(weight))
            self.register_parameter(f"bias{i}", nn.Parameter(torch.zeros(num_tasks, 1, dims[i + 1])))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._layers = [(f"weight{i}", f"bias{i}") for i in range(self.num_layers)]

    def forward(self, x):
        h = x.transpose(0, 1)                                         # (T, B, D)
        last = self.num_layers - 1
        for i, (w, b) in enumerate(self._layers):
            h = torch.baddbmm(getattr(self, b), h, getattr(self, w))
            if i < last:
                h = self.dropout(F.relu(h))
        return h.transpose(0, 1)                                      # (B, T, out)


def mlp(dims, init, scale=0.01, dropout=0.0, batch_norm=False, last_activation=False,
        generator=None):
    """``nn.Sequential`` of ``nn.Linear`` layers laid out like ``src.layers.mlp.MLP``
    (same module indices: Linear, [BatchNorm1d], ReLU, [Dropout] per hidden layer).

    ``init="reference_dlrm"``: ``W ~ N(0, sqrt(2/(in+out)))``, ``b ~ N(0, sqrt(1/out))``;
    otherwise a named initialiser and zero biases."""
    dims = [int(d) for d in dims]
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            if init == "reference_dlrm":
                nn.init.normal_(linear.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)),
                                generator=generator)
                nn.init.normal_(linear.bias, 0.0, math.sqrt(1.0 / fan_out), generator=generator)
            else:
                init_matrix_(linear.weight, init, scale, fan_in, fan_out, generator)
                linear.bias.zero_()
        layers.append(linear)
        hidden = i < len(dims) - 2
        if hidden and batch_norm:
            layers.append(nn.BatchNorm1d(fan_out))     # MindSpore momentum 0.9 == torch 0.1
        if hidden or last_activation:
            layers.append(nn.ReLU())
        if hidden and dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def weighted_bce(logits, labels, weights):
    """``MultiTaskBCELoss``: per-task mean BCE-with-logits, weighted sum over tasks."""
    per_task = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0)
    return (per_task * weights).sum()


# ---------------------------------------------------------------- learning rates and optimizers
def train_steps_per_epoch(cfg, feature_map):
    """Steps per epoch our trainer would use: the train split's rows over the
    batch size (``drop_remainder``), or None when the feature map lacks them."""
    train = (feature_map.get("splits") or {}).get("train")
    rows = train.get("rows") if isinstance(train, dict) else train
    if not rows:
        return None
    batch = int(cfg.batch_size)
    return int(rows) // batch if cfg.drop_remainder else -(-int(rows) // batch)


def learning_rate_table(cfg, feature_map, steps_per_epoch=None):
    """The per-step learning rates of our trainer (``src.engine.lr``, pure numpy)."""
    from src.engine.lr import learning_rates
    steps = steps_per_epoch or train_steps_per_epoch(cfg, feature_map)
    if not steps:
        return np.asarray([cfg.learning_rate], np.float32)
    return learning_rates(cfg.lr_schedule, cfg.learning_rate, max(1, steps), cfg.epoch_size,
                          warmup_epochs=cfg.warmup_epochs, decay_rate=cfg.lr_decay_rate,
                          min_lr=cfg.min_lr)


def _dense_groups(params, no_decay, weight_decay):
    no_decay_ids = {id(p) for p in no_decay}
    decay = [p for p in params if id(p) not in no_decay_ids]
    keep = [p for p in params if id(p) in no_decay_ids]
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizers(cfg, dense_params, no_decay=(), sparse_params=()):
    """``(optimizers, adam_groups)``: our dense optimizer on ``dense_params``
    (``no_decay``: the batch-norm parameters, which MindSpore exempts from weight
    decay) and our row-wise optimizer on the sparse-gradient ``sparse_params``.
    ``adam_groups`` are the dense Adam groups whose ``eps`` follows the step
    (see the module docstring)."""
    name, lr, wd = cfg.optimizer, float(cfg.learning_rate), float(cfg.weight_decay)
    betas, eps = (float(cfg.adam_beta1), float(cfg.adam_beta2)), float(cfg.adam_eps)
    dense = _dense_groups(list(dense_params), list(no_decay), wd)
    sparse = list(sparse_params)
    optimizers, adam_groups = [], []
    if name == "adam":
        opt = torch.optim.Adam(dense, lr=lr, betas=betas, eps=eps)
        optimizers.append(opt)
        adam_groups = list(opt.param_groups)
    elif name == "sgd":
        if sparse:           # one SGD for MLPs and tables, as the reference DLRM has
            return [torch.optim.SGD(dense + [{"params": sparse, "weight_decay": 0.0}], lr=lr)], []
        optimizers.append(torch.optim.SGD(dense, lr=lr))
    elif name == "momentum":
        optimizers.append(torch.optim.SGD(dense, lr=lr, momentum=float(cfg.momentum)))
    elif name == "adagrad":
        optimizers.append(torch.optim.Adagrad(dense, lr=lr, initial_accumulator_value=0.1, eps=0.0))
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    if sparse:
        if name == "adam":
            optimizers.append(torch.optim.SparseAdam(sparse, lr=lr, betas=betas, eps=eps))
        elif name == "adagrad":
            optimizers.append(torch.optim.Adagrad(sparse, lr=lr, initial_accumulator_value=0.0,
                                                  eps=eps))
        else:
            raise ValueError(f"sparse embedding training supports sgd, adagrad, adam; got {name!r}")
    return optimizers, adam_groups


def clip_global_norm_(params, clip):
    """``g *= clip / max(||all g||, clip)`` (MindSpore's clip_by_global_norm);
    sparse gradients are coalesced first (duplicate rows summed, as ours are)."""
    squares, grads = [], []
    for p in params:
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            g = p.grad = g.coalesce()
            squares.append(g._values().pow(2).sum())
        else:
            squares.append(g.pow(2).sum())
        grads.append(g)
    if not grads:
        return
    norm = torch.stack(squares).sum().sqrt()
    coef = clip / torch.clamp(norm, min=clip)
    for g in grads:
        g.mul_(coef)


# ---------------------------------------------------------------- the peer model
_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_variance": "running_var"}


class PeerModel:
    """A PyTorch network with our training step and predictor around it.

    Subclasses set ``module`` and implement ``loss(*tensors)`` (inputs and
    labels as torch tensors -> scalar loss) and ``activation(logits)``; they
    may override ``_special`` (parameter copies that are not one-to-one)."""

    def __init__(self, module, cfg, feature_map, dense_params, no_decay=(), sparse_params=(),
                 steps_per_epoch=None):
        self.module = module
        self.optimizers, self._adam_groups = build_optimizers(cfg, dense_params, no_decay,
                                                              sparse_params)
        self._params = [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]]
        self.lrs = [float(v) for v in learning_rate_table(cfg, feature_map, steps_per_epoch)]
        self.steps_per_epoch = steps_per_epoch or train_steps_per_epoch(cfg, feature_map) or 1
        self.clip_norm = float(cfg.clip_norm)
        self._beta2, self._eps = float(cfg.adam_beta2), float(cfg.adam_eps)
        self.global_step = 0
        self._lr = None
        self._training = None

    # -- hooks
    def loss(self, *tensors):
        raise NotImplementedError

    def activation(self, logits):
        return torch.sigmoid(logits)

    # -- training
    def _schedule(self):
        step = self.global_step
        lr = self.lrs[min(step, len(self.lrs) - 1)]
        if lr != self._lr:
            for opt in self.optimizers:
                for group in opt.param_groups:
                    group["lr"] = lr
            self._lr = lr
        if self._adam_groups:
            eps = self._eps / math.sqrt(1.0 - self._beta2 ** (step + 1))
            for group in self._adam_groups:
                group["eps"] = eps

    def train_step(self, *batch):
        """One step on ``batch`` = ``(inputs..., labels)`` numpy arrays as
        ``spec.make_batch`` returns them; returns the loss."""
        if self._training is not True:
            self.module.train()
            self._training = True
        tensors = [torch.from_numpy(a) for a in batch]
        self._schedule()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss = self.loss(*tensors)
        loss.backward()
        if self.clip_norm > 0:
            clip_global_norm_(self._params, self.clip_norm)
        for opt in self.optimizers:
            opt.step()
        self.global_step += 1
        return loss.item()

    def logits(self, *inputs):
        """Eval-mode logits (numpy) of numpy inputs."""
        self._eval()
        with torch.inference_mode():
            return self.module(*[torch.from_numpy(a) for a in inputs]).numpy()

    def predict(self, *inputs):
        """Eval-mode probabilities (numpy), the shape of our Predictor's output."""
        self._eval()
        with torch.inference_mode():
            return self.activation(self.module(*[torch.from_numpy(a) for a in inputs])).numpy()

    def _eval(self):
        if self._training is not False:
            self.module.eval()
            self._training = False

    # -- weights from / to our MindSpore network
    def _special(self):
        """``{our parameter name: (load(numpy), dump() -> numpy)}`` for the
        parameters that are not a one-to-one copy."""
        return {}

    def _resolve(self, name, network_cells):
        """Our parameter ``name`` -> ``(peer tensor, transpose)``."""
        peer_name = name.replace(".layers.", ".")
        owner, _, leaf = peer_name.rpartition(".")
        leaf = _BN_NAMES.get(leaf, leaf)
        peer_name = f"{owner}.{leaf}" if owner else leaf
        tensors = dict(self.module.named_parameters())
        tensors.update(self.module.named_buffers())
        if peer_name not in tensors:
            raise KeyError(f"peer has no tensor for our parameter {name!r} (looked for {peer_name!r})")
        # our src.layers.mlp.Dense stores W as (in, out), nn.Linear as (out, in)
        cell = network_cells.get(name.rpartition(".")[0])
        transpose = type(cell).__name__ == "Dense" and type(cell).__module__ == "src.layers.mlp" \
            and leaf == "weight"
        return tensors[peer_name], transpose

    @staticmethod
    def _cells(network):
        return dict(network.cells_and_names())

    def _our_parameters(self, network):
        return [(p.name, p) for p in network.get_parameters()]

    @torch.no_grad()
    def load_from_mindspore(self, network):
        """Copy every parameter (and batch-norm statistic) of our network into the peer."""
        special, cells = self._special(), self._cells(network)
        for name, param in self._our_parameters(network):
            value = param.asnumpy()
            if name in special:
                special[name][0](value)
                continue
            target, transpose = self._resolve(name, cells)
            value = value.T if transpose else value
            if tuple(target.shape) != value.shape:
                raise ValueError(f"{name}: ours {value.shape}, peer {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    @torch.no_grad()
    def state_in_mindspore_layout(self, network):
        """``{our parameter name: numpy}`` of the peer's current values, in our layout."""
        special, cells = self._special(), self._cells(network)
        out = {}
        for name, _ in self._our_parameters(network):
            if name in special:
                out[name] = special[name][1]()
                continue
            target, transpose = self._resolve(name, cells)
            value = target.detach().numpy().copy()
            out[name] = value.T.copy() if transpose else value
        return out
