"""`cnnlab lab` (rerun the lectures' claims) and `cnnlab compare` (the classic baselines side
by side)."""

from __future__ import annotations

import json
import sys

from cnnlab.cli.common import add_command

EXAMPLES = {
    "lab": """
        cnnlab lab list
        cnnlab lab translation --quick
        cnnlab lab pooling --out runs/pooling-full
        cnnlab lab all --quick""",
    "compare": """
        cnnlab compare
        cnnlab compare --data ../shared/datasets/mnist.tar.gz --methods knn,linear,mlp,lenet5
        cnnlab compare --data ../shared/datasets/cifar10.tar.gz --methods knn,bovw,coates --k 1""",
}


def register(subs) -> None:
    p = add_command(subs, "lab", "rerun one of the lectures' claims as an experiment "
                    "(report.md, plots, results.json)", EXAMPLES["lab"], cmd_lab)
    p.add_argument("name", help="an experiment, `list` or `all`")
    p.add_argument("--quick", action="store_true",
                   help="the small version (under a minute each on a 2-core CPU)")
    p.add_argument("--out", help="run directory (default runs/lab-NAME-TIME); with `all`, "
                                 "the parent of one directory per experiment")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--data", help="run on this dataset only (each experiment says which kinds "
                                  "it takes: digits, mnist, cifar10)")
    p.add_argument("--json", action="store_true", help="`list`: print JSON")

    c = add_command(subs, "compare", "k-NN, linear, bag of words, MLP and CNNs on one dataset: "
                    "accuracy, size, training and prediction time", EXAMPLES["compare"],
                    cmd_compare)
    c.add_argument("--data", default="digits", help="digits (default), a canonical name, a "
                                                    "folder or .tar.gz")
    c.add_argument("--methods", default=None,
                   help="comma-separated: knn, knn-fast, knn-l1, linear, bovw, coates, mlp, or "
                        "any zoo model (default: knn,linear,mlp,lenet5)")
    c.add_argument("--k", type=int, help="k of k-NN (default: 3, or all the training images "
                                         "when fewer)")
    c.add_argument("--epochs", type=int, default=None, help="epochs for trained methods")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print JSON")


def cmd_lab(args) -> int:
    from cnnlab import lab

    if args.name == "list":
        exps = lab.list_experiments()
        if args.json:
            print(json.dumps([{"name": e.name, "claim": e.claim, "data": e.data,
                               "full_minutes": e.expected_minutes_full,
                               "quick_seconds": e.expected_seconds_quick} for e in exps],
                             indent=1))
            return 0
        w = max(len(e.name) for e in exps)
        print(f"{'Experiment':<{w}}  {'full':>7}  {'quick':>6}  Claim")
        for e in exps:
            print(f"{e.name:<{w}}  {e.expected_minutes_full:>4.0f} min  {e.expected_seconds_quick:>4.0f} s"
                  f"  {e.claim}")
        print("Times: expected on an idle 2-core CPU; `cnnlab lab NAME --quick` runs the small "
              "version.")
        return 0
    from pathlib import Path

    names = [e.name for e in lab.list_experiments()] if args.name == "all" else [args.name]
    for n in names:  # unknown names and data that does not fit fail before anything runs
        lab.check_data(lab.get_experiment(n), args.data)
    for n in names:
        out = args.out
        if args.name == "all" and out:
            out = str(Path(out) / n)
        res = lab.run_experiment(n, quick=args.quick, out=out, seed=args.seed,
                                 data=args.data)
        print(f"{n}: {res['verdict']} ({res['seconds']:.0f} s) — {res['why']}")
        print(f"  report: {Path(res['run_dir']) / 'report.md'}")
        sys.stdout.flush()
    return 0


def cmd_compare(args) -> int:
    from cnnlab.baselines.compare import compare, format_table

    rows = compare(args.data, methods=args.methods, k=args.k, epochs=args.epochs,
                   seed=args.seed, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
    return 0
