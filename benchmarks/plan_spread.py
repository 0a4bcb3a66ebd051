"""What a batch plan changes: one chaotic configuration trained alone and in batches, seed by seed.

Batched training stacks models into shared products whose float rounding depends on what else is in
the batch, so a configuration that amplifies rounding (`paper_fit` at a high lr) reports other
numbers in another batch. The profile states the plan (params.yaml `plan`), so one profile on one
CPU model reproduces bit for bit; this script measures how far the numbers move when the plan (or the
CPU) changes: the same seeds trained (1) each alone, (2) the seeds as one batch, (3) each seed in a
batch with other models (the configuration's other lrs, as a selection grid plans them). It prints
each seed's final accuracy under each, the largest per-seed difference, each way's mean with its 95%
interval, and Welch's test of "alone" against each batched way: the spread a reader should expect
between machines, in distribution.

    python benchmarks/plan_spread.py --dataset digits --method sal-16 --preset paper_fit --lr 0.03
    python benchmarks/plan_spread.py --tiny          # seconds, numbers meaningless (CI runs it)

Last lines (machine-readable): `plan_spread_max_seed_diff_pp: <points>`, `plan_spread_welch_p: <p>`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from salrepro import runs as ex
from salrepro.data import load_dataset
from salrepro.method.models import PRESETS
from salrepro.pipeline import stats
from salrepro.pipeline.schema import parse_method
from salrepro.pipeline.settings import method_options


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--method", default="sal-16")
    ap.add_argument("--preset", default="paper_fit", help="a named preset of models.PRESETS, or 'default'")
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--others", type=float, nargs="*", default=[0.001, 0.003, 0.01],
                    help="lrs of the models batched beside each seed in the third way")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--tiny", action="store_true", help="toy sizes, seconds: checks the script runs")
    args = ap.parse_args()
    if args.tiny:
        args.seeds, args.epochs, args.hidden, args.others = 2, 1, 8, [0.01]
    torch.set_num_threads(1)
    method, k = parse_method(args.method)
    options = method_options(method, PRESETS.get(args.preset, {}) if args.preset != "default" else {})
    data = load_dataset(args.dataset)

    def config(seed, lr):
        return ex.make_config(args.dataset, method, num_areas=k, hidden=args.hidden, seed=seed, epochs=args.epochs,
                              batch_size=16, lr=lr, options=options)

    seeds = range(args.seeds)
    acc = lambda records: np.array([100 * r["final"]["val_accuracy"] for r in records])  # noqa: E731
    loss = lambda records: np.array([r["final"]["train_loss"] for r in records])  # noqa: E731
    runs_alone = ex.run_all([config(s, args.lr) for s in seeds], data, batched=False, workers=1, progress=False)
    runs_together = ex.run_all([config(s, args.lr) for s in seeds], data, workers=1, progress=False,
                               plan=ex.Plan(1e12, 1e12, 1))
    runs_beside = []
    for s in seeds:  # each seed in a batch with the same seed at the other lrs
        runs_beside.append(ex.run_all([config(s, lr) for lr in (args.lr, *args.others)], data, workers=1,
                                      progress=False, plan=ex.Plan(1e12, 1e12, 1))[0])
    alone, together, beside = acc(runs_alone), acc(runs_together), acc(runs_beside)
    rel = max(float(np.max(np.abs(loss(r) / loss(runs_alone) - 1))) for r in (runs_together, runs_beside))
    print(f"{args.dataset} {args.method} [{args.preset}] lr {args.lr:g}, {args.epochs} epochs, hidden {args.hidden}; "
          f"torch {torch.__version__}, {ex.cpu_model()}, one thread")
    print("seed   alone  one batch of the seeds  beside its other lrs")
    for s, a, t, b in zip(seeds, alone, together, beside):
        print(f"{s:4d}  {a:6.2f}  {t:22.2f}  {b:20.2f}")
    for name, x in (("alone", alone), ("one batch of the seeds", together), ("beside its other lrs", beside)):
        print(f"{name}: mean {x.mean():.2f}, std {x.std(ddof=1):.2f}")
    worst = float(max(np.abs(alone - together).max(), np.abs(alone - beside).max()))
    tests = [stats.welch(x, alone) for x in (together, beside)]
    for name, e in zip(("one batch - alone", "beside - alone"), tests):
        print(f"{name}: {e.text('pts', 2)}, Welch p {e.p:.3f}")
    print(f"largest relative difference of a final training loss from its run alone: {rel:.2e}")
    print(f"plan_spread_max_seed_diff_pp: {worst:.3f}")
    print(f"plan_spread_welch_p: {min(e.p for e in tests):.3f}")


if __name__ == "__main__":
    main()
