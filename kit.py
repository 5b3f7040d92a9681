#!/usr/bin/env python3
"""Set up and run Adversarial X with nothing but Python 3.10+ and pip.

    python3 kit.py open    # set up (first time only) and open the course in JupyterLab
    python3 kit.py test    # set up (first time only) and run every test and notebook
    python3 kit.py test --quick   # the unit tests only (no notebooks, browser or grader): ~1 min

Both commands are idempotent: the virtual environment ``.venv/`` is made once, and packages
are installed again only when ``pyproject.toml`` changes.  Extra arguments go to JupyterLab or
pytest (e.g. ``python3 kit.py test tests/test_zoo.py -x``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / "adversarial-x-installed.txt"


def say(message: str) -> None:
    print(f"[kit] {message}", flush=True)


def ensure_environment(extras: str) -> None:
    """Create ``.venv`` and install the course into it, unless that is already done."""
    if sys.version_info < (3, 10):
        sys.exit(f"[kit] Python 3.10 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        say(f"creating the virtual environment {VENV.name}/ ...")
        venv.EnvBuilder(with_pip=True).create(VENV)
    def stamp(extra: str) -> str:
        return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()

    wanted = stamp(extras)
    done = STAMP.read_text().split() if STAMP.exists() else []
    if wanted in done or stamp("dev") in done:  # the dev install includes the plain one
        return
    target = f".[{extras}]" if extras else "."
    say(f"installing the course and its packages ({target}); the first time takes a few minutes")
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check",
                    "-e", target], cwd=ROOT, check=True)
    STAMP.write_text("\n".join(done + [wanted]) + "\n")


def child_environment() -> dict[str, str]:
    """The environment for notebooks: the data mirror as an absolute path, the venv first."""
    env = dict(os.environ)
    mirror = env.get("ADVX_DATA_MIRROR")
    if mirror:
        env["ADVX_DATA_MIRROR"] = str(Path(mirror).expanduser().resolve())
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    return env


def open_course(args: list[str]) -> int:
    ensure_environment("")
    say("opening JupyterLab; start with lectures/00_start_here.ipynb (Ctrl-C here to stop)")
    command = [str(PYTHON), "-m", "jupyter", "lab", f"--ServerApp.root_dir={ROOT}",
               "--LabApp.default_url=/lab/tree/lectures/00_start_here.ipynb", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        command.append("--allow-root")  # containers and cloud machines often run as root
    return subprocess.call(command, cwd=ROOT, env=child_environment())


def run_tests(args: list[str]) -> int:
    """Everything (CI), or with ``--quick`` the tests not marked slow (tests/conftest.py marks
    the grader, browser, site and notebook tests) and no notebooks collected at all."""
    ensure_environment("dev")
    if "--quick" in args:
        # without nbval's flags pytest collects no notebook
        command = [str(PYTHON), "-m", "pytest", "-m", "not slow",
                   *[arg for arg in args if arg != "--quick"]]
    else:
        command = [str(PYTHON), "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                   "--nbval-cell-timeout=900", *args]
    say("running: " + " ".join(command[1:]))
    return subprocess.call(command, cwd=ROOT, env=child_environment())


def main() -> int:
    commands = {"open": open_course, "test": run_tests}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
