"""Grad-CAM and activation capture (cnnlab.viz): equal to an independent computation on a
sequential, a branched and a residual model; the model's mode and hooks left as found; a
small CNN's Grad-CAM finds the pattern that decides the class."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import UserError
from cnnlab.registry import get_model
from cnnlab.viz.activations import capture_activations, stages
from cnnlab.viz.gradcam import grad_cam


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_cam(maps_fn, head_fn, x, target):
    """Selvaraju et al.'s Eq. 1-2 by hand: A = maps_fn(x) with gradients; weights = spatial
    mean of d y_c / d A; ReLU of the weighted sum; bilinear to the input; min-max per image."""
    a = maps_fn(x).detach().requires_grad_(True)
    y = head_fn(a)
    (g,) = torch.autograd.grad(y[torch.arange(len(x)), target].sum(), a)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = cam.amin((1, 2), keepdim=True)
    rng = cam.amax((1, 2), keepdim=True) - lo
    out = ((cam - lo) / rng).detach().numpy()
    return np.where(rng.detach().numpy() > 0, out, 0.0)  # an all-zero map stays zero


def _lenet():
    torch.manual_seed(0)
    m = get_model("lenet5").eval()
    return m, torch.randn(3, 1, 32, 32), (lambda x: m.features[:4](x)), \
        (lambda a: m.forward_head(m.features[4:](a)))


def _resnet20():
    torch.manual_seed(0)
    m = get_model("resnet20", num_classes=5).eval()
    for mod in m.modules():  # non-trivial running statistics, so eval mode matters
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m, torch.randn(3, 3, 32, 32), (lambda x: m.forward_features(x)), m.forward_head


def _googlenet():
    torch.manual_seed(0)
    m = get_model("googlenet", num_classes=4, small_input=True, aux_logits=False).eval()
    return m, torch.randn(2, 3, 16, 16), m.forward_features, m.forward_head


@pytest.mark.parametrize("build", [_lenet, _resnet20, _googlenet],
                         ids=["sequential", "residual", "branched"])
def test_grad_cam_equals_independent_computation(build):
    m, x, maps_fn, head_fn = build()
    m.train()  # grad_cam must switch to eval itself and switch back
    cam, cls, layer = grad_cam(m, x, target=[0, 1, 2][:len(x)])
    assert (cam.max((1, 2)) == 1).sum() >= 1  # not all maps trivially zero
    assert m.training and all(mod.training for mod in m.modules())
    assert layer == m.feature_layers["last_conv"]
    m.eval()
    ref = reference_cam(maps_fn, head_fn, x, torch.tensor(cls))
    assert cam.shape == (len(x), *x.shape[-2:]) and cam.min() >= 0 and cam.max() <= 1
    np.testing.assert_allclose(cam, ref, atol=1e-5)


def test_grad_cam_predicted_class_and_layer_before_inplace_relu():
    """bn1 of ResNet-20 is followed by an in-place ReLU: the maps must be bn1's own output
    (with negative values), not the rectified ones."""
    m, x, _, _ = _resnet20()
    with torch.no_grad():
        pred = m(x).argmax(1).numpy()
    cam, cls, layer = grad_cam(m, x, layer="bn1")
    np.testing.assert_array_equal(cls, pred)

    def maps(x):
        return m.bn1(m.conv1(x))

    def head(a):
        return m.forward_head(m.layer3(m.layer2(m.layer1(F.relu(a)))))

    np.testing.assert_allclose(cam, reference_cam(maps, head, x, torch.tensor(cls)), atol=1e-5)



class _Quadratic(nn.Module):
    """maps: a 1x1 conv to 3 channels at full resolution (so the upsampling is the identity);
    head: y_c = sum_k v_ck sum_ij A_kij^2, so dy_c/dA_kij = 2 v_ck A_kij varies with position
    and sign, and Grad-CAM++'s alpha differs from pixel to pixel."""

    V = [[1.0, -0.5, 0.8], [-0.3, 1.2, 0.4]]

    def __init__(self):
        super().__init__()
        self.maps = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.maps.weight.copy_(torch.tensor([1.0, -0.7, 0.5]).view(3, 1, 1, 1))
            self.maps.bias.copy_(torch.tensor([0.3, 0.2, -0.4]))

    def forward(self, x):
        a = self.maps(x)
        return (a.pow(2).sum((2, 3)) @ torch.tensor(self.V).T)  # N x 2


def _grad_cam_pp_by_hand(a: np.ndarray, v: np.ndarray, target: int) -> np.ndarray:
    """Chattopadhay et al. 2018, Eq. 19 (exponential score) by hand, for one image's maps
    a (K, H, W): g = 2 v_k a; alpha = g^2 / (2 g^2 + sum_ab A_kab g^3) (0 where g = 0);
    w_k = sum_ij alpha ReLU(g); cam = ReLU(sum_k w_k A_k), min-max scaled."""
    cam = np.zeros(a.shape[1:])
    for k in range(a.shape[0]):
        g = 2 * v[target, k] * a[k]
        denom = 2 * g ** 2 + a[k].sum() * g ** 3
        alpha = np.divide(g ** 2, denom, out=np.zeros_like(g), where=(g != 0) & (denom != 0))
        cam += (alpha * np.maximum(g, 0)).sum() * a[k]
    cam = np.maximum(cam, 0)
    return (cam - cam.min()) / (cam.max() - cam.min())


def test_grad_cam_plus_plus_equals_hand_computation():
    torch.manual_seed(1)
    m, x = _Quadratic().eval(), torch.randn(2, 1, 6, 6)
    cam, cls, layer = grad_cam(m, x, target=[0, 1], layer="maps", plus_plus=True)
    assert layer == "maps" and list(cls) == [0, 1]
    with torch.no_grad():
        a = m.maps(x).double().numpy()
    v = np.array(_Quadratic.V)
    for i, t in enumerate([0, 1]):
        ref = _grad_cam_pp_by_hand(a[i], v, t)
        np.testing.assert_allclose(cam[i], ref, atol=1e-5)
    plain, _, _ = grad_cam(m, x, target=[0, 1], layer="maps")
    assert np.abs(plain - cam).max() > 0.05  # the two weightings do differ on this model

def test_capture_activations_clones_restores_and_releases():
    m, x, _, _ = _resnet20()
    m.train()
    for _ in range(5):  # repeated calls: no hook left behind, mode restored each time
        acts = capture_activations(m, x, layers=["bn1", "layer1", "layer3"])
        grad_cam(m, x)
    assert m.training
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())
    m.eval()
    with torch.no_grad():
        pre = m.bn1(m.conv1(x))
        np.testing.assert_allclose(acts["bn1"], pre, atol=1e-6)  # not overwritten by ReLU
        assert (acts["bn1"] < 0).any()
        np.testing.assert_allclose(acts["layer3"], m.forward_features(x), atol=1e-5)
    assert list(acts) == ["bn1", "layer1", "layer3"]


def test_stages_cover_the_zoo():
    assert [n for n, _ in stages(get_model("resnet18"))][:3] == ["conv1", "relu", "maxpool"]
    g = [n for n, _ in stages(get_model("googlenet", small_input=True))]
    assert "inception3a" in g and "inception5b" in g and "aux1" not in g
    lenet = capture_activations(get_model("lenet5"), torch.randn(1, 1, 32, 32))
    assert [tuple(t.shape[1:]) for t in lenet.values()] == [
        (6, 28, 28), (6, 14, 14), (6, 14, 14), (16, 10, 10), (16, 5, 5), (16, 5, 5)]
    mlp = capture_activations(get_model("mlp", hidden=(16,)), torch.randn(2, 1, 28, 28))
    assert [tuple(t.shape) for t in mlp.values()] == [(2, 16), (2, 10)]


def test_bad_input_is_one_user_error():
    m, x, _, _ = _lenet()
    with pytest.raises(UserError, match=r"--layer nope: .*valid names: features\.0"):
        grad_cam(m, x, layer="nope")
    with pytest.raises(UserError, match=r"--class 10: expected a class index 0\.\.9"):
        grad_cam(m, x, target=10)
    with pytest.raises(UserError, match="MLP has none"):
        grad_cam(get_model("mlp", hidden=(8,)), torch.randn(1, 1, 28, 28))
    with pytest.raises(UserError, match="valid names"):
        capture_activations(m, x, layers=["features.9"])
    assert all(not mod._forward_hooks for mod in m.modules())


# ----------------------------------------------------------------------------------------
def _pattern_data(n, rng, size=20, k=5):
    """1 x size x size noise; class 0: a k x k plus-sign at a random place, class 1: a hollow
    k x k square. Returns images, labels, and the pattern's top-left corners."""
    plus = np.zeros((k, k), np.float32)
    plus[k // 2], plus[:, k // 2] = 1, 1
    ring = np.ones((k, k), np.float32)
    ring[1:-1, 1:-1] = 0
    x = rng.normal(0, 0.35, (n, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 2, n)
    corners = rng.integers(0, size - k + 1, (n, 2))
    for i in range(n):
        r, c = corners[i]
        x[i, 0, r:r + k, c:c + k] += 2.0 * (plus if y[i] == 0 else ring)
    return torch.from_numpy(x), torch.from_numpy(y), corners


def test_grad_cam_localises_the_pattern_that_decides_the_class():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xtr, ytr, _ = _pattern_data(512, rng)
    xte, yte, corners = _pattern_data(200, rng)
    net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(inplace=True),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for step in range(120):  # about half a second on one core
        idx = torch.randint(0, len(xtr), (32,))
        loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    assert acc > 0.95
    cam, cls, layer = grad_cam(net, xte, target=yte.numpy())  # layer found by walking
    assert layer == "3"  # the last module with a spatial output: the ReLU after the last conv
    peaks = np.array([np.unravel_index(c.argmax(), c.shape) for c in cam])
    inside = ((peaks >= corners) & (peaks < corners + 5)).all(1)
    assert inside.mean() >= 0.9, inside.mean()
