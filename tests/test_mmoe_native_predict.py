"""MMoE through the C++ kernels: in prediction the sparse-input product
(``input_product``) and the gated mixture (``predict_mixture``), in
training the gated mixture with its gradient kernel (``train_mixture``),
give the graph's outputs (and gradients)."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from src.layers import gated_mixture, sparse_input
from src.layers.initializers import make_initializer
from src.mmoe.mmoe import MMoE


def _mmoe_pair(field_layer, seed=5, product=True, mixture=False, train=False):
    """Two MMoEs with the same weights, the second predicting through the
    sparse-input product (``product``) and the gated mixture (``mixture``),
    and training through the gated mixture (``train``)."""
    from src.layers.fields import FieldEmbedding
    fields = [(0, 30), (30, 20), (50, 10), (60, 5), (65, 9), (74, 6)]
    nets = []
    kernels = [(None, None),
               (sparse_input.SparseInputProduct(2) if product else None,
                gated_mixture.GatedMixture(2, 3, 4, threads=2) if mixture else None)]
    train_cells = [None, gated_mixture.GatedMixture(2, 3, 4, threads=2) if train else None]
    for (product_cell, mixture_cell), train_cell in zip(kernels, train_cells):
        layer = (FieldEmbedding(fields, 2, 8, make_initializer("normal", 0.5))
                 if field_layer else None)
        nets.append(MMoE(input_dim=layer.output_dim if layer else 82, input_layer=layer,
                         num_tasks=2, num_experts=3, expert_units=4, tower_units=[4],
                         init="normal", init_scale=0.5, mixture="matmul", matmul_from=16,
                         input_product=product_cell, predict_mixture=mixture_cell,
                         train_mixture=train_cell))
    rng = np.random.default_rng(seed)
    for bias in (nets[0].expert_bias, nets[0].gate_bias):      # zeros at initialisation
        bias.set_data(Tensor(rng.standard_normal(bias.shape).astype(np.float32)))
    ms.load_param_into_net(nets[1], {p.name: p for p in nets[0].get_parameters()},
                           strict_load=True)
    x = np.zeros((600, 82), np.float32)
    for offset, size in fields:
        x[np.arange(600), offset + rng.integers(0, size, 600)] = 1.0
    x[:, 80:] = rng.standard_normal((600, 2))
    return nets, x


@pytest.mark.parametrize("product, mixture", [(True, False), (False, True), (True, True)],
                         ids=["product", "mixture", "both"])
@pytest.mark.parametrize("field_layer", [True, False], ids=["folded", "one-hot"])
def test_mmoe_predicts_the_same_through_the_kernels(field_layer, product, mixture):
    """Eval mode: the product folded through the field embedding from its fold
    batch (and below it the matrix products), or directly on the one-hot
    input; the mixture from the product's one tensor or from two; batches
    above and below the matmul mixture's ``matmul_from``."""
    (plain, sparse), x = _mmoe_pair(field_layer, product=product, mixture=mixture)
    for batch in (600, 7):
        outs = []
        for net in (plain, sparse):
            net.set_train(False)
            outs.append(net(Tensor(x[:batch])).asnumpy())
        # logits of order 1 from sums of order-1 terms, added in another
        # order: float32 rounding reaches a few 1e-6
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [600, 7], ids=["matmul-mixture", "batch-matmul-mixture"])
def test_mmoe_trains_through_the_mixture_kernel_as_through_the_graph(batch):
    """``train_mixture``: the kernel and its gradient kernel give the plain
    network's outputs and gradients (against the graph's mixture in both its
    forms: 2-D products from ``matmul_from`` rows, per-sample products below);
    ``predict_mixture`` alone leaves training to the graph."""
    from weighted import assert_same_function
    rng = np.random.default_rng(3)
    for train in (True, False):
        (plain, native), x = _mmoe_pair(True, seed=6, mixture=True, train=train)
        weights = Tensor(rng.standard_normal((batch, 2)).astype(np.float32))
        # a weight's gradient sums 600 rows' terms of order 1, in another order
        # (and with the kernel's exponential): rounding reaches a few 1e-6; so
        # does an output near 0 that sums terms of order 1-6 (once 4.9e-6 under
        # the whole suite's load, where the threads split the work otherwise)
        assert_same_function(plain, native, Tensor(x[:batch]), weights, params=9,
                              grad_atol=2e-5, out_atol=1e-5)


def test_the_config_keys_are_checked_and_export_uses_the_graph():
    from src.config import Config
    from src.datasets.census import input_product as _input_product
    from src.mmoe.spec import SPEC, _mixture
    with pytest.raises(ValueError, match="input_product must be one of matmul, sparse"):
        _input_product(Config({"input_product": "dense"}, config_path=None))
    assert _input_product(Config({"input_product": "matmul"}, config_path=None)) is None
    fmap = {"tasks": ["income", "marital"]}
    for key in ("predict_mixture", "train_mixture"):
        with pytest.raises(ValueError, match=f"{key} must be one of graph, native"):
            _mixture(Config({key: "fused"}, config_path=None), fmap, key)
        assert _mixture(Config({key: "graph"}, config_path=None), fmap, key) is None
        native = _mixture(Config({key: "native", "num_experts": 8, "expert_units": 4},
                                 config_path=None), fmap, key)
        assert native.together.asnumpy()[:5].tolist() == [2, 8, 4, 0, 32]
        assert SPEC.export_overrides[key] == "graph"
        with pytest.raises(ValueError, match=f"set {key}: graph or amp_level O0"):
            _mixture(Config({key: "native", "amp_level": "O2"}, config_path=None), fmap, key)
    assert SPEC.export_overrides["input_product"] == "matmul"
    with pytest.raises(ValueError, match="set input_product: matmul or amp_level O0"):
        _input_product(Config({"input_product": "sparse", "amp_level": "O1"}, config_path=None))


def test_mmoe_calls_the_kernel_only_to_predict_and_when_it_folds():
    (_, sparse), x = _mmoe_pair(True)
    calls = []

    class Recording(nn.Cell):
        def __init__(self, product):
            super().__init__()
            self.product = product

        def construct(self, a, b, bias):
            calls.append((a.shape, b.shape, bias.shape))
            return self.product(a, b, bias)
    sparse.input_product = Recording(sparse.input_product)
    ms.set_context(mode=ms.PYNATIVE_MODE)        # construct runs as Python: the calls are seen
    try:
        sparse.set_train(False)
        sparse(Tensor(x[:sparse.fold_batch]))
        assert calls == [((sparse.fold_batch, 82), (82, 3 * 4 + 2 * 3), (3 * 4 + 2 * 3,))]
        sparse(Tensor(x[:sparse.fold_batch - 1]))
        sparse.set_train(True)
        sparse(Tensor(x))
        assert len(calls) == 1
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


@pytest.mark.parametrize("train", [False, True], ids=["predict-only", "train-too"])
def test_mmoe_calls_each_mixture_in_its_mode(train):
    """In prediction from the product's one tensor (experts' columns, then
    the gates') at the fold batch, from two tensors below it; in training the
    training mixture, from two tensors, and never the prediction's."""
    (_, native), x = _mmoe_pair(True, mixture=True, train=train)
    calls = []

    class Recording(nn.Cell):
        def __init__(self, mixture, mode):
            super().__init__()
            self.mixture, self.mode = mixture, mode

        def construct(self, experts, gates=None):
            calls.append((self.mode, experts.shape, None if gates is None else gates.shape))
            return self.mixture(experts, gates)
    native.predict_mixture = Recording(native.predict_mixture, "predict")
    if train:
        native.train_mixture = Recording(native.train_mixture, "train")
    ms.set_context(mode=ms.PYNATIVE_MODE)        # construct runs as Python: the calls are seen
    try:
        native.set_train(False)
        native(Tensor(x[:native.fold_batch]))
        native(Tensor(x[:5]))
        assert calls == [("predict", (native.fold_batch, 3 * 4 + 2 * 3), None),
                         ("predict", (5, 12), (5, 6))]
        native.set_train(True)
        native(Tensor(x))
        assert calls[2:] == ([("train", (600, 12), (600, 6))] if train else [])
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
