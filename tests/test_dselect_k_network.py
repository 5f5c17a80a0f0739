"""The multi-task MoE network of DSelect-k: expert convolutions, baseline
gates, shapes, per-task gates, the regularised loss and its schedule."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.dselect_k.network import MultiTaskMoE
from src.layers.conv import ExpertConv2d
from src.layers.gates import SoftmaxGate, TopKGate
from src.engine.heads import MultiTaskSoftmaxCELoss, NetWithRegLoss, scheduled_weight


class _SquaredSum(nn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x):
        return (self.cell(x) ** 2).sum()


@pytest.mark.parametrize("shared", [True, False])
def test_matmul_convolution_equals_native_with_gradients(shared):
    rng = np.random.default_rng(0)
    experts, cin, cout, k, h, w = 3, 2, 4, 3, 9, 7                     # non-square on purpose
    weight = rng.normal(size=(experts * cout, cin, k, k)).astype(np.float32)
    x = Tensor(rng.normal(size=(5, cin if shared else experts * cin, h, w)).astype(np.float32))
    outputs, grads = [], []
    for impl in ("native", "matmul"):
        conv = ExpertConv2d(experts, cin, cout, k, (h, w), shared, impl, weight)
        outputs.append(conv(x).asnumpy())
        grads.append(ms.grad(_SquaredSum(conv), grad_position=None,
                             weights=conv.trainable_params())(x)[0].asnumpy())
    assert outputs[0].shape == (5, experts * cout, h - k + 1, w - k + 1)
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-4)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-3)


def test_grouped_convolution_keeps_experts_apart():
    """Expert e's output depends on its own input channels only."""
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(2 * 3, 2, 3, 3)).astype(np.float32)
    conv = ExpertConv2d(2, 2, 3, 3, (6, 6), False, "matmul", weight)
    x = rng.normal(size=(1, 4, 6, 6)).astype(np.float32)
    base = conv(Tensor(x)).asnumpy()
    x[:, 2:] += 1.0                                                  # change expert 1's input
    changed = conv(Tensor(x)).asnumpy()
    np.testing.assert_array_equal(changed[:, :3], base[:, :3])
    assert not np.allclose(changed[:, 3:], base[:, 3:])


@pytest.mark.parametrize("shared", [True, False])
def test_the_prediction_impl_computes_the_layer_outside_training(shared):
    """impl matmul with predict_impl native: training runs the products,
    evaluation the Conv2D. The products' banded kernel is spoilt (every entry
    the zero slot) so that the two paths give different results."""
    rng = np.random.default_rng(2)
    experts, cin, cout, k, h, w = 3, 2, 4, 3, 8, 7
    weight = rng.normal(size=(experts * cout, cin, k, k)).astype(np.float32)
    x = Tensor(rng.normal(size=(2, cin if shared else experts * cin, h, w)).astype(np.float32))
    reference = ExpertConv2d(experts, cin, cout, k, (h, w), shared, "native", weight)(x).asnumpy()
    conv = ExpertConv2d(experts, cin, cout, k, (h, w), shared, "matmul", weight,
                        predict_impl="native")
    if not shared:
        conv.band_index = Tensor(np.full(conv.band_index.shape, weight.size, np.int32))
    conv.set_train(False)
    np.testing.assert_allclose(conv(x).asnumpy(), reference, atol=1e-4)
    conv.set_train(True)
    trained = conv(x).asnumpy()
    if shared:
        np.testing.assert_allclose(trained, reference, atol=1e-4)
    else:
        np.testing.assert_array_equal(trained, 0.0)            # the spoilt products ran
    # the other way round: the products outside training, Conv2D in it
    back = ExpertConv2d(experts, cin, cout, k, (h, w), shared, "native", weight,
                        predict_impl="matmul")
    assert hasattr(back, "conv") and hasattr(back, "band_index") == (not shared)
    back.set_train(False)
    np.testing.assert_allclose(back(x).asnumpy(), reference, atol=1e-4)


def test_expert_conv_errors():
    w = np.zeros((6, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="impl"):
        ExpertConv2d(2, 1, 3, 3, (5, 5), True, "fft", w)
    with pytest.raises(ValueError, match="'fft'"):
        ExpertConv2d(2, 1, 3, 3, (5, 5), True, "matmul", w, predict_impl="fft")
    with pytest.raises(ValueError, match="expected"):
        ExpertConv2d(2, 1, 4, 3, (5, 5), True, "native", w)
    with pytest.raises(ValueError, match="larger"):
        ExpertConv2d(2, 1, 3, 3, (2, 5), True, "native", w)


def test_softmax_and_top_k_gates():
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(6, 5)).astype(np.float32)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    soft, reg = SoftmaxGate(6, 5, weight)(Tensor(x))
    logits = x @ weight
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(soft.asnumpy(), expected, rtol=1e-5)
    assert float(reg.asnumpy()) == 0.0
    top, _ = TopKGate(6, 5, 2, weight)(Tensor(x))
    top = top.asnumpy()
    assert np.all((top > 0).sum(1) == 2)
    np.testing.assert_allclose(top.sum(1), 1.0, rtol=1e-6)
    for row, lg in zip(top, logits):
        best = np.argsort(lg)[-2:]
        e = np.exp(lg[best] - lg[best].max())
        np.testing.assert_allclose(row[best], e / e.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="k must lie"):
        TopKGate(6, 5, 6, weight)


def _images(n=4, seed=3):
    return Tensor(np.random.default_rng(seed).random((n, 1, 36, 36)).astype(np.float32))


@pytest.mark.parametrize("gate", ["dselect_k", "softmax", "topk"])
def test_network_shapes_and_one_gate_per_task(gate):
    net = MultiTaskMoE((1, 36, 36), num_tasks=2, num_classes=10, num_experts=5, gate=gate, k=2,
                       conv_impl="matmul")
    net.set_train(False)
    x = _images()
    logits, reg = net.forward_with_reg(x)
    assert logits.shape == (4, 2, 10)
    assert len(net.gates) == 2 and net.gates[0] is not net.gates[1]
    weights = net.gate_weights(x).asnumpy()
    assert weights.shape == (4, 2, 5) and np.all(weights >= 0)
    if gate == "dselect_k":   # 5 experts use 5 of 8 codes: the rest of the weight is on unused
        assert np.all(weights.sum(-1) <= 1.0 + 1e-6)     # codes until the regulariser removes it
    else:
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    if gate == "topk":
        assert np.all((weights > 0).sum(-1) == 2)
    # DSelect-k with 5 experts (not a power of two) carries the regulariser
    assert (float(reg.asnumpy()) > 0) == (gate == "dselect_k")


def test_conv_impl_does_not_change_the_network():
    ms.set_seed(4)
    native = MultiTaskMoE((1, 36, 36), conv_impl="native", num_experts=3)
    matmul = MultiTaskMoE((1, 36, 36), conv_impl="matmul", num_experts=3)
    ms.load_param_into_net(matmul, {p.name: p for p in native.get_parameters()}, strict_load=True)
    for net in (native, matmul):
        net.set_train(False)
    x = _images(3)
    np.testing.assert_allclose(matmul(x).asnumpy(), native(x).asnumpy(), atol=1e-4)


class _Summed(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        return (self.net(x) * ops.arange(20, dtype=ms.float32).reshape((1, 2, 10))).sum()


def test_the_pooling_kernel_does_not_change_the_network():
    """expert_pool native (the CPU kernel in place of the experts' ReLU and
    pooling) keeps every parameter's name, the outputs and the gradients."""
    from src.layers.relu_pool import ReluPool
    ms.set_seed(5)
    graph = MultiTaskMoE((1, 36, 36), conv_impl="matmul", num_experts=3)
    native = MultiTaskMoE((1, 36, 36), conv_impl="matmul", num_experts=3,
                          expert_pool=lambda: ReluPool(threads=2))
    assert sum(isinstance(cell, ReluPool) for _, cell in native.cells_and_names()) == 2
    assert [p.name for p in native.get_parameters()] == [p.name for p in graph.get_parameters()]
    ms.load_param_into_net(native, {p.name: p for p in graph.get_parameters()}, strict_load=True)
    x = _images(6)
    for net in (graph, native):
        net.set_train(True)                      # batch statistics in the norms
    np.testing.assert_allclose(native(x).asnumpy(), graph(x).asnumpy(), atol=1e-6)
    grads = [ms.grad(_Summed(net), grad_position=None, weights=net.trainable_params())(x)
             for net in (graph, native)]
    for want, got, param in zip(grads[0], grads[1], graph.trainable_params()):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), atol=1e-5, err_msg=param.name)


def test_network_errors_name_the_problem():
    with pytest.raises(ValueError, match="gate must be"):
        MultiTaskMoE((1, 36, 36), gate="noisy")
    with pytest.raises(ValueError, match="does not fit"):
        MultiTaskMoE((1, 12, 12), conv_channels=(4, 4, 4), kernel_size=5)


def test_softmax_cross_entropy_per_task():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 2, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (6, 2)).astype(np.int32)
    loss = MultiTaskSoftmaxCELoss([1.0, 0.5])(Tensor(logits), Tensor(labels)).asnumpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_task = -np.take_along_axis(logp, labels[..., None], -1)[..., 0].mean(0)
    assert float(loss) == pytest.approx(per_task[0] + 0.5 * per_task[1], rel=1e-5)


def test_regularised_loss_follows_its_schedule():
    schedule = scheduled_weight(0.2, warmup_epochs=4)
    assert [schedule(p) for p in (0.5, 1, 2, 4, 9)] == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.2])
    assert schedule.ramp_epochs == 4
    assert scheduled_weight(0.3, 0)(0.01) == 0.3
    with pytest.raises(ValueError):
        scheduled_weight(-1.0, 0)
    net = MultiTaskMoE((1, 36, 36), num_experts=3, conv_impl="matmul")
    net.set_train(False)
    loss_fn = MultiTaskSoftmaxCELoss([1.0, 1.0])
    with_reg = NetWithRegLoss(net, loss_fn, schedule)
    x, y = _images(4), Tensor(np.zeros((4, 2), np.int32))
    logits, reg = net.forward_with_reg(x)
    base = float(loss_fn(logits, y).asnumpy())
    for progress, w in ((1, 0.05), (0.5, 0.025), (4, 0.2)):
        with_reg.set_progress(progress)
        total = float(with_reg(x, y).asnumpy())
        assert total == pytest.approx(base + w * float(reg.asnumpy()), rel=1e-5)


def test_expert_usage_reports_what_the_gates_select():
    from src.dselect_k.spec import expert_usage
    net = MultiTaskMoE((1, 36, 36), num_tasks=2, num_classes=10, num_experts=8, gate="dselect_k",
                       k=2, conv_impl="matmul")
    net.set_train(False)
    # left: both selectors binary, on experts 3 (bits 1,1,0) and 5 (1,0,1), equal mixing;
    # right: both selectors on expert 6 (0,1,1): one expert
    gamma = 1.0
    left, right = net.gates[0], net.gates[1]
    left.z.set_data(Tensor(np.array([[[gamma, gamma, -gamma], [gamma, -gamma, gamma]]], np.float32)))
    left.w.set_data(Tensor(np.zeros((1, 2), np.float32)))
    right.z.set_data(Tensor(np.array([[[-gamma, gamma, gamma]] * 2], np.float32)))
    found = expert_usage(net, [_images(5)], ["left", "right"])
    assert found["rows"] == 5
    assert found["tasks"]["left"]["experts_used_mean"] == 2.0
    np.testing.assert_allclose(found["tasks"]["left"]["mean_weight"],
                               [0, 0, 0, 0.5, 0, 0.5, 0, 0], atol=1e-4)
    assert found["tasks"]["right"]["experts_used_max"] == 1
    assert found["tasks"]["right"]["mean_weight"][6] == pytest.approx(1.0)
    assert found["lines"][1].startswith("task right: 1.00 experts on average (at most 1)")
    # a softmax gate mixes every expert
    dense = MultiTaskMoE((1, 36, 36), num_experts=8, gate="softmax", conv_impl="matmul")
    dense.set_train(False)
    assert expert_usage(dense, [_images(5)], ["left", "right"])["tasks"]["left"][
        "experts_used_mean"] == 8.0


class _Batches:
    """Stands in for a reader: ``steps`` batches per epoch (never run here)."""
    batch_size = 2

    def __init__(self, steps):
        self.steps = steps

    def __len__(self):
        return self.steps

    def epoch(self, epoch):
        return [None] * self.steps


@pytest.mark.parametrize("start_epoch", [0, 1])
def test_trainer_ramps_the_regulariser_every_step(start_epoch):
    from src.config import parse_config
    from src.engine.trainer import Trainer
    from src.registry import get_model_spec
    cfg = parse_config(["--model", "dselect_k", "--num_experts", "4", "--conv_channels", "4,8",
                        "--expert_units", "16,16", "--tower_units", "16", "--epoch_size", "3",
                        "--steps_per_call", "1", "--gate_reg_weight", "0.6",
                        "--gate_reg_warmup_epochs", "1.5"])
    fmap = {"image_shape": (1, 36, 36), "tasks": ["left", "right"], "num_classes": 10}
    spec = get_model_spec("dselect_k")
    trainer = Trainer(spec, cfg, fmap, spec.build_network(cfg, fmap), 4, printer=lambda *a, **k: None)
    trainer.start_epoch = start_epoch                       # as resume_from leaves it
    seen = []
    trainer.step = lambda batch: seen.append(float(trainer.net_with_loss.reg_weight.asnumpy())) or 1.0
    trainer.fit(_Batches(4))
    steps = np.arange(4 * start_epoch + 1, 13)               # global steps run, 4 per epoch
    assert seen == pytest.approx(0.6 * np.minimum(1.0, steps / 4 / 1.5), rel=1e-6)


def test_the_trainer_pins_the_project_modules():
    """Building a Trainer pins the model's and the engine's source files
    (src/engine/source_pin.py; tests/test_source_pin.py tests the pin)."""
    import linecache
    import os
    import sys
    from src.config import parse_config
    from src.engine.source_pin import ROOT
    from src.engine.trainer import Trainer
    from src.registry import get_model_spec
    cfg = parse_config(["--model", "dselect_k", "--num_experts", "4", "--conv_channels", "4,8",
                        "--expert_units", "16,16", "--tower_units", "16", "--steps_per_call", "1"])
    fmap = {"image_shape": (1, 36, 36), "tasks": ["left", "right"], "num_classes": 10}
    spec = get_model_spec("dselect_k")
    Trainer(spec, cfg, fmap, spec.build_network(cfg, fmap), 4, printer=lambda *a, **k: None)
    for name in ("src.engine.trainer", "src.engine.train_step", "src.dselect_k.network"):
        path = sys.modules[name].__file__
        assert os.path.realpath(path).startswith(os.path.realpath(ROOT))
        assert linecache.cache[path][1] is None, name


# a small DSelect-k as the registry builds it from the command line
SMALL_ARGS = ["--model", "dselect_k", "--num_experts", "4", "--conv_channels", "4,8",
              "--expert_units", "16,16", "--tower_units", "16"]
SMALL_FMAP = {"image_shape": (1, 36, 36), "tasks": ["left", "right"], "num_classes": 10}


def _small_network(extra=(), config_path=None):
    from src.config import parse_config
    from src.registry import get_model_spec
    cfg = parse_config(SMALL_ARGS + list(extra), config_path=config_path)
    return get_model_spec("dselect_k").build_network(cfg, SMALL_FMAP)


def test_gate_start_from_the_config_reaches_every_gate():
    paper = _small_network(["--seed", "5"])
    apart = _small_network(["--seed", "5", "--gate_start", "0.4"])
    for g_paper, g_apart in zip(paper.gates, apart.gates):
        assert np.all(np.abs(g_paper.z.asnumpy()) <= 0.01)
        z = g_apart.z.asnumpy()[0]                                       # (k, bits)
        np.testing.assert_allclose(np.abs(z), 0.2)                       # 0.4 * gamma / 2
        assert len({tuple(row > 0) for row in z}) == 2                   # two different experts


@pytest.mark.parametrize("extra, train_impl, predict_impl", [
    ([], "matmul", "matmul"),                          # the CPU config
    (["--predict_conv", "native"], "matmul", "native"),
])
def test_the_cpu_config_chooses_each_convolution_impl(extra, train_impl, predict_impl):
    from src.registry import get_model_spec
    from tests.entry import CPU_CONFIG
    net = _small_network(extra, config_path=CPU_CONFIG)
    spec = get_model_spec("dselect_k")
    convs = [cell for _, cell in net.cells_and_names() if isinstance(cell, ExpertConv2d)]
    assert [(c.impl, c.predict_impl) for c in convs] == [(train_impl, predict_impl)] * 2
    assert spec.export_overrides["predict_conv"] == "native"
    assert "predict_conv" in spec.compute_keys
