"""Pool the per-case results of several ``napari-unet evaluate --json`` files into one.

    python scripts/pool_evaluations.py A.json B.json --skip synthval_0000-0009 --output P.json

The pooled file holds every case once (a case name seen twice is refused, so one brain
cannot count double) and can be given to ``napari-unet compare``. ``--skip`` drops the
named cases; ``NAME-NNNN`` ranges expand over the trailing number.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def expand_names(patterns: list[str]) -> set[str]:
    """``synthval_0000-0009`` -> synthval_0000 ... synthval_0009; plain names stay."""
    names: set[str] = set()
    for pattern in patterns:
        match = re.fullmatch(r"(.*?)(\d+)-(\d+)", pattern)
        if not match:
            names.add(pattern)
            continue
        stem, first, last = match.group(1), match.group(2), match.group(3)
        names.update(f"{stem}{i:0{len(first)}d}" for i in range(int(first), int(last) + 1))
    return names


def pool(paths: list[Path], skip: set[str]) -> dict:
    cases: list[dict] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            entries = json.loads(path.read_text())["cases"]
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(
                f"error: {path} is not an evaluation JSON with 'cases': {exc}"
            ) from exc
        for entry in entries:
            name = entry["case"]
            if name in skip:
                continue
            if name in seen:
                raise SystemExit(f"error: case {name} is in both {seen[name]} and {path}")
            seen[name] = path
            cases.append(entry)
    return {"cases": cases, "pooled_from": [str(p) for p in paths], "skipped": sorted(skip)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", type=Path)
    parser.add_argument("--skip", nargs="*", default=[], help="case names or NAME-NNNN ranges")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.output.exists():
        print(f"error: {args.output} exists; choose a new file", file=sys.stderr)
        return 2
    pooled = pool(args.evaluations, expand_names(args.skip))
    args.output.write_text(json.dumps(pooled, indent=2))
    print(f"pooled {len(pooled['cases'])} cases into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
