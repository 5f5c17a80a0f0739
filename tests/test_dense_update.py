"""The dense-update kernels (src/engine/dense_update.cc): against a NumPy
reference through their C entry points, and as optimizers against
MindSpore's own (the same losses, weights and state over several steps, with
clipping, weight decay and a learning rate that changes every step)."""
import ctypes

import mindspore
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.engine import dense_update
from src.engine.optim import build_optimizer
from src.engine.train_step import build_train_step
from tests.aot import call_aot

SHAPES = [(3, 4), (4,), (5, 1)]


@pytest.fixture(scope="module")
def library():
    return ctypes.CDLL(dense_update.library_path())


def _reference(kind, weights, grads, states, lr, clip_norm, decay, constants, powers=None):
    """One step in float64: clipping by the global norm, decay, update."""
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    factor = clip_norm / max(norm, clip_norm) if clip_norm > 0 else 1.0
    new_w, new_s = [], []
    if kind == "adam":
        b1, b2, eps = constants
        powers = (powers[0] * b1, powers[1] * b2)
        lr = lr * np.sqrt(1 - powers[1]) / (1 - powers[0])
    for i, (w, g) in enumerate(zip(weights, grads)):
        w = w.astype(np.float64)
        g = g * factor + decay[i] * w
        if kind == "sgd":
            new_w.append(w - lr * g)
        elif kind == "momentum":
            a = states[0][i] * constants[0] + g
            new_w.append(w - lr * a)
            new_s.append([a])
        elif kind == "adagrad":
            a = states[0][i] + g * g
            new_w.append(w - lr * g / np.sqrt(a))
            new_s.append([a])
        else:
            m = states[0][i] + (g - states[0][i]) * (1 - b1)
            v = states[1][i] + (g * g - states[1][i]) * (1 - b2)
            new_w.append(w - lr * m / (np.sqrt(v) + eps))
            new_s.append([m, v])
    return new_w, new_s, powers


KERNELS = {"sgd": ("DenseSgd", 0, []), "momentum": ("DenseMomentum", 1, [0.9]),
           "adagrad": ("DenseAdagrad", 1, []), "adam": ("DenseAdam", 2, [0.9, 0.999, 1e-7])}


def _inputs(kind, shapes, seed, threads=1, clip_norm=0.0, step=0):
    rng = np.random.default_rng(seed)
    _, states, constants = KERNELS[kind]
    p = len(shapes)
    arrays = {
        "layout": np.array([p, threads], np.int32),
        "hyper": np.array([clip_norm] + constants, np.float32),
        "decay": rng.choice([0.0, 0.01], p).astype(np.float32),
        "lr": np.array([0.1, 0.05, 0.02], np.float32),
        "step": np.array([step], np.int32),
        "powers": [np.array([0.9 ** 3], np.float32), np.array([0.999 ** 3], np.float32)],
        "weights": [rng.standard_normal(s).astype(np.float32) for s in shapes],
        "grads": [rng.standard_normal(s).astype(np.float32) for s in shapes],
        "states": [[np.abs(rng.standard_normal(s)).astype(np.float32) + 0.1 for s in shapes]
                   for _ in range(states)],
        "out": np.full((1,), 7, np.int32),
    }
    return arrays


def _flat(kind, a):
    head = [a["layout"], a["hyper"], a["decay"], a["lr"], a["step"]]
    if kind == "adam":
        head += a["powers"]
    return head + a["weights"] + a["grads"] + [s for group in a["states"] for s in group] + [a["out"]]


@pytest.mark.parametrize("kind", list(KERNELS))
@pytest.mark.parametrize("clip_norm, threads, shapes, step", [
    (0.0, 1, SHAPES, 0), (0.5, 1, SHAPES, 1), (100.0, 1, SHAPES, 2),
    (0.5, 2, [(300, 300), (70000,), (3,)], 7)])              # split by threads; step past the table
def test_the_kernel_computes_one_step(library, kind, clip_norm, threads, shapes, step):
    a = _inputs(kind, shapes, seed=len(shapes) + step, threads=threads, clip_norm=clip_norm,
                step=step)
    weights = [w.copy() for w in a["weights"]]
    states = [[s.copy() for s in group] for group in a["states"]]
    powers = [float(x[0]) for x in a["powers"]]
    assert call_aot(getattr(library, KERNELS[kind][0]), _flat(kind, a)) == 0
    lr = a["lr"][min(step, 2)]
    want_w, want_s, want_p = _reference(kind, weights, a["grads"], states, lr, clip_norm,
                                        a["decay"], KERNELS[kind][2], powers)
    for got, want in zip(a["weights"], want_w):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    for i, group in enumerate(a["states"]):
        for j, got in enumerate(group):
            np.testing.assert_allclose(got, want_s[j][i], rtol=2e-5, atol=1e-7)
    assert a["step"][0] == step + 1 and a["out"][0] == 0
    if kind == "adam":
        np.testing.assert_allclose([a["powers"][0][0], a["powers"][1][0]], want_p, rtol=1e-6)


def test_a_nan_gradient_with_clipping_makes_every_weight_nan(library):
    a = _inputs("sgd", SHAPES, seed=1, clip_norm=1.0)
    a["grads"][1][0] = np.nan
    assert call_aot(library.DenseSgd, _flat("sgd", a)) == 0
    assert all(np.isnan(w).all() for w in a["weights"])


def test_the_kernel_refuses_inputs_that_do_not_fit_and_writes_nothing(library):
    def refused(kind, change):
        a = _inputs(kind, SHAPES, seed=2)
        change(a)
        weights = [w.copy() for w in a["weights"]]
        code = call_aot(getattr(library, KERNELS[kind][0]), _flat(kind, a))
        assert all(np.array_equal(w, x) for w, x in zip(a["weights"], weights))
        return code == 1 and a["step"][0] == 0

    assert refused("sgd", lambda a: a["layout"].__setitem__(0, 2))           # 3 weights given
    assert refused("sgd", lambda a: a["grads"].__setitem__(0, np.ones((4, 3), np.float32)[:2]))
    assert refused("adam", lambda a: a.__setitem__("hyper", a["hyper"][:3]))
    assert refused("momentum", lambda a: a["states"][0].pop())               # a state missing
    assert refused("sgd", lambda a: a.__setitem__("decay", a["decay"][:2]))
    assert refused("adagrad", lambda a: a["states"][0].__setitem__(1, a["states"][0][1].astype(np.float64)))
    assert refused("sgd", lambda a: a.__setitem__("step", np.array([0], np.int64)))


class _Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.a = nn.Dense(6, 5, weight_init="normal", bias_init="normal")
        self.b = nn.Dense(5, 1, weight_init="normal")

    def construct(self, x, y):
        return ((self.b(ms.ops.relu(self.a(x))) - y) ** 2).mean()


def _train(kind, mode, clip_norm, weight_decay, steps=5):
    ms.set_seed(5)
    net = _Net()
    lrs = np.array([0.05, 0.1, 0.02, 0.08, 0.03], np.float32)          # a new rate every step
    opt = build_optimizer(kind, net.trainable_params(), lrs, weight_decay=weight_decay,
                          adam_eps=1e-7, dense_update=mode, threads=2)
    step = build_train_step(net, opt, clip_norm=clip_norm)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        x = Tensor(rng.standard_normal((16, 6)).astype(np.float32))
        y = Tensor(rng.standard_normal((16, 1)).astype(np.float32))
        losses.append(float(step(x, y).asnumpy()))
    return opt, step, losses, {p.name: p.asnumpy() for p in opt.get_parameters()}


@pytest.mark.parametrize("kind, clip_norm, weight_decay", [
    ("adam", 0.5, 0.01), ("adam", 0.0, 0.0), ("sgd", 0.5, 0.01), ("momentum", 0.3, 0.0),
    ("adagrad", 0.0, 0.02)])
def test_the_kernel_optimizer_trains_as_mindspores(kind, clip_norm, weight_decay):
    graph_opt, graph_step, graph_losses, graph = _train(kind, "graph", clip_norm, weight_decay)
    opt, step, losses, kernel = _train(kind, "kernel", clip_norm, weight_decay)
    assert isinstance(opt, dense_update.NATIVE[kind]) and not step.clip
    assert opt.clip_norm == clip_norm
    np.testing.assert_allclose(losses, graph_losses, rtol=1e-6)
    assert kernel.keys() == graph.keys()            # the same state: checkpoints load either way
    for name in graph:
        np.testing.assert_allclose(kernel[name], graph[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert kernel["global_step"][0] == 5


def test_the_kernel_optimizer_refuses_what_it_cannot_do(monkeypatch):
    net = _Net()
    lr = np.full(4, 0.1, np.float32)
    with pytest.raises(ValueError, match="dense_update must be graph or kernel"):
        build_optimizer("adam", net.trainable_params(), lr, dense_update="fused")
    net.a.weight.set_dtype(ms.float16)
    with pytest.raises(ValueError, match=r"float32 weights.*amp_level must be O0.*dense_update: graph"):
        build_optimizer("adam", net.trainable_params(), lr, dense_update="kernel")
    net = _Net()
    with pytest.raises(ValueError, match="loss_scale 1"):
        build_optimizer("sgd", net.trainable_params(), lr, loss_scale=128.0, dense_update="kernel")
    groups = [{"params": [net.a.weight], "lr": 0.1}, {"params": [net.a.bias, net.b.weight, net.b.bias]}]
    with pytest.raises(ValueError, match="one parameter group"):
        dense_update.NativeAdam(groups, 0.1)
    monkeypatch.setattr(mindspore, "get_context", lambda key: "GPU")
    with pytest.raises(ValueError, match="on GPU set dense_update: graph"):
        build_optimizer("adam", net.trainable_params(), lr, dense_update="kernel")


def test_the_sparse_step_updates_its_dense_weights_with_the_kernel():
    """DLRM's and DeepFM's step: the rows by the row optimizer, the dense
    weights by the kernel optimizer, clipped together by the step."""
    from tests.test_row_update_kernel import _batch, _net
    from src.engine.heads import MultiTaskBCELoss
    from src.engine.sparse import NetWithRowsLoss, RowOptimizer, SparseTrainStep, unique_rows

    def train(mode):
        net = _net(seed=3)
        loss = NetWithRowsLoss(net, MultiTaskBCELoss([1.0]), 0.01)
        lrs = np.array([0.05, 0.1, 0.02], np.float32)
        rows = RowOptimizer(net.embedding.weight, "adam", lrs, eps=1e-6)
        dense = build_optimizer("adam", net.trainable_params(), lrs, dense_update=mode)
        step = SparseTrainStep(loss, net.embedding.weight, dense, rows, clip_norm=0.5)
        step.set_train()
        losses = []
        for cat, x, label in (_batch(seed=s, n=12) for s in (1, 2, 3)):
            uniq, inverse = unique_rows(cat, net.embedding.scratch_row, 1)
            losses.append(float(step(Tensor(uniq), Tensor(inverse), Tensor(x), Tensor(label)).asnumpy()))
        return losses, {n: p.asnumpy() for n, p in net.parameters_and_names()}

    graph_losses, graph = train("graph")
    losses, kernel = train("kernel")
    np.testing.assert_allclose(losses, graph_losses, rtol=1e-6)
    for name in graph:
        np.testing.assert_allclose(kernel[name], graph[name], rtol=1e-5, atol=1e-7, err_msg=name)
