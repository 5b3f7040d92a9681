"""Wall time of every lecture and solution notebook on this machine, against the 3-minute budget.

    python benchmarks/notebook_times.py [NOTEBOOK ...]

Runs each notebook once in a fresh kernel (outputs are not written back) and prints a table.
The numbers depend on the machine and on what else it is doing: run it on a quiet machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 180


def run(path: Path) -> tuple[float, str]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
        status = "ok"
    except Exception as error:  # report and go on with the next notebook
        status = f"FAILED: {type(error).__name__}"
    return time.perf_counter() - start, status


def main(argv: list[str]) -> int:
    paths = [Path(p).resolve() for p in argv] or sorted(
        list((ROOT / "lectures").glob("*.ipynb")) + list((ROOT / "solutions").glob("*.ipynb")))
    print(f"{'notebook':52s} {'seconds':>8s} {'of budget':>10s}  status")
    for path in paths:
        seconds, status = run(path)
        share = seconds / BUDGET_SECONDS
        flag = "" if share <= 1 else "  OVER BUDGET"
        print(f"{str(path.relative_to(ROOT)):52s} {seconds:8.1f} {share:9.0%}  {status}{flag}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
