"""``evaluate`` and ``evaluate-clicks``: ISLES 2022 metrics and the click simulator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .progress import ProgressBar


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..core.evaluation import evaluate_paths

    try:
        results, summary = evaluate_paths(args.pred, args.truth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'case':32s} {'dice':>7s} {'lesF1':>7s} {'|dV| mL':>8s} {'|dN|':>5s} {'HD95 mm':>8s}")
    for r in results:
        print(
            f"{r.case:32s} {r.dice:7.4f} {r.lesion_f1:7.4f} {r.abs_volume_diff_ml:8.3f} "
            f"{r.abs_lesion_count_diff:5d} {r.hd95_mm:8.2f}"
        )
    print(
        f"{'mean':32s} {summary['mean_dice']:7.4f} {summary['mean_lesion_f1']:7.4f} "
        f"{summary['mean_abs_volume_diff_ml']:8.3f} {summary['mean_abs_lesion_count_diff']:5.2f} "
        f"{summary['mean_hd95_mm']:8.2f}"
    )
    print(
        f"95 % bootstrap interval over {summary['cases']} cases: Dice "
        f"{summary['dice_ci95'][0]:.3f}-{summary['dice_ci95'][1]:.3f}, lesion F1 "
        f"{summary['lesion_f1_ci95'][0]:.3f}-{summary['lesion_f1_ci95'][1]:.3f}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cases": [r.to_dict() for r in results], "summary": summary}, indent=2)
        )
        print(f"wrote {args.json}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Paired bootstrap comparison of two evaluations of the same cases."""
    from ..core.evaluation import (
        click_noc_by_section_size,
        compare_click_evaluations,
        compare_evaluations,
        is_click_evaluation,
    )

    by_size: list[dict] = []
    try:
        clicks = is_click_evaluation(args.a)
        if clicks:
            differences = compare_click_evaluations(args.a, args.b)
            try:
                by_size = click_noc_by_section_size(args.a, args.b)
            except ValueError as exc:
                print(f"note: no NoC@90 by section size: {exc}", file=sys.stderr)
        else:
            differences = compare_evaluations(args.a, args.b)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unit = "brains (lesion slices pooled, brains resampled)" if clicks else "cases"
    print(f"b - a over {differences[0].cases} {unit} (a = {args.a}, b = {args.b})")
    print(
        f"{'metric':20s} {'mean a':>8s} {'mean b':>8s} {'b - a':>8s} {'95 % interval':>18s} "
        f"{'b higher':>8s}"
    )
    for d in differences:
        print(
            f"{d.metric:20s} {d.mean_a:8.4f} {d.mean_b:8.4f} {d.difference:+8.4f} "
            f"{d.ci_low:+8.4f} {d.ci_high:+8.4f} {d.fraction_b_ahead:8.1%}"
        )
    if by_size:
        print("NoC@90 by lesion-section area (guided engine)")
        print(f"{'area px':14s} {'tasks':>6s} {'a':>6s} {'b':>6s}")
        for row in by_size:
            span = f"{row['min_px']}-{row['max_px']}" if row["max_px"] else f">={row['min_px']}"
            a, b = (
                f"{row[k]:6.2f}" if row[k] is not None else f"{'-':>6s}"
                for k in ("noc90_a", "noc90_b")
            )
            print(f"{span:14s} {row['tasks']:6d} {a} {b}")
    if args.json:
        report = {"a": args.a, "b": args.b, "differences": [d.to_dict() for d in differences]}
        if by_size:
            report["noc90_by_section_size"] = by_size
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_evaluate_clicks(args: argparse.Namespace) -> int:
    """NoC@85/90 and Dice after 1/3/5 clicks for both click engines (simulated user)."""
    from ..core.click_eval import evaluate_click_engines
    from ..core.io import read_image
    from ..core.models import get_model
    from ..core.training.datasets import DatasetLayoutError, find_cases

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        cases = [c for c in find_cases(args.data) if c.split == args.split]
    except DatasetLayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print(f"error: {args.data} has no {args.split} cases", file=sys.stderr)
        return 2
    loaded = []
    for case in cases:
        image = read_image(case.images[0])
        truth = read_image(case.mask).data > 0.5
        loaded.append((case.case, image.data, truth, image.geometry.display_spacing))
    bar = ProgressBar("simulating clicks")
    result = evaluate_click_engines(
        loaded,
        get_model(args.model),
        get_model(args.click_model),
        max_clicks=args.max_clicks,
        per_lesion=args.per_lesion,
        device=args.device,
        progress=lambda d, n: bar.update(d, n),
    )
    bar.close()
    zero = result["zero_clicks_dice"]
    print(f"{len(cases)} {args.split} cases, {result['guided'].get('tasks', 0)} lesion slices")
    print(
        f"{'engine':34s} {'NoC@85':>7s} {'NoC@90':>7s} {'Dice@1':>7s} {'Dice@3':>7s} {'Dice@5':>7s}"
    )
    for label, key in (
        ("automatic model, no clicks", "automatic"),
        ("click-guided model, no clicks", "guided, no clicks"),
    ):
        print(f"{label:34s} {'':>7s} {'':>7s} Dice@0 {zero[key]:.3f}")
    for key, label in (
        ("baseline", "baseline (automatic model + clicks)"),
        ("guided", "click-guided U-Net"),
    ):
        r = result[key]
        print(
            f"{label:34s} {r['noc85']:7.2f} {r['noc90']:7.2f} {r['dice@1']:7.3f} "
            f"{r['dice@3']:7.3f} {r['dice@5']:7.3f}"
        )
    if "noc90_ci95" in result["guided"]:
        low, high = result["guided"]["noc90_ci95"]
        print(f"click-guided NoC@90, 95 % bootstrap interval over brains: {low:.2f}-{high:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands."""
    p = sub.add_parser("evaluate", help="ISLES 2022 metrics of predicted vs true masks")
    p.add_argument("--pred", required=True, help="mask file or folder")
    p.add_argument("--truth", required=True, help="mask file or folder (matched by case name)")
    p.add_argument("--json", help="write per-case and mean metrics here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "compare",
        help="paired bootstrap difference of two 'evaluate --json' (or 'evaluate-clicks "
        "--json') results",
    )
    p.add_argument("a", help="evaluation JSON of the reference model")
    p.add_argument("b", help="evaluation JSON of the candidate, on the same cases")
    p.add_argument("--json", help="write the differences here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "evaluate-clicks", help="NoC@85/90 and Dice@1/3/5 of both click engines (simulated user)"
    )
    p.add_argument("--data", required=True, help="nnU-Net raw or BIDS-like dataset")
    p.add_argument("--split", choices=["train", "val"], default="val")
    p.add_argument("--model", default="lesion-t1", help="automatic model (baseline engine)")
    p.add_argument("--click-model", default="lesion-t1-clicks", help="click-guided model")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--per-lesion", type=int, default=3, help="axial slices per lesion")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="write the full results here")
    p.set_defaults(func=cmd_evaluate_clicks)
