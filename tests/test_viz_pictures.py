"""cnnlab.viz pictures: the kernel tool against the lectures' worked examples and scipy, class
templates against class means, embedding/retrieval numbers against scikit-learn, receptive
field crops against a hand computation, and `cnnlab viz` end to end (PNG, --json, exit 2)."""

import json

import numpy as np
import pytest
import torch

from cnnlab.errors import UserError
from cnnlab.registry import get_model
from cnnlab.scratch.explain import CENTER_FILTER, LECTURE_FILTER, LECTURE_IMAGE, parse_matrix
from cnnlab.viz.kernel import LUMA, apply_kernel


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- kernel -------------------------------------------------------------------------------
def test_kernel_reproduces_the_lecture_worked_examples():
    img = parse_matrix(LECTURE_IMAGE)  # LECTURES.md: the 5x5 binary image
    r = apply_kernel(img, LECTURE_FILTER)
    np.testing.assert_array_equal(r.output, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    np.testing.assert_array_equal(apply_kernel(img, CENTER_FILTER).output,
                                  [[1, 1, 1], [0, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(apply_kernel(img, CENTER_FILTER, stride=2).output,
                                  [[1, 1], [0, 1]])
    # output sizes: 5x5 input, 3x3 filter: s1 p0 -> 3, s2 p1 -> 3, s1 p1 -> 5; 7x7 s2 -> 3
    for n, s, p, want in ((5, 1, 0, 3), (5, 2, 1, 3), (5, 1, 1, 5), (7, 2, 0, 3), (7, 1, 0, 5)):
        r = apply_kernel(np.ones((n, n)), "identity", stride=s, padding=p)
        assert r.output.shape == (want, want)
        assert f"({n} - 3 + 2*{p})/{s} + 1 = {want}" in r.formula


def test_red_preset_is_the_red_channel_and_sobel_matches_scipy():
    from scipy.signal import correlate2d
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    np.testing.assert_array_equal(apply_kernel("china", "red").output, photo[..., 0])
    small = load_sample_image("flower.jpg")[100:160, 200:280]
    r = apply_kernel(small, "sobel-x", padding=1)
    ref = correlate2d(small.astype(np.float64) @ LUMA,
                      np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), mode="same")
    np.testing.assert_allclose(r.output, ref, atol=1e-9)


def test_kernel_bad_input(tmp_path):
    with pytest.raises(UserError, match="--kernel: .*'x' is not a number"):
        apply_kernel("china", "1 0; 0 x")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png: not a readable image"):
        apply_kernel(str(bad), "edge")
    with pytest.raises(UserError, match="larger than the padded"):
        apply_kernel(np.ones((2, 2)), "edge")


# ---- templates, embedding, retrieval, receptive fields ------------------------------------
def test_linear_templates_correlate_with_their_class_means():
    from cnnlab.data import load_data
    from cnnlab.viz.filters import class_means, class_templates, template_correlations

    d = load_data("digits").train
    x = torch.from_numpy(d.images).float() / 255
    y = torch.from_numpy(d.labels)
    torch.manual_seed(0)
    model = get_model("linear", input_size=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=1e-3)
    for _ in range(100):  # full-batch softmax regression
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = class_templates(model, x)
    np.testing.assert_array_equal(t[3].ravel(), model.fc.weight[3].detach().numpy())
    means, mu = class_means(d.images, d.labels, 10)
    np.testing.assert_allclose(mu, d.images.mean(0), rtol=1e-12)
    c = template_correlations(t, means, mu)
    for k in range(10):  # against numpy's Pearson correlation
        mean_k = d.images[d.labels == k].reshape(-1, 1024).mean(0)
        assert c["raw"][k] == pytest.approx(np.corrcoef(t[k].ravel(), mean_k)[0, 1], abs=1e-9)
    assert min(c["centred"]) > 0.3 and c["own_class_best"] == 1.0


def test_knn_accuracy_and_nearest_against_sklearn():
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    from cnnlab.viz.embed import knn_accuracy, nearest, precision_at_k

    rng = np.random.default_rng(0)
    p = rng.normal(size=(120, 2))
    y = (p[:, 0] > 0).astype(int) + 2 * (rng.random(120) < 0.1)
    ref = cross_val_score(KNeighborsClassifier(1), p, y, cv=LeaveOneOut()).mean()
    assert knn_accuracy(p, y, k=1) == pytest.approx(ref)
    q, g = rng.normal(size=(30, 8)), rng.normal(size=(200, 8))
    idx = nearest(q, g, 5, chunk=7)
    np.testing.assert_array_equal(idx, NearestNeighbors(n_neighbors=5).fit(g).kneighbors(
        q, return_distance=False))
    gl = rng.integers(0, 3, 200)
    assert precision_at_k(gl[:30], gl, idx) == pytest.approx((gl[idx] == gl[:30, None]).mean())


def test_receptive_field_geometry_and_crop_by_hand():
    from cnnlab.viz.patches import crop, field_geometry

    torch.manual_seed(0)
    m = get_model("lenet5", input_size=28).eval()
    # C1 5x5 pad 2 -> unit i centred at i; S2 2x2/2 -> 2j + 0.5; C3 5x5 -> 2k + 4.5
    g = field_geometry(m, "features.3", (1, 28, 28))
    assert g["rf"] == (14, 14) and g["jump"] == (2, 2) and g["offset"] == (4.5, 4.5)
    assert field_geometry(m, "features.0", (1, 28, 28))["offset"] == (0.0, 0.0)
    img = np.arange(28 * 28, dtype=np.uint8).reshape(1, 28, 28)
    patch = crop(img, 1, 2, g)  # centre (6.5, 8.5): rows 0..13, cols 2..15
    np.testing.assert_array_equal(patch, img[:, 0:14, 2:16])
    edge = crop(img, 0, 0, g)  # rows -2..11: two rows of zeros above the image
    assert (edge[:, :2] == 0).all() and (edge[:, 2:, 2:] == img[:, :12, :12]).all()


# ---- the command end to end ---------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A LeNet-5 and an MLP on the built-in digits, random weights, saved as checkpoints."""
    from cnnlab.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    spec = {"channels": 1, "size": [32, 32], "mean": [0.3], "std": [0.4]}
    out = {}
    for name, kw in (("lenet5", {}), ("mlp", {"input_size": 32, "hidden": [32]})):
        torch.manual_seed(0)
        m = get_model(name, **kw)
        out[name] = save_checkpoint(root / name / "last", m.state_dict(), {
            "model": name, "model_kwargs": kw, "classes": [str(i) for i in range(10)],
            "input": spec, "config": {"data": "digits", "seed": 0}})
    return out


def _cli(capsys, *argv):
    from cnnlab.cli import main

    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_writes_pngs_and_json(checkpoints, tmp_path, capsys):
    lenet = str(checkpoints["lenet5"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,test_loss,test_acc\n"
                                     "1,2.0,0.3,1.5,0.5\n2,1.0,0.7,0.9,0.75\n")
    runs = [("kernel", ["flower", "--kernel", "sobel-y", "--stride", "2"]),
            ("gradcam", [lenet, "--n", "2", "--methods", "gradcam,saliency,occlusion"]),
            ("activations", [lenet, "--index", "3", "--channels", "4"]),
            ("filters", [lenet, "--layer", "features.3"]),
            ("top-patches", [lenet, "--images", "100", "--n", "3", "--channels", "0,5"]),
            ("embed", [lenet, "--n", "60", "--method", "pca"]),
            ("retrieve", [lenet, "--k", "3", "--gallery", "200", "--queries", "2"]),
            ("mistakes", [lenet, "--n", "4"]),
            ("confusion", [lenet]),
            ("templates", [str(checkpoints["mlp"])]),
            ("curves", [str(run)])]
    for kind, args in runs:
        png = tmp_path / f"{kind}.png"
        rc, out, err = _cli(capsys, "viz", kind, *args, "--out", str(png), "--json")
        assert rc == 0, (kind, err)
        r = json.loads(out)
        assert r["out"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if kind == "kernel":
            assert r["output_shape"] == [213, 319]  # (427 - 3)/2 + 1, (640 - 3)/2 + 1
        if kind == "gradcam":
            assert r["layer"] == "features.3" and len(r["target_classes"]) == 2
        if kind == "embed":
            assert 0 <= r["features"]["knn_accuracy"] <= 1 and r["pixels"]["dims"] == 1024
        if kind == "confusion":
            assert np.sum(r["confusion"]) == 360
        if kind == "curves":
            assert r["runs"]["run"]["test_acc"] == [0.5, 0.75]
        if kind == "templates":
            assert len(r["correlation_with_class_mean"]) == 10 and "MLP" in r["kind"]
        if kind == "top-patches":
            assert r["receptive_field"] == [14, 14] and len(r["channels"]) == 2


@pytest.mark.parametrize("args, message", [
    (["gradcam", "LENET", "--layer", "nope"], "--layer nope: no such layer"),
    (["gradcam", "LENET", "--class", "10"], r"--class 10: expected a class index 0\.\.9"),
    (["gradcam", "MLP"], "MLP has none"),
    (["kernel", "--kernel", "1 0 1; 0 1"], "rows have different lengths"),
    (["gradcam", "LENET", "BROKEN"], "not a readable image"),
    (["embed", "LENET", "--n", "100000"], r"--n 100000: expected 1\.\.360"),
    (["activations", "LENET", "--layers", "features.0,fc9"], "valid names"),
])
def test_cli_bad_input_is_one_line_exit_2(checkpoints, tmp_path, capsys, args, message):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    sub = {"LENET": str(checkpoints["lenet5"]), "MLP": str(checkpoints["mlp"]),
           "BROKEN": str(broken)}
    rc, out, err = _cli(capsys, "viz", *[sub.get(a, a) for a in args],
                        "--out", str(tmp_path / "x.png"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("cnnlab viz: error: ")
    assert __import__("re").search(message, err), err


def test_deletion_curve_by_hand():
    """logits = (sum(w * x), 0): after deleting the k pixels ranked first, p(class 0) =
    sigmoid(sum of w * x over the rest); deleting in the order of w drops it fastest."""
    from cnnlab.viz.attribution import deletion_curve

    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.random((1, 1, 4, 4)).astype(np.float32))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[0] = w.flatten()
    x = torch.ones(1, 1, 4, 4)
    curve = deletion_curve(model, x, w[:, 0].numpy(), [0], steps=4)
    order = np.argsort(-w.flatten().numpy())
    for s in range(5):
        rest = w.flatten().numpy()[order[4 * s:]].sum()
        assert curve[0, s] == pytest.approx(1 / (1 + np.exp(-rest)), abs=1e-6)
    worst = deletion_curve(model, x, -w[:, 0].numpy(), [0], steps=4)
    assert curve.mean() < worst.mean()


def test_tsne_keeps_separated_clusters_apart():
    from cnnlab.viz.embed import embed_2d, knn_accuracy

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    z = rng.normal(size=(120, 60)) + 8 * np.eye(60)[y * 7]  # three far-apart clusters
    p = embed_2d(z, "tsne")
    assert p.shape == (120, 2) and knn_accuracy(p, y, k=5) == 1.0
    with pytest.raises(UserError, match="--method nope"):
        embed_2d(z, "nope")
