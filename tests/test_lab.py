"""cnnlab.lab: the registry, the report writer, bad input, and every experiment's quick
version end to end (asserting an effect's direction only where it is robust)."""

import json

import pytest

from cnnlab import lab
from cnnlab.cli import main
from cnnlab.errors import UserError

MINE = ["augmentation", "baselines", "degradation", "gap-vs-fc", "mean-subtraction",
        "pixel-distance", "pooling", "small-filters", "translation"]


def test_registry_lists_the_experiments():
    names = [e.name for e in lab.list_experiments()]
    assert set(MINE) <= set(names)
    assert names == sorted(names)
    for e in (lab.get_experiment(n) for n in MINE):
        assert e.claim and e.expected_minutes_full > 0 and 0 < e.expected_seconds_quick <= 90


def test_unknown_experiment_and_data_that_does_not_fit(capsys):
    with pytest.raises(UserError, match="did you mean pooling"):
        lab.get_experiment("poolng")
    assert main(["lab", "transaltion"]) == 2
    assert "unknown experiment 'transaltion'; did you mean translation" in capsys.readouterr().err
    assert main(["lab", "translation", "--data", "../shared/datasets/cifar10.tar.gz"]) == 2
    err = capsys.readouterr().err
    assert "needs one of digits, mnist, fashion-mnist (got cifar10)" in err
    assert err.count("\n") == 1


def test_register_and_report_writer(tmp_path):
    def run(ctx):
        rep = lab.new_report(ctx, ["two numbers"])
        rep.table(["a", "b"], [[1, 0.5], ["x", 12345.0]], caption="cap")
        plt = pytest.importorskip("matplotlib.pyplot")
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        rep.plot(fig, "p.png")
        rep.results["x"] = [1, 2]
        rep.verdict("mixed", "because")
        return rep

    lab.register_experiment("_test-exp", run, claim="c", expected_minutes_full=1,
                            expected_seconds_quick=1)
    with pytest.raises(ValueError, match="already registered"):
        lab.register_experiment("_test-exp", lambda ctx: None, claim="c",
                                expected_minutes_full=1, expected_seconds_quick=1)
    try:
        res = lab.run_experiment("_test-exp", quick=True, out=tmp_path / "r", seed=3)
    finally:
        lab._REGISTRY.pop("_test-exp")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "**Claim.** c" in md and "| 1 | 0.5 |" in md and "| x | 12,345 |" in md
    assert "**Verdict: mixed.** because" in md and "![p.png](p.png)" in md
    j = json.loads((tmp_path / "r" / "results.json").read_text())
    assert j["verdict"] == res["verdict"] == "mixed" and j["results"] == {"x": [1, 2]}
    assert j["seed"] == 3 and (tmp_path / "r" / "p.png").stat().st_size > 1000


def test_lab_list_cli(capsys):
    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    for n in MINE:
        assert n in out


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("lab")


def _run(name, out_root):
    res = lab.run_experiment(name, quick=True, out=out_root / name, log=lambda m: None)
    assert res["verdict"] in lab.VERDICTS and res["why"]
    assert (out_root / name / "report.md").read_text().startswith(f"# Lab: {name} (quick")
    for p in res["plots"]:
        assert (out_root / name / p).stat().st_size > 1000
    return res


def test_quick_translation(quick_runs):
    res = _run("translation", quick_runs)
    acc = res["results"]["accuracy"]
    mlp = next(v for k, v in acc.items() if k.startswith("MLP"))["shift"][0]
    # robust: 8-pixel shifts of 32-pixel digits destroy the MLP's accuracy
    assert mlp[0] > 0.85 and mlp[-1] < mlp[0] - 0.5


def test_quick_small_filters(quick_runs):
    res = _run("small-filters", quick_runs)
    a, b = res["results"]["7x7"]["stats"], res["results"]["3x3x3"]["stats"]
    assert a["rf_after"] == b["rf_after"]
    # 8 channels (quick): 3 * (9 * 8 * 8 + 8) = 1,752 against 49 * 8 * 8 + 8 = 3,144
    assert (b["params"], a["params"]) == (1752, 3144)


def test_quick_gap_vs_fc(quick_runs):
    res = _run("gap-vs-fc", quick_runs)
    assert res["results"]["gap"]["head_params"] < res["results"]["fc"]["head_params"] / 10


def test_quick_degradation_deep_plain_net_trains_worse(quick_runs):
    # robust at this size: plain-32 ended 6-24 points of training error above plain-8 over
    # seeds 0-2, while the residual nets of both depths ended under 1.2%
    res = _run("degradation", quick_runs)["results"]
    final = {k: v["train_err"][-1] for k, v in res.items()}
    assert final["plain32"] > final["plain8"] + 0.03
    assert final["resnet32"] < final["plain32"]


@pytest.mark.parametrize("name", ["pixel-distance", "pooling", "mean-subtraction",
                                  "augmentation", "baselines"])
def test_quick_runs(quick_runs, name):
    _run(name, quick_runs)


def test_quick_distillation_and_rerun_reuses_finished_networks(quick_runs):
    res = _run("distillation", quick_runs)
    (seed_res,) = res["results"]["per_seed"]
    assert all(0.5 < seed_res[k] <= 1 for k in ("teacher", "student", "distilled"))
    report = (quick_runs / "distillation" / "report.md").read_text()
    assert "**Per seed**" in report and "Hinton et al. errors" in report
    # rerun into the same directory: the finished networks are read back, not retrained
    runs = sorted((quick_runs / "distillation" / "runs").rglob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    again = lab.run_experiment("distillation", quick=True, out=quick_runs / "distillation",
                               log=lambda m: None)
    assert again["results"]["per_seed"] == res["results"]["per_seed"]
    assert [p.stat().st_mtime_ns for p in runs] == stamps and len(runs) >= 6


# ------------------------------------------------------------------ verdicts, on made-up results
# Each experiment's verdict function against constructed results for every outcome it has,
# so a flipped comparison shows without training anything.
S, M, N = "supported", "mixed", "not supported"


def _verdict_of(fn, *args):
    rep = lab.Report()
    fn(rep, *args)
    assert rep.verdict_ in lab.VERDICTS and rep.why
    return rep.verdict_


@pytest.mark.parametrize("base, augd, want", [
    ((0.99, 0.80), (0.92, 0.85), S),  # better test accuracy, smaller train-test gap
    ((0.90, 0.80), (0.99, 0.82), M),  # better, but a larger gap
    ((0.99, 0.85), (0.88, 0.84), M),  # smaller gap, but not better
    ((0.95, 0.85), (0.99, 0.80), N),  # worse and a larger gap
])
def test_augmentation_verdict(base, augd, want):
    from cnnlab.lab.augmentation import _verdict

    def runs(tr, te):  # two seeds a little apart
        return {"train": [tr - 0.005, tr + 0.005], "test": [te - 0.005, te + 0.005]}

    assert _verdict_of(_verdict, runs(*base), runs(*augd)) == want


def _cmp(knn_acc, knn_ms, cnn_acc, cnn_ms):
    return [{"method": "knn", "accuracy": knn_acc, "predict_ms": knn_ms},
            {"method": "linear", "accuracy": 0.5, "predict_ms": 0.01},
            {"method": "lenet5", "accuracy": cnn_acc, "predict_ms": cnn_ms}]


@pytest.mark.parametrize("results, want", [
    ({"digits": _cmp(0.97, 1.0, 0.98, 0.1), "mnist": _cmp(0.97, 5.0, 0.99, 0.2)}, S),
    ({"digits": _cmp(0.97, 1.0, 0.98, 0.1), "mnist": _cmp(0.98, 5.0, 0.98, 0.2)}, M),  # a tie
    ({"digits": _cmp(0.97, 1.0, 0.98, 0.1), "mnist": _cmp(0.97, 0.1, 0.99, 0.2)}, M),  # k-NN faster
    ({"mnist": _cmp(0.98, 5.0, 0.98, 0.2)}, N),  # a tie is not a CNN win
    ({"mnist": _cmp(0.99, 5.0, 0.98, 0.2)}, N),
    ({"mnist": _cmp(0.97, 5.0, 0.98, 0.2), "cifar10_1nn": {"l2": 0.35, "l1": 0.38}}, S),
    ({}, M),  # nothing to compare
])
def test_baselines_verdict(results, want):
    from cnnlab.lab.baselines import _verdict

    assert _verdict_of(_verdict, results) == want


@pytest.mark.parametrize("plain, resnet, want", [
    ((0.05, 0.10), (0.05, 0.04), S),  # deeper plain worse, deeper ResNet not
    ((0.05, 0.055), (0.05, 0.04), M),  # no degradation to fix
    ((0.05, 0.10), (0.05, 0.10), N),  # the ResNet degrades too
])
def test_degradation_verdict(plain, resnet, want):
    from cnnlab.lab.degradation import _verdict

    res = {f"{kind}{d}": {"train_err": [0.5, e]} for kind, errs in (("plain", plain),
                                                                    ("resnet", resnet))
           for d, e in zip((20, 56), errs)}
    assert _verdict_of(_verdict, res, (20, 56)) == want


@pytest.mark.parametrize("large_centred, best_centred, want", [
    (True, 0.95, S), (True, 0.85, M), (False, 0.95, M), (False, 0.85, N)])
def test_mean_subtraction_verdict(large_centred, best_centred, want):
    from cnnlab.lab.mean_subtraction import _verdict

    lrs = [0.01, 0.1, 0.5]

    def cells(top_lr, acc):  # stable up to top_lr (best accuracy there), diverged above
        return {lr: {"diverged": lr > top_lr, "acc": [acc if lr == top_lr else 0.7] * 2
                     if lr <= top_lr else [0.1, 0.1]} for lr in lrs}

    top = 0.5 if large_centred else 0.1
    res = {"raw 0..255": cells(0.01, 0.9), "0..1": cells(0.1, 0.9),
           "mean-subtracted": cells(top, best_centred), "standardised": cells(0.1, 0.8)}
    assert _verdict_of(_verdict, res, lrs) == want


@pytest.mark.parametrize("share_pix, share_feat, accs, want", [
    (0.7, 0.9, (0.9, 0.5, 0.3), S), (0.7, 0.9, (0.9, 0.9, 0.89), M),
    (0.9, 0.7, (0.9, 0.5, 0.3), M), (0.9, 0.7, (0.9, 0.9, 0.89), N)])
def test_pixel_distance_verdict(share_pix, share_feat, accs, want):
    from cnnlab.lab.pixel_distance import _verdict

    names = ["shifted", "darkened", "masked"]
    res = {"share_pixels": share_pix, "share_features": share_feat,
           **{n: {"knn_acc": a, "cnn_acc": 0.9} for n, a in zip(names, accs)}}
    assert _verdict_of(_verdict, res, names) == want


@pytest.mark.parametrize("stoch, want", [(0.97, S), (0.95, M), (0.90, N)])
def test_pooling_verdict(stoch, want):
    from cnnlab.lab.pooling import VARIANTS, _verdict

    acc = {"max": 0.96, "avg": 0.94, "min": 0.80, "kmax": 0.95, "strided-conv": 0.95,
           "stochastic": stoch}
    rep = lab.Report(results={"digits": {v: {"test": [acc[v]] * 2} for v in VARIANTS}})
    _verdict(rep)
    assert rep.verdict_ == want


@pytest.mark.parametrize("mlp_shift, mlp_crop, want", [
    (0.3, 0.4, S), (0.3, 0.9, M), (0.9, 0.4, M), (0.9, 0.9, N)])
def test_translation_verdict(mlp_shift, mlp_crop, want):
    from cnnlab.lab.translation import CROPS, _verdict

    shifts = [0, 2, 4]

    def model(at_shift4, at_crop08):
        return {"shift": [[0.95, 0.9, at_shift4]] * 2,
                "crop": [[0.95 if c != 0.8 else at_crop08 for c in CROPS]] * 2}

    acc = {"mlp": model(mlp_shift, mlp_crop), "lenet5": model(0.8, 0.8),
           "gap": model(0.85, 0.7 if mlp_crop < 0.5 else 0.8)}
    assert _verdict_of(_verdict, acc, shifts) == want


@pytest.mark.parametrize("gap_params, gap_gap, want", [
    (1_000, 0.02, S), (1_000, 0.10, M), (90_000, 0.02, N)])
def test_gap_vs_fc_verdict(gap_params, gap_gap, want):
    from cnnlab.lab.gap_vs_fc import _verdict

    res = {"fc": {"train": [0.99], "test": [0.94], "params": 60_000, "head_params": 50_000},
           "gap": {"train": [0.90 + gap_gap], "test": [0.90], "params": gap_params,
                   "head_params": 170}}
    assert _verdict_of(_verdict, res) == want


@pytest.mark.parametrize("rf3, p3, acc3, want", [
    (7, 1_000, 0.950, S), (7, 1_000, 0.940, M), (7, 3_000, 0.950, N), (5, 1_000, 0.950, N)])
def test_small_filters_verdict(rf3, p3, acc3, want):
    from cnnlab.lab.small_filters import _verdict

    res = {"7x7": {"stats": {"rf_after": 7, "params": 2_400}, "test": [0.95, 0.949]},
           "3x3x3": {"stats": {"rf_after": rf3, "params": p3}, "test": [acc3, acc3]}}
    assert _verdict_of(_verdict, res) == want


@pytest.mark.parametrize("distilled, teacher, want", [
    (0.985, 0.99, S), (0.975, 0.99, M), (0.96, 0.99, N), (0.98, 0.97, M)])
def test_distillation_verdicts(distilled, teacher, want):
    from cnnlab.lab.distillation import _verdict, _verdict_cifar

    res = {"teacher": teacher, "student": 0.97, "distilled": distilled}
    assert _verdict_of(_verdict, res) == want
    assert _verdict_of(_verdict_cifar, res) == want


@pytest.mark.parametrize("gains, want", [
    ((0.2, 0.1, 0.05), S), ((0.2, 0.1, -0.01), M), ((-0.1, -0.05, 0.0), N)])
def test_transfer_verdict(gains, want):
    from cnnlab.lab.transfer import _verdict

    by_shot = {s: {"scratch": [0.5, 0.6], "fine-tuned": [0.5 + g, 0.6 + g], "linear probe": [0.5]}
               for s, g in zip((1, 5, 10), gains)}
    by_shot[50] = {"scratch": [0.9], "fine-tuned": [0.8], "linear probe": [0.8]}  # not counted
    assert _verdict_of(_verdict, {"by_shot": by_shot}) == want
