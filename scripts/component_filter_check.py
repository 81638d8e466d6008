"""Would a learned filter of lesion candidates beat the size and extent rule? (session 11)

Reads two tables from ``scripts/component_features.py`` (training cases, held-out cases),
fits a logistic regression (Newton steps, light L2) on the training components' features
to predict "touches a true lesion", picks the probability cut-off that maximizes the mean
of Dice and lesion F1 on the training cases, and prints Dice / lesion F1 on both sets for
the size and extent rule (``--rule-voxels``, ``--rule-extent-mm``; by default 100 voxels and
7 mm, session 11's model's) and the filter::

    python scripts/component_filter_check.py out/fp/train.npz out/fp/val40.npz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def case_scores(table, keep: np.ndarray) -> tuple[float, float]:
    """Mean Dice and lesion F1 over the table's cases when only ``keep`` components stay."""
    dices, f1s = [], []
    pairs = table["pairs"]
    for case in range(len(table["names"])):
        kept = keep & (table["case"] == case)
        truth_voxels = int(table["truth_voxels"][case])
        truth_lesions = int(table["truth_lesions"][case])
        total = int(table["size"][kept].sum()) + truth_voxels
        dices.append(1.0 if total == 0 else 2.0 * int(table["overlap"][kept].sum()) / total)
        n_kept = int(kept.sum())
        if truth_lesions == 0 or n_kept == 0:
            f1s.append(1.0 if truth_lesions == n_kept == 0 else 0.0)
            continue
        mine = pairs[pairs[:, 1] == case]
        found = len(set(mine[kept[mine[:, 0]], 2].tolist()))
        false_positive = n_kept - int((table["overlap"][kept] > 0).sum())
        f1s.append(2 * found / (2 * found + false_positive + truth_lesions - found))
    return float(np.mean(dices)), float(np.mean(f1s))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50) -> np.ndarray:
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + l2 * np.r_[w[:-1], 0]
        hessian = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return w


def auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = np.empty(len(score))
    ranks[np.argsort(score)] = np.arange(len(score))
    label = label.astype(bool)
    return float((ranks[label].mean() - (label.sum() - 1) / 2) / (~label).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("train")
    parser.add_argument("heldout")
    parser.add_argument("--rule-voxels", type=int, default=100)
    parser.add_argument("--rule-extent-mm", type=float, default=7.0)
    args = parser.parse_args()
    train, heldout = np.load(args.train), np.load(args.heldout)
    mean, spread = train["x"].mean(0), train["x"].std(0) + 1e-9

    def design(x: np.ndarray) -> np.ndarray:
        return np.c_[(x - mean) / spread, np.ones(len(x))]

    weights = fit_logistic(design(train["x"]), train["y"].astype(float))
    p_train = 1 / (1 + np.exp(-design(train["x"]) @ weights))
    p_held = 1 / (1 + np.exp(-design(heldout["x"]) @ weights))
    cut = max(np.linspace(0.05, 0.95, 19), key=lambda t: np.mean(case_scores(train, p_train >= t)))

    def rule(table):
        return (table["size"] >= args.rule_voxels) & (table["x"][:, 1] >= args.rule_extent_mm)

    out = sys.stdout.write
    out(f"components: training {len(train['y'])} ({int(train['y'].sum())} touch a lesion), ")
    out(f"held-out {len(heldout['y'])} ({int(heldout['y'].sum())})\n")
    out(
        f"filter AUC: training {auc(p_train, train['y']):.3f}, "
        f"held-out {auc(p_held, heldout['y']):.3f}\n"
    )
    out(f"{'':32s} {'train Dice':>10s} {'train F1':>9s} {'held Dice':>10s} {'held F1':>8s}\n")
    for name, keep_train, keep_held in (
        (
            f"rule: >= {args.rule_voxels} voxels, >= {args.rule_extent_mm:g} mm",
            rule(train),
            rule(heldout),
        ),
        (f"learned filter, cut {cut:.2f}", p_train >= cut, p_held >= cut),
    ):
        a, b = case_scores(train, keep_train), case_scores(heldout, keep_held)
        out(f"{name:32s} {a[0]:10.4f} {a[1]:9.4f} {b[0]:10.4f} {b[1]:8.4f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
