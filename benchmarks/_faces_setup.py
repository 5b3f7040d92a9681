"""What lecture 03's benchmarks share: their command line, the game's pieces, and the JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils import faces
from utils.session import pick_device


def arguments(doc: str) -> argparse.Namespace:
    """``--sets``, ``--seed``, ``--device`` and ``--save``, with the docstring's first line."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--sets", type=int, default=20, help="number of pair sets")
    parser.add_argument("--seed", type=int, default=1, help="seed of utils.faces.pair_sets")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    parser.add_argument("--save", type=Path, default=None, help="write the rows as JSON here")
    return parser.parse_args()


def game(args: argparse.Namespace):
    """``(device, blackbox, students, pairs)`` for the arguments."""
    device = pick_device(args.device)
    return (device, faces.BlackBox(device), faces.load_students(device=device),
            faces.pair_sets(args.sets, args.seed))


def save(args: argparse.Namespace, device, rows: list[dict]) -> None:
    """Write ``rows`` with the settings that made them to ``--save`` (when given)."""
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps({"sets": args.sets, "seed": args.seed,
                                         "device": device.type, "rows": rows}, indent=1))
        print(f"saved {args.save}")


def print_paired_table(rows: list[dict], table: list[dict], *, width: int = 44,
                       extra: dict[str, str] | None = None) -> None:
    """Print each variant's score and its paired difference to the first row (95 % interval),
    then the ``extra`` columns: ``{header: key of the row}`` (default: queries per set)."""
    extra = {"queries": "queries per set"} if extra is None else extra
    print(f"{'variant':{width}s} {'score':>7s} {'diff':>8s} {'95% interval':>19s}"
          + "".join(f" {header:>8s}" for header in extra))
    for row, diff in zip(rows, table):
        cells = [row[key] for key in extra.values()]
        print(f"{row['rung']:{width}s} {row['score']:7.4f} {diff['difference']:+8.4f} "
              f"[{diff['low']:+.4f}, {diff['high']:+.4f}]"
              + "".join(f" {c:8.0f}" if isinstance(c, (int, float)) and not isinstance(c, bool)
                        else f" {str(c):>8s}" for c in cells))
