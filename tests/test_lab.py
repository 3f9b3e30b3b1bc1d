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
