"""The Shared-Bottom network against a NumPy reference: shapes, values, the
bottom shared by every task, its checks."""
import numpy as np
import pytest
from mindspore import Tensor

from src.shared_bottom.network import SharedBottom
from test_towers import assert_tower_output_init


def _numpy_forward(net, x):
    params = {name: p.asnumpy() for name, p in net.parameters_and_names()}
    h = x
    bottom = sorted((k for k in params if k.startswith("bottom.") and k.endswith(".weight")),
                    key=lambda k: int(k.split(".")[2]))
    for weight in bottom:
        h = np.maximum(h @ params[weight] + params[weight[:-len("weight")] + "bias"], 0.0)
    layers = sum(1 for k in params if k.startswith("towers.weight"))
    out = []
    for t in range(net.num_tasks):
        z = h
        for i in range(layers):
            z = z @ params[f"towers.weight{i}"][t] + params[f"towers.bias{i}"][t]
            if i < layers - 1:
                z = np.maximum(z, 0.0)
        out.append(z[:, 0])
    return np.stack(out, axis=1)


@pytest.mark.parametrize("bottom, towers", [([5], [3]), ([6, 4], [3, 2]), ([4], [])])
def test_outputs_match_numpy(bottom, towers):
    net = SharedBottom(input_dim=7, num_tasks=3, bottom_units=bottom, tower_units=towers,
                       init="normal", init_scale=0.5)
    x = np.random.default_rng(0).standard_normal((9, 7)).astype(np.float32)
    got = net(Tensor(x)).asnumpy()
    assert got.shape == (9, 3)
    np.testing.assert_allclose(got, _numpy_forward(net, x), rtol=1e-5, atol=1e-6)


def test_the_bottom_is_shared_and_the_towers_are_not():
    net = SharedBottom(input_dim=5, num_tasks=2, bottom_units=[4], tower_units=[3])
    names = [name for name, _ in net.parameters_and_names()]
    assert sum(name.startswith("bottom.") for name in names) == 2        # one layer: W, b
    assert net.towers.weights[0].shape == (2, 4, 3)                       # per task


def test_constructor_checks():
    with pytest.raises(ValueError, match="bottom_units non-empty"):
        SharedBottom(input_dim=5, bottom_units=[])
    with pytest.raises(ValueError, match="input_dim and num_tasks must be positive"):
        SharedBottom(input_dim=0)


def test_folded_field_embedding_gives_the_reference_and_the_same_gradients():
    """From ``fold_batch`` rows on, the bottom's first product runs through
    the embedding matrix times its weight: the NumPy reference's outputs on
    the embedded input, and the unfolded network's gradients."""
    from folding import WIDTH, field_layer, one_hot_rows, unfolded_twin
    from weighted import assert_same_function
    from src.layers.fields import fold_from

    def make():
        layer = field_layer()
        return SharedBottom(input_dim=layer.output_dim, input_layer=layer, num_tasks=2,
                            bottom_units=[6, 4], tower_units=[3], init="normal", init_scale=0.5)
    folded = make()
    plain = unfolded_twin(folded, make)
    assert folded.fold_batch == fold_from(WIDTH, folded.input_layer.output_dim, 6) < 2 ** 31 - 1
    rng = np.random.default_rng(3)
    x = one_hot_rows(folded.fold_batch + 5, rng)
    embedded = x @ folded.input_layer.matrix().asnumpy()
    np.testing.assert_allclose(folded(Tensor(x)).asnumpy(), _numpy_forward(folded, embedded),
                               rtol=1e-4, atol=1e-5)
    assert_same_function(plain, folded, x, rng.standard_normal((len(x), 2)).astype(np.float32))


def test_tower_output_init_reaches_the_towers():
    assert_tower_output_init(lambda how: SharedBottom(input_dim=6, bottom_units=[5],
                                                      tower_units=[4], init="xavier_uniform",
                                                      tower_output_init=how), 6)


def test_prediction_through_the_sparse_input_product():
    from folding import assert_input_product_predicts_the_same

    def make(layer, product):
        return SharedBottom(input_dim=layer.output_dim if layer else 82, input_layer=layer,
                            num_tasks=2, bottom_units=[6, 4], tower_units=[3], init="normal",
                            init_scale=0.5, input_product=product)
    assert_input_product_predicts_the_same(make, np.random.default_rng(11))
