"""The MLP's ``dropout`` option (Hinton et al. 2015's teacher): active in train mode, off in
eval mode, in both engines; with 0.0 the model is exactly the one without the option."""

import numpy as np
import pytest
import torch

from cnnlab.registry import get_model


def _hidden_zeros(model, x, train: bool) -> float:
    """Fraction of the last hidden layer's units that are exactly zero for input ``x``."""
    model.train(train)
    with torch.no_grad():
        return float((model.forward_features(x) == 0).float().mean())


def test_zero_dropout_keeps_keys_and_outputs():
    torch.manual_seed(0)
    plain = get_model("mlp", hidden=(32, 16), input_size=8)
    zero = get_model("mlp", hidden=(32, 16), input_size=8, dropout=0.0)
    assert list(plain.state_dict()) == list(zero.state_dict())
    zero.load_state_dict(plain.state_dict())
    x = torch.randn(5, 1, 8, 8)
    plain.train(), zero.train()
    assert torch.equal(plain(x), zero(x))


def test_dropout_is_active_in_train_mode_and_off_in_eval_mode():
    torch.manual_seed(0)
    m = get_model("mlp", hidden=(400, 400), input_size=8, dropout=0.5)
    ref = get_model("mlp", hidden=(400, 400), input_size=8)
    # same weights, keys shifted by the Dropout layers: Linear at classifier.0, .3, .6
    lin = [k for k in m.state_dict() if k.endswith("weight")]
    assert lin == ["classifier.0.weight", "classifier.3.weight", "classifier.6.weight"]
    ref.load_state_dict(dict(zip(ref.state_dict(), m.state_dict().values())))
    x = torch.rand(64, 1, 8, 8)
    base = _hidden_zeros(ref, x, train=True)  # ReLU's own zeros
    dropped = _hidden_zeros(m, x, train=True)
    # dropout zeroes half of the units ReLU left alive: (1 - base) * 0.5 more
    assert dropped == pytest.approx(base + (1 - base) * 0.5, abs=0.03)
    m.train()
    assert not torch.equal(m(x), m(x))  # a fresh mask each call
    m.eval(), ref.eval()
    torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)  # identity in eval mode
    # one hidden layer: kept units are its eval values scaled by 1 / (1 - p) (inverted dropout)
    one = get_model("mlp", hidden=(400,), input_size=8, dropout=0.5)
    with torch.no_grad():
        h_eval = one.eval().forward_features(x)
        h_train = one.train().forward_features(x)
    kept = h_train != 0
    torch.testing.assert_close(h_train[kept], 2 * h_eval[kept])
    assert float((h_train[h_eval > 0] == 0).float().mean()) == pytest.approx(0.5, abs=0.03)


def test_numpy_twin_has_the_same_dropout():
    torch.manual_seed(0)
    t = get_model("mlp", hidden=(300,), input_size=6, dropout=0.5)
    n = get_model("mlp", engine="numpy", hidden=(300,), input_size=6, dropout=0.5)
    assert list(n.state_dict()) == list(t.state_dict())
    n.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(0).random((32, 1, 6, 6), dtype=np.float32)
    t.eval(), n.eval()
    np.testing.assert_allclose(n(x), t(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    n.train()
    h = n.forward_features(x)
    n.eval()
    h_eval = n.forward_features(x)
    alive = h_eval > 0
    frac = float((h[alive] == 0).mean())  # live ReLU units that dropout zeroed
    assert frac == pytest.approx(0.5, abs=0.05)
    np.testing.assert_allclose(h[alive & (h != 0)], 2 * h_eval[alive & (h != 0)], rtol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_bad_dropout_is_refused(bad):
    with pytest.raises(ValueError, match="`dropout`"):
        get_model("mlp", dropout=bad)
