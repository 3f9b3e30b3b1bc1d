"""pixel-distance: L2 distance between raw pixels says little about content (cs231n's
"shifted, messed up, darkened" copies of one image at the same L2 distance).

For test images: a shifted, a darkened and a partly masked copy, each at exactly the same L2
distance from the original; how a pixel 1-NN and a CNN classify them. Then each test image's
10 nearest training images by pixels and by the CNN's penultimate features (LeNet-5's F6,
84 numbers): the fraction that share the query's class.
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment

K = 10


def copies(x, shift_px: int = 3):
    """Shifted, darkened and masked float copies of ``x (N, C, H, W)`` (0..255), all at the
    shifted copy's L2 distance d from the original: darkened = x * (1 - d/||x||); masked =
    x minus a fraction of its smallest centred square block whose norm reaches d."""
    import torch

    x = x.float()
    shifted = C.shift(x, 0, shift_px)
    d = (shifted - x).flatten(1).norm(dim=1)  # (N,)
    norm = x.flatten(1).norm(dim=1)
    dark = x * (1 - (d / norm).clamp(max=1))[:, None, None, None]
    h, w = x.shape[-2:]
    masked = x.clone()
    for i in range(len(x)):
        for s in range(2, min(h, w) + 1, 2):
            m = torch.zeros(h, w)
            m[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2] = 1
            part = x[i] * m
            pn = part.norm()
            if pn >= d[i]:
                masked[i] = x[i] - part * (d[i] / pn)
                break
    return {"shifted": shifted, "darkened": dark, "masked": masked}, d


def lenet_features(model, x, prep):
    """LeNet-5's F6 activations (N, 84): the input to its last layer."""
    import torch

    model.eval()
    with torch.no_grad():
        z = model.flatten(model.features(prep(x.float() / 255)))
        return model.classifier[:-1](z)


def run(ctx):
    import numpy as np
    import torch

    from cnnlab import get_model
    from cnnlab.baselines.knn import KNN

    spec = ctx.data or C.dataset("digits" if ctx.quick else "mnist")
    xtr, ytr, xte, yte, classes = C.tensors(spec, None if ctx.quick else 20_000,
                                            200 if ctx.quick else 1000)
    prep = C.standardizer(xtr)
    torch.manual_seed(ctx.seed)
    cnn = get_model("lenet5", in_channels=xtr.shape[1], input_size=xtr.shape[2],
                    num_classes=len(classes))
    ctx.log("pixel-distance: training LeNet-5")
    h = C.fit(cnn, xtr, ytr, xte, yte, epochs=3, lr=0.05, seed=ctx.seed,
              prep=prep, augment="crop:2", log=ctx.log)
    cps, d = copies(xte)
    # darkening or masking can only reach distances up to the image's own norm: keep the
    # test images whose shifted copy is no farther than that, so all three copies match
    keep = d <= xte.float().flatten(1).norm(dim=1)
    n_all = len(xte)
    xte, yte, d = xte[keep], yte[keep], d[keep]
    cps = {k: v[keep] for k, v in cps.items()}
    knn1 = KNN(1).fit(xtr, ytr)
    rows = [["original", "0", f"{100 * (knn1.predict(xte) == yte.numpy()).mean():.1f}",
             f"{100 * C.accuracy(cnn, xte, yte, prep):.1f}"]]
    res = {"distance_mean": float(d.mean())}
    for name, xc in cps.items():
        dist = (xc - xte.float()).flatten(1).norm(dim=1)
        xb = xc.round().clamp(0, 255).byte()
        knn_acc = (knn1.predict(xb) == yte.numpy()).mean()
        cnn_acc = C.accuracy(cnn, xb, yte, prep)
        rows.append([name, f"{dist.mean():.0f} (largest difference {(dist - d).abs().max():.2g})",
                     f"{100 * knn_acc:.1f}", f"{100 * cnn_acc:.1f}"])
        res[name] = {"knn_acc": float(knn_acc), "cnn_acc": cnn_acc}
    # neighbours by pixels and by CNN features
    pix = torch.from_numpy(KNN(K).fit(xtr, ytr).kneighbors(xte))
    ftr, fte = lenet_features(cnn, xtr, prep), lenet_features(cnn, xte, prep)
    feat = _feat_nn(ftr, fte)
    share_pix = (ytr[pix] == yte[:, None]).float().mean().item()
    share_feat = (ytr[feat] == yte[:, None]).float().mean().item()
    res.update(share_pixels=share_pix, share_features=share_feat)
    rep = new_report(ctx, [f"data: {spec}, {len(xtr)} training / {len(xte)} test images",
                           f"LeNet-5 trained {len(h['test_acc'])} epochs (2-pixel shifts as "
                           "augmentation); pixel k-NN exact L2 on raw 0..255 pixels",
                           "copies: shifted 3 pixels right (vacated pixels black); darkened "
                           "(scaled); masked (a centred block partly blacked out), each scaled to "
                           "the shifted copy's L2 distance",
                           f"{len(xte)} of {n_all} test images used: those whose shifted copy is "
                           "no farther than the image's own norm (darkening or masking cannot "
                           "go farther)"])
    rep.table(["test images", "L2 distance to original (mean)", "pixel 1-NN acc %",
               "CNN acc %"], rows, caption="copies at the same pixel distance")
    rep.table(["neighbours by", f"share of the {K} nearest training images in the query's class %"],
              [["raw pixels (L2)", f"{100 * share_pix:.1f}"],
               ["CNN features (LeNet-5 F6, L2)", f"{100 * share_feat:.1f}"]])
    _plot(rep, xte, cps, d, xtr, pix, feat)
    rep.results = res
    _verdict(rep, res, list(cps))
    return rep


def _verdict(rep, res, names):
    share_pix, share_feat = res["share_pixels"], res["share_features"]
    worst = min(res[n]["knn_acc"] for n in names)
    spread = max(res[n]["knn_acc"] for n in names) - worst
    ok = share_feat > share_pix and spread > 0.05
    per_copy = ", ".join(f"{n} {100 * res[n]['knn_acc']:.0f}%" for n in names)
    rep.verdict("supported" if ok else "mixed" if share_feat > share_pix or spread > 0.05
                else "not supported",
                f"copies at one L2 distance fare very differently under pixel 1-NN "
                f"({per_copy}); "
                f"{100 * share_feat:.1f}% of feature neighbours share the query's class "
                f"against {100 * share_pix:.1f}% of pixel neighbours")


def _feat_nn(ftr, fte):
    """Indices of the K nearest training feature vectors (float features: GEMM + topk)."""
    d = (ftr * ftr).sum(1)[None] - 2 * fte @ ftr.T
    return d.topk(K, dim=1, largest=False).indices


def _plot(rep, xte, cps, d, xtr, pix, feat):
    plt = C.plt()
    fig, axes = plt.subplots(3, 1 + K // 2, figsize=(1.6 * (1 + K // 2), 5.2))
    for ax in axes.flat:
        ax.axis("off")
    imgs = [("original", xte[0].float()), *((n, v[0]) for n, v in cps.items())]
    for j, (n, im) in enumerate(imgs):
        axes[0, j].imshow(_show(im), cmap="gray", vmin=0, vmax=255)
        axes[0, j].set_title(n if j == 0 else f"{n}\nL2 {d[0]:.0f}", fontsize=8)
    for row, (label, nb) in enumerate((("pixels", pix), ("features", feat)), start=1):
        axes[row, 0].imshow(_show(xte[0].float()), cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"query: NN by\n{label}", fontsize=8)
        for j in range(K // 2):
            axes[row, j + 1].imshow(_show(xtr[nb[0, j]].float()), cmap="gray", vmin=0, vmax=255)
    rep.plot(fig, "pixel_distance.png")


def _show(im):
    a = im.numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0).astype("uint8")


register_experiment(
    "pixel-distance", run, claim="L2 distance on raw pixels says little about content: shifted, "
    "darkened and masked copies sit at the same distance; pixel neighbours often belong to "
    "another class, CNN-feature neighbours rarely.", expected_minutes_full=6,
    expected_seconds_quick=20, data="digits (quick), MNIST (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
