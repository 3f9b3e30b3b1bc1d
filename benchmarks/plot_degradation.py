"""Draw the training-error curves of the CIFAR-10 degradation runs (bench_cifar_gpu.py).

    python benchmarks/plot_degradation.py benchmarks/gpu/degradation.json \
        benchmarks/gpu/degradation_run2.json --out benchmarks/degradation.png

Needs matplotlib (a benchmark-only dependency: pip install matplotlib). Solid lines are
training error (with augmentation, averaged over each epoch), dashed lines test error,
as in Figure 1 / Figure 6 of He et al. 2016.
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", help="degradation*.json files")
    ap.add_argument("--out", default="degradation.png")
    args = ap.parse_args()
    fig, axes = plt.subplots(1, len(args.runs), figsize=(6 * len(args.runs), 4.2), squeeze=False)
    colors = {"plain20": "tab:blue", "plain56": "tab:red", "resnet20": "tab:green",
              "resnet56": "tab:purple"}
    for ax, path in zip(axes[0], args.runs):
        runs = json.load(open(path))
        for name, r in runs.items():
            ep = [row["epoch"] for row in r["epochs"]]
            ax.plot(ep, [100 * (1 - row["train_acc"]) for row in r["epochs"]], "-",
                    color=colors.get(name), label=f"{name} train")
            ax.plot(ep, [100 * (1 - row["test_acc"]) for row in r["epochs"]], "--",
                    color=colors.get(name), alpha=0.6, label=f"{name} test")
        n = len(next(iter(runs.values()))["epochs"])
        ax.set(title=f"CIFAR-10 (JPEG), {n} epochs, lr /10 at 50% and 75%", xlabel="epoch",
               ylabel="error (%)", ylim=(0, 90))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
