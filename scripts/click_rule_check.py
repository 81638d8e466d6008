"""Today's click rule against one ``GuidedClickEngine`` option switched on, same simulated user.

Runs the simulated user of ``napari-unet evaluate-clicks`` with both rules on the same
lesion slices and prints NoC@85, NoC@90 and Dice@1 for each, and the paired differences
(per task, brains resampled) of the variant against today's rule. The variant is
``local_replace`` (session 12) or ``flip_average`` (sessions 5 and 28)::

    python scripts/click_rule_check.py --data runs/synth_hypo --split train --cases 12
    python scripts/click_rule_check.py --data runs/synth_val40 --data runs/synth_fresh40 \\
        --split val --json out/click_rule_val80.json
    python scripts/click_rule_check.py --variant flip_average --data runs/synth_screen48 \\
        --split train --json out/click_flip_screen48.json
"""

from __future__ import annotations

import argparse
import json
import sys

VARIANTS = ("local_replace", "flip_average")  # GuidedClickEngine options, off by default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lesion-t1-clicks")
    parser.add_argument("--data", action="append", required=True, help="repeatable")
    parser.add_argument("--split", choices=["train", "val"], required=True)
    parser.add_argument("--cases", type=int, help="first N brains of each dataset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, default="local_replace")
    parser.add_argument("--json", help="write per-brain results and the differences here")
    args = parser.parse_args()

    import torch

    from napari_unet.core.click_eval import (
        clicks_to_reach,
        load_click_tasks,
        run_engine,
        summarize,
    )
    from napari_unet.core.guided import GuidedClickEngine
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model
    from napari_unet.core.statistics import paired_grouped_difference

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=1)
    loaded = [t for data in args.data for t in load_click_tasks(data, args.split, args.cases)]
    rules = {"today": False, args.variant: True}
    curves = {name: [] for name in rules}
    per_brain = {name: {"noc90": [], "noc85": [], "dice@1": []} for name in rules}
    for name, switched_on in rules.items():
        for _, image, truth, tasks in loaded:
            engine = GuidedClickEngine(predictor, image, **{args.variant: switched_on})
            brain = run_engine(engine, truth, tasks, 20, bundle.threshold)
            curves[name] += brain
            per_brain[name]["noc90"].append([clicks_to_reach(c, 0.9, 20) for c in brain])
            per_brain[name]["noc85"].append([clicks_to_reach(c, 0.85, 20) for c in brain])
            per_brain[name]["dice@1"].append([c[0] for c in brain])
        s = summarize(curves[name], 20)
        sys.stdout.write(
            f"{name:14s} NoC@85 {s['noc85']:.3f}  NoC@90 {s['noc90']:.3f}  "
            f"Dice@1 {s['dice@1']:.3f}  ({s['tasks']} tasks, {len(loaded)} brains)\n"
        )
    differences = [
        paired_grouped_difference(m, per_brain["today"][m], per_brain[args.variant][m])
        for m in ("noc90", "noc85", "dice@1")
    ]
    for d in differences:
        sys.stdout.write(
            f"{args.variant} - today {d.metric:7s} {d.difference:+.3f} "
            f"({d.ci_low:+.3f} to {d.ci_high:+.3f}, {d.cases} brains)\n"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "model": bundle.version_id,
                    "variant": args.variant,
                    "data": args.data,
                    "split": args.split,
                    "brains": [name for name, *_ in loaded],
                    "summary": {n: summarize(curves[n], 20) for n in rules},
                    "per_brain": per_brain,
                    "differences": [d.to_dict() for d in differences],
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
