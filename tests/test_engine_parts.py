import os
import types

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.engine import checkpoint
from src.engine.lr import learning_rates
from src.engine.optim import build_optimizer
from src.engine.graph_call import GraphCall, Threaded, threaded
from src.engine.train_step import MultiStep, build_train_step, clip_by_global_norm, random_cells
from src.engine.trainer import AUTO_STEPS, _steps_per_call
from src.engine.heads import MultiTaskBCELoss, NetWithLoss


def test_noam_schedule_matches_upstream_formula():
    lr = learning_rates("noam", 0.001, steps_per_epoch=10, epochs=20, warmup_epochs=5)
    a = 50
    s = np.arange(200)
    expected = 0.001 * np.sqrt(a) * np.minimum((s + 1) * a ** -1.5, (s + 1) ** -0.5)
    np.testing.assert_allclose(lr, expected, rtol=1e-6)
    assert lr.argmax() == a - 1 and lr.max() == pytest.approx(0.001)


@pytest.mark.parametrize("name", ["constant", "warmup", "exponential", "cosine"])
def test_schedules_shape_and_warmup(name):
    lr = learning_rates(name, 0.1, steps_per_epoch=4, epochs=5, warmup_epochs=1, decay_rate=0.1,
                        min_lr=0.01)
    assert lr.shape == (20,) and lr.dtype == np.float32 and np.all(lr > 0)
    if name != "constant":
        np.testing.assert_allclose(lr[:4], [0.025, 0.05, 0.075, 0.1], rtol=1e-6)
    if name == "cosine":
        assert lr[-1] == pytest.approx(0.01, rel=0.1)
    if name == "exponential":
        assert lr[-1] == pytest.approx(0.1 * 0.1 ** (15 / 16), rel=1e-4)


def test_schedule_errors():
    with pytest.raises(ValueError, match="unknown lr schedule"):
        learning_rates("bogus", 0.1, 1, 1)
    with pytest.raises(ValueError, match="no training steps"):
        learning_rates("constant", 0.1, 0, 3)


class TinyNet(nn.Cell):
    """A small two-task network: what the engine needs of one, nothing of a model."""

    def __init__(self, input_dim=6, tasks=2, dropout=0.0):
        super().__init__()
        self.hidden = nn.Dense(input_dim, 4, activation="relu")
        self.dropout = nn.Dropout(p=dropout)
        self.out = nn.Dense(4, tasks)

    def construct(self, x):
        return self.out(self.dropout(self.hidden(x)))


def _step(clip_norm=0.0, lr=0.1, optimizer="sgd", loss_scale_mode="none", dropout=0.0,
          dense_update="graph"):
    net = TinyNet(dropout=dropout)
    nwl = NetWithLoss(net, MultiTaskBCELoss([1.0, 1.0]))
    rates = np.full(100, lr, np.float32) if np.isscalar(lr) else np.asarray(lr, np.float32)
    opt = build_optimizer(optimizer, net.trainable_params(), rates, dense_update=dense_update)
    return net, build_train_step(nwl, opt, loss_scale_mode=loss_scale_mode, loss_scale=1024.0,
                                 clip_norm=clip_norm)


@pytest.mark.parametrize("dense_update", ["graph", "kernel"])
def test_clipping_bounds_the_update(dense_update):
    """With SGD at lr 1 the update equals the gradient, so its global norm is
    at most clip_norm."""
    x = Tensor(np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32) * 100)
    y = Tensor(np.ones((8, 2), np.float32))
    net, step = _step(clip_norm=0.01, lr=1.0, dense_update=dense_update)
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    step(x, y)
    delta = np.sqrt(sum(((p.asnumpy() - b) ** 2).sum() for p, b in zip(net.trainable_params(), before)))
    assert 0 < delta <= 0.01 + 1e-6


class _Clip(ms.nn.Cell):
    def __init__(self, clip_norm):
        super().__init__()
        self.clip_norm = Tensor([clip_norm], ms.float32)

    def construct(self, a, b, c):
        return clip_by_global_norm((a, b, c), self.clip_norm)


@pytest.mark.parametrize("clip_norm", [0.5, 100.0])
def test_clip_by_global_norm_matches_the_formula(clip_norm):
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in ((3, 4), (7,), (2, 3, 5))]
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    factor = clip_norm / max(norm, clip_norm)
    out = _Clip(clip_norm)(*[Tensor(g) for g in grads])
    assert len(out) == 3
    for got, g in zip(out, grads):
        assert got.shape == g.shape
        np.testing.assert_allclose(got.asnumpy(), g * factor, rtol=1e-6, atol=1e-7)
    if clip_norm > norm:                     # nothing to clip: the gradients pass unchanged
        for got, g in zip(out, grads):
            np.testing.assert_array_equal(got.asnumpy(), g)


def test_graph_call_trains_exactly_as_the_cell_call():
    """The direct run of the compiled graph gives the losses and weights of
    ordinary calls, and a new batch shape compiles its own graph."""
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((n, 6)).astype(np.float32), (rng.random((n, 2)) > 0.5).astype(np.float32))
               for n in (8, 8, 8, 5, 8, 5)]
    ms.set_seed(5)
    plain_net, plain = _step(clip_norm=1.0, optimizer="adam")
    ms.set_seed(5)
    fast_net, fast_step = _step(clip_norm=1.0, optimizer="adam")
    fast = GraphCall(fast_step)
    for x, y in batches:
        a = plain(Tensor(x), Tensor(y)).asnumpy()
        b = fast(ms.from_numpy(x), ms.from_numpy(y)).asnumpy()
        np.testing.assert_array_equal(a, b)
    assert len(fast._checked) == 2           # both shapes ran directly after their first call
    for p, q in zip(plain_net.trainable_params(), fast_net.trainable_params()):
        np.testing.assert_array_equal(p.asnumpy(), q.asnumpy())
    assert fast_step.optimizer.global_step.asnumpy().item() == len(batches)


@pytest.mark.parametrize("loss_scale_mode, dense_update", [("none", "graph"), ("dynamic", "graph"),
                                                           ("none", "kernel")])
def test_multi_step_trains_exactly_as_single_steps(loss_scale_mode, dense_update):
    """k steps in one graph = k calls: the same losses, weights, Adam moments
    and step counter, with a learning rate that changes every step (so each
    step of a call must read its own); also with the update kernel, whose
    in-place writes each step must see."""
    rng = np.random.default_rng(6)
    batches = [(rng.standard_normal((8, 6)).astype(np.float32),
                (rng.random((8, 2)) > 0.5).astype(np.float32)) for _ in range(6)]
    rates = learning_rates("noam", 0.05, steps_per_epoch=4, epochs=5, warmup_epochs=2)
    steps = []
    for _ in range(2):
        ms.set_seed(7)
        steps.append(_step(clip_norm=0.5, lr=rates, optimizer="adam",
                           loss_scale_mode=loss_scale_mode, dense_update=dense_update)[1])
    single = [steps[0](Tensor(x), Tensor(y)).asnumpy().item() for x, y in batches]
    multi = GraphCall(MultiStep(steps[1], 3))
    grouped = []
    for i in (0, 3):
        tensors = [ms.from_numpy(a) for batch in batches[i:i + 3] for a in batch]
        losses = multi(*tensors).asnumpy()
        assert losses.shape == (3,)
        grouped += losses.tolist()
    np.testing.assert_allclose(grouped, single, rtol=1e-6)
    assert len(set(np.round(single, 6))) == 6            # six different steps, not one repeated
    for (name, a), b in zip(steps[0].parameters_and_names(), steps[1].get_parameters()):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-5, atol=1e-7, err_msg=name)
    assert steps[1].optimizer.global_step.asnumpy().item() == 6


def test_steps_per_call_choices_and_refusals():
    class Cfg(dict):
        def get(self, key, default=None):
            return dict.get(self, key, default)

    dense, sparse = types.SimpleNamespace(sparse=False, name="alpha"), types.SimpleNamespace(
        sparse=True, name="beta")
    plain, _ = _step()
    assert _steps_per_call(Cfg(), dense, plain) == 1 and _steps_per_call(Cfg(steps_per_call=4), dense, plain) == 4
    with pytest.raises(ValueError, match="at least 1"):
        _steps_per_call(Cfg(steps_per_call=-2), dense, plain)
    # a sparse step runs several steps a call in one process without MindSpore's
    # copies of a parameter read more than once; not when its rows go between
    # ranks every step (a sharded table or a data-parallel run)
    plain.embedding = types.SimpleNamespace(sharded=False)
    uncopied = dict(parameter_copies="none")
    assert _steps_per_call(Cfg(steps_per_call=2, **uncopied), sparse, plain) == 2
    assert _steps_per_call(Cfg(steps_per_call=0, **uncopied), sparse, plain) == AUTO_STEPS
    assert _steps_per_call(Cfg(steps_per_call=0), sparse, plain) == 1
    with pytest.raises(ValueError, match="set parameter_copies none"):
        _steps_per_call(Cfg(steps_per_call=2), sparse, plain)
    plain.embedding = types.SimpleNamespace(sharded=True)
    with pytest.raises(ValueError, match="distributed run of beta"):
        _steps_per_call(Cfg(steps_per_call=2, **uncopied), sparse, plain)
    assert _steps_per_call(Cfg(steps_per_call=0, **uncopied), sparse, plain) == 1
    dropped, step = _step(dropout=0.2)
    assert random_cells(dropped) == ["dropout"] and random_cells(plain) == []
    assert _steps_per_call(Cfg(steps_per_call=1), dense, dropped) == 1
    # 0 chooses: several steps per call for a dense step without dropout, at any batch size
    auto = [_steps_per_call(Cfg(steps_per_call=0, batch_size=b), dense, plain) for b in (1, 32, 512, 4096)]
    assert auto == [AUTO_STEPS] * 4 and AUTO_STEPS == 4
    assert _steps_per_call(Cfg(steps_per_call=0, batch_size=4096), dense, dropped) == 1
    del plain.embedding
    with pytest.raises(ValueError, match="same masks"):
        _steps_per_call(Cfg(steps_per_call=2), dense, dropped)
    with pytest.raises(ValueError, match="2 or more"):
        MultiStep(step, 1)


def test_graph_call_follows_the_phase_of_the_cell():
    net = TinyNet(dropout=0.5)
    call = GraphCall(net)
    x = Tensor(np.random.default_rng(3).standard_normal((16, 6)).astype(np.float32))
    net.set_train(False)
    first = [call(x).asnumpy() for _ in range(3)]
    net.set_train(True)                      # dropout on: another graph, different outputs
    trained = call(x).asnumpy()
    net.set_train(False)
    again = call(x).asnumpy()
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first[0], again)
    assert not np.array_equal(trained, again)
    np.testing.assert_array_equal(net(x).asnumpy(), again)


def test_checkpoint_roundtrip_and_checks(tmp_path):
    net, step = _step(optimizer="adam")
    x = Tensor(np.ones((4, 6), np.float32))
    step(x, Tensor(np.ones((4, 2), np.float32)))
    path = str(tmp_path / "alpha-1_5.ckpt")
    checkpoint.save_checkpoint(step, path, "alpha", epoch=1, global_step=5)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    fresh, fresh_step = _step(optimizer="adam")
    meta = checkpoint.load_into(fresh_step, path, "alpha")
    assert meta == {"model": "alpha", "epoch": 1, "global_step": 5, "format": checkpoint.FORMAT}
    for a, b in zip(net.get_parameters(), fresh.get_parameters()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    assert fresh_step.optimizer.global_step.asnumpy().item() == 1   # optimizer state restored
    # a bare network loads the weights out of the full training state
    bare = TinyNet()
    checkpoint.load_into(bare, path, "alpha")
    np.testing.assert_array_equal(bare(x).asnumpy(), net(x).asnumpy())

    with pytest.raises(checkpoint.CheckpointError, match="written by model 'alpha'.*selects 'beta'"):
        checkpoint.load_into(bare, path, "beta")
    wider = TinyNet(input_dim=7)
    with pytest.raises(checkpoint.CheckpointError, match=r"hidden.weight: checkpoint \(4, 6\) vs network \(4, 7\)"):
        checkpoint.load_into(wider, path, "alpha")
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load_into(bare, str(tmp_path / "none.ckpt"), "alpha")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    damaged = bytearray((tmp_path / "alpha-1_5.ckpt").read_bytes())
    damaged[len(damaged) // 2] ^= 0x01                     # one bit of a tensor's bytes
    (tmp_path / "damaged.ckpt").write_bytes(bytes(damaged))
    with pytest.raises(checkpoint.CheckpointError, match="damaged.ckpt is damaged"):
        checkpoint.load_into(bare, str(tmp_path / "damaged.ckpt"), "alpha")
    with pytest.raises(checkpoint.CheckpointError, match="damaged or not a MindSpore checkpoint"):
        checkpoint.load_into(bare, str(tmp_path / "junk.ckpt"), "alpha")


def test_rotation_keeps_newest(tmp_path):
    for epoch in range(1, 13):
        (tmp_path / f"model-{epoch}_10.ckpt").write_bytes(b"x")
    (tmp_path / "best_avg_auc.ckpt").write_bytes(b"x")
    checkpoint.rotate(str(tmp_path), "model", keep=3)
    assert sorted(os.listdir(tmp_path)) == ["best_avg_auc.ckpt", "model-10_10.ckpt",
                                            "model-11_10.ckpt", "model-12_10.ckpt"]
    assert checkpoint.periodic_checkpoints(str(tmp_path), "model")[-1].endswith("model-12_10.ckpt")


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_loss_scaling_gives_the_unscaled_update(mode):
    """The float16 train step scales the loss, unscales the gradients and
    checks for overflow: in float32 its update equals the plain step's."""
    x = Tensor(np.random.default_rng(1).standard_normal((8, 6)).astype(np.float32))
    y = Tensor(np.ones((8, 2), np.float32))
    ms.set_seed(3)
    plain_net, plain = _step(clip_norm=1.0)
    ms.set_seed(3)
    net = TinyNet()
    nwl = NetWithLoss(net, MultiTaskBCELoss([1.0, 1.0]))
    opt = build_optimizer("sgd", net.trainable_params(), np.full(100, 0.1, np.float32))
    scaled = build_train_step(nwl, opt, loss_scale_mode=mode, loss_scale=1024.0, clip_norm=1.0)
    for a, b in zip(plain_net.get_parameters(), net.get_parameters()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    for _ in range(3):
        np.testing.assert_allclose(scaled(x, y).asnumpy(), plain(x, y).asnumpy(), rtol=1e-5)
    for a, b in zip(plain_net.get_parameters(), net.get_parameters()):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-6)


def test_unknown_loss_scale_mode():
    net, _ = _step()
    opt = build_optimizer("sgd", net.trainable_params(), np.full(10, 0.1, np.float32))
    with pytest.raises(ValueError, match="loss_scale_mode"):
        build_train_step(NetWithLoss(net, MultiTaskBCELoss([1.0, 1.0])), opt, loss_scale_mode="auto")


def test_overflow_skips_the_update_and_lowers_the_dynamic_scale():
    net = TinyNet()
    opt = build_optimizer("sgd", net.trainable_params(), np.full(10, 0.1, np.float32))
    step = build_train_step(NetWithLoss(net, MultiTaskBCELoss([1.0, 1.0])), opt,
                            loss_scale_mode="dynamic", loss_scale=1024.0)
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    x = np.ones((4, 6), np.float32)
    x[0, 0] = np.inf
    step(Tensor(x), Tensor(np.ones((4, 2), np.float32)))
    for p, b in zip(net.trainable_params(), before):
        np.testing.assert_array_equal(p.asnumpy(), b)
    assert step.scale_sense.asnumpy().item() == 512.0


@pytest.mark.parametrize("weight_decay, loss_scale", [(0.0, 1.0), (0.01, 8.0)])
def test_gradient_descent_matches_nn_sgd_without_its_buffers(weight_decay, loss_scale):
    """``sgd`` is one in-place ``p - lr * g`` per parameter: the same weights as
    ``nn.SGD`` at momentum 0 after steps with changing learning rates, weight
    decay and a static loss scale (the optimizer divides the gradients by it),
    and no parameter-sized optimizer state."""
    from src.engine.optim import GradientDescent
    rng = np.random.default_rng(4)
    batches = [(Tensor(rng.standard_normal((8, 6)).astype(np.float32)),
                Tensor((rng.random((8, 2)) > 0.5).astype(np.float32))) for _ in range(4)]
    rates = np.array([0.5, 0.1, 0.3, 0.05], np.float32)
    nets = []
    for make in (lambda p: nn.SGD(p, Tensor(rates), weight_decay=weight_decay, loss_scale=loss_scale),
                 lambda p: build_optimizer("sgd", p, rates, weight_decay=weight_decay,
                                           loss_scale=loss_scale)):
        ms.set_seed(5)
        net = TinyNet()
        opt = make(net.trainable_params())
        step = build_train_step(NetWithLoss(net, MultiTaskBCELoss([1.0, 1.0])), opt)
        losses = [float(step(x, y).asnumpy()) for x, y in batches]
        nets.append((net, opt, losses))
    (ref, _, ref_losses), (net, opt, losses) = nets
    assert isinstance(opt, GradientDescent)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    for a, b in zip(ref.trainable_params(), net.trainable_params()):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-5, atol=1e-7)
    state = [p.name for p in opt.get_parameters() if p.name not in
             {q.name for q in net.trainable_params()}]
    assert not [n for n in state if n.startswith(("accum", "stat"))], state


def test_a_checkpoint_of_nn_sgd_resumes_into_gradient_descent(tmp_path):
    """Checkpoints written before ``sgd`` dropped ``nn.SGD`` carry its
    ``accum``/``stat`` buffers: they load (the extras are ignored) and the
    next step is the one ``nn.SGD`` would have taken."""
    x = Tensor(np.random.default_rng(6).standard_normal((8, 6)).astype(np.float32))
    y = Tensor(np.ones((8, 2), np.float32))
    rates = np.full(10, 0.2, np.float32)
    old_net = TinyNet()
    old = build_train_step(NetWithLoss(old_net, MultiTaskBCELoss([1.0, 1.0])),
                           nn.SGD(old_net.trainable_params(), Tensor(rates)))
    old(x, y)
    path = str(tmp_path / "old-1_1.ckpt")
    checkpoint.save_checkpoint(old, path, "tiny", epoch=1, global_step=1)
    assert any(p.name.startswith("accum") for p in old.get_parameters())
    new_net, new = _step(lr=rates)
    checkpoint.load_into(new, path, "tiny")
    assert new.optimizer.global_step.asnumpy().item() == 1
    np.testing.assert_allclose(new(x, y).asnumpy(), old(x, y).asnumpy(), rtol=1e-6)
    for a, b in zip(old_net.trainable_params(), new_net.trainable_params()):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("from_rows", [1, 64])      # padded, and left as it is
def test_threaded_graph_computes_exactly_what_its_cell_computes(from_rows):
    """A Threaded graph (101 padding kernels, config key threaded_graphs)
    returns the cell's outputs, follows the cell's phase, and trains to the
    same losses and weights; batches of fewer than from_rows rows are not
    padded."""
    net = TinyNet(dropout=0.5)
    threaded_net = Threaded(net, from_rows)
    assert threaded_net.pads(16) == (from_rows == 1) and threaded_net.pads(64)
    assert not Threaded(net).pads(1) and Threaded(net).pads(64)      # the default: 64
    call = GraphCall(threaded_net)
    x = Tensor(np.random.default_rng(3).standard_normal((16, 6)).astype(np.float32))
    net.set_train(False)
    first = call(x).asnumpy()
    net.set_train(True)                      # dropout on: another graph
    assert not np.array_equal(call(x).asnumpy(), first)
    net.set_train(False)
    np.testing.assert_array_equal(call(x).asnumpy(), first)
    np.testing.assert_array_equal(net(x).asnumpy(), first)

    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((8, 6)).astype(np.float32),
                (rng.random((8, 2)) > 0.5).astype(np.float32)) for _ in range(4)]
    ms.set_seed(5)
    plain_net, plain = _step(clip_norm=1.0, optimizer="adam")
    ms.set_seed(5)
    padded_net, padded_step = _step(clip_norm=1.0, optimizer="adam")
    padded = GraphCall(Threaded(padded_step, from_rows))
    for a, b in batches:
        np.testing.assert_array_equal(plain(Tensor(a), Tensor(b)).asnumpy(),
                                      padded(ms.from_numpy(a), ms.from_numpy(b)).asnumpy())
    for p, q in zip(plain_net.trainable_params(), padded_net.trainable_params()):
        assert p.name == q.name
        np.testing.assert_array_equal(p.asnumpy(), q.asnumpy())


@pytest.mark.parametrize("choice, device, wrapped", [
    ("none", "CPU", ()), ("predict", "CPU", ("predict",)), ("train", "CPU", ("train",)),
    ("all", "CPU", ("predict", "train")), ("all", "GPU", ())])
def test_threaded_graphs_choice(choice, device, wrapped):
    cfg = {"threaded_graphs": choice, "device_target": device}
    net = TinyNet()
    for kind in ("predict", "train"):
        cell = threaded(net, cfg, kind)
        assert isinstance(cell, Threaded) == (kind in wrapped)
        assert cell is net or cell.cell is net


def test_parameter_copies_none_sets_mindspores_switch_before_any_compile():
    from src.engine.runtime import LOAD_ELIM, parameter_copies
    env = {}
    parameter_copies("default", env)
    assert env == {}
    parameter_copies("none", env)
    assert env == {LOAD_ELIM: "3"}
    env = {LOAD_ELIM: "1"}                 # what the user's environment says stands
    parameter_copies("none", env)
    assert env == {LOAD_ELIM: "1"}
    with pytest.raises(ValueError, match="default or none"):
        parameter_copies("off", {})
