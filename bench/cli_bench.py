"""CLI start-up benchmark: ``pitbox --help``, every command's ``--help`` and ``pitbox import``
of the 1-hour file, each timed as a whole process (what a user waits for), beside the
interpreter doing nothing (``python -c pass``) and the libraries a command may load
(``python -c "import pandas"`` ...) in the same run.

Each command runs ``--repeat`` times (default 5) in a fresh process; the table shows the
median and the fastest run. Goals (brief): ``pitbox --help`` and any command's ``--help``
under 0.15 s; the whole ``pitbox import`` of the 1-hour file at least 20x faster than pyirsdk
``get_all`` (that ratio is in ``bench/import_bench.py``; here the import's start-up share).

    .venv/bin/python bench/cli_bench.py [--repeat 5] [--no-import]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def pitbox_cmd() -> list[str]:
    script = Path(sys.executable).with_name("pitbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pitbox.cli"]


def timed(cmd: list[str], repeat: int) -> tuple[float, float, float]:
    """(median wall s, fastest wall s, median CPU s) of ``cmd`` as a fresh process, start to
    exit; the CPU time (user + system, from the child's rusage) moves much less than the wall
    time when other processes load the machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - t0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}")
        cpus.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def commands() -> list[list[str]]:
    """Every command and sub-command of the parser, as the argv before ``--help``."""
    from pitbox.cli import build_parser

    out: list[list[str]] = []

    def walk(parser, prefix: list[str]) -> None:
        if parser._subparsers is None:
            return
        for action in parser._subparsers._group_actions:
            for name, sub in action.choices.items():
                out.append([*prefix, name])
                walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-import", action="store_true", help="skip the 1-hour `pitbox import`")
    args = ap.parse_args(argv)
    py, pb = sys.executable, pitbox_cmd()
    rows: list[tuple[str, float, float, float]] = []
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.repeat} runs each", flush=True)
    rows.append(("python -c pass", *timed([py, "-c", "pass"], args.repeat)))
    for lib in ("numpy", "pandas", "pyarrow", "plotly.graph_objects", "scipy.signal", "sklearn.linear_model",
                "websockets.asyncio.server", "jwt", "yaml"):
        rows.append((f"python -c 'import {lib}'", *timed([py, "-c", f"import {lib}"], args.repeat)))
    base = rows[0][1]
    helps = [["--help"]] + [[*c, "--help"] for c in commands()]
    for argv_ in helps:
        rows.append(("pitbox " + " ".join(argv_), *timed([*pb, *argv_], args.repeat)))
    if not args.no_import:
        from import_bench import DEFAULT_SOURCE, long_file

        path = long_file(DEFAULT_SOURCE, 60)
        with tempfile.TemporaryDirectory() as tmp:
            runs = [timed([*pb, "import", str(path), "--data", str(Path(tmp) / f"d{k}")], 1)
                    for k in range(max(1, args.repeat // 2))]
        rows.append(("pitbox import <1-hour .ibt>", statistics.median(r[0] for r in runs), min(r[1] for r in runs),
                     statistics.median(r[2] for r in runs)))
    print("\n| command (whole process) | median wall s | fastest wall s | median CPU s | wall - python -c pass, s | goal |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    worst = 0.0
    for name, med, best, cpu in rows:
        goal = ""
        if name.startswith("pitbox") and name.endswith("--help"):
            goal = "< 0.15 s: " + ("met" if med < 0.15 else "NOT met")
            worst = max(worst, med)
        print(f"| `{name}` | {med:.3f} | {best:.3f} | {cpu:.3f} | {med - base:+.3f} | {goal} |")
    print(f"\nslowest --help: {worst:.3f} s (goal < 0.15 s: {'met' if worst < 0.15 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
