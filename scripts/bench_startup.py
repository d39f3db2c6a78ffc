"""How long `vestige --help` takes: the first thing an operator runs (target: under 0.3 s).

Runs the installed command in fresh processes (median of --repeats, default 7) and, for
the record, Python's own start-up (`python -c pass`) on the same machine.
Run: `make bench` (or `make bench-quick`), or `.venv/bin/python scripts/bench_startup.py`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_stats import Figure

TARGET_SECS = 0.3
BIN = Path(sys.executable).parent


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    commands = {"vestige --help": [str(BIN / "vestige"), "--help"], "python -c pass": [sys.executable, "-c", "pass"]}
    figures = {name: Figure(name, "s") for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            figures[name].values.append(wall(command))
    for figure in figures.values():
        print(figure.line(3))
    median = figures["vestige --help"].median
    print(f"  vestige --help: {median:.3f} s (target < {TARGET_SECS} s: {'PASS' if median < TARGET_SECS else 'FAIL'})")


if __name__ == "__main__":
    main()
