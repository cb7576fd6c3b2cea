""".ibt → Parquet import benchmark: PitBox against pyirsdk, libibt and the Parquet-write floor.

Builds a long ``.ibt`` (default 1 hour at 60 Hz = 216,000 rows) by tiling the rows of a real
file in which the car is driven (``SessionTime``, ``SessionTick`` and ``Lap`` kept
increasing, or libibt collapses rows with equal timestamps), then times, each in a fresh
child process so that its peak memory (``ru_maxrss``) is its own:

====================  ==================================================================
step                  what is timed
====================  ==================================================================
pitbox import         ``pitbox.store.import_file``: the whole ``.ibt`` → Parquet session
pitbox read numpy     ``open_telemetry`` + ``iter_chunks``: every channel into numpy columns
pitbox read arrow     the same, plus the conversion to Arrow record batches the store writes
pyirsdk get_all       ``irsdk.IBT().get_all(name)`` for every channel
libibt parse          ``libibt.ibt(path)``: every scalar channel into per-channel Arrow tables
parquet write floor   ``pyarrow.parquet.ParquetWriter`` with the store's options (zstd, same
                      row groups) writing the same Arrow batches, prepared untimed: what no
                      importer can beat
parquet zstd default  the same with pyarrow's default options (dictionary encoding on), for
                      reference
python baseline       the child process importing numpy, pyarrow and pitbox, doing nothing
pitbox import         ``pitbox import FILE --data DIR --no-index`` as a user runs it: the whole
--no-index, whole     process from its start to its exit (interpreter start-up, imports, the
process               import, the exit), timed by the parent: the same work as pyirsdk's row
pitbox import (with   the same with the default team indexing (laps and corners of the new
indexing), whole      session analysed and added to ``_index``): more work than the peer's,
process               shown apart
====================  ==================================================================

Goals (docs/benchmarks.md): import ≥ 10x faster than pyirsdk (the whole ``pitbox import``
process ≥ 20x); reading into columns no slower than libibt's parse; import peak memory under
2x the file size; the gap to the floor reported.

Run: ``.venv/bin/python bench/import_bench.py [--minutes 60] [--skip-pyirsdk] [--only STEP ...]``.
Each row also gives the CPU time (user + system, every thread; for the child steps the timed
work only): on a loaded machine it moves far less than the wall time.
The built file goes to ``bench/out/`` (git-ignored) and is reused when it is already there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "real" / "mercedesamggt4_spielberg-gp_itelem.ibt"
OUT = ROOT / "bench" / "out"
TICK_RATE = 60


# -- building the long file ------------------------------------------------------------

def tiled(values: np.ndarray, n_rows: int) -> np.ndarray:
    """``values`` repeated along the first axis to exactly ``n_rows`` rows."""
    reps = -(-n_rows // len(values))
    return np.concatenate([values] * reps)[:n_rows]


def increasing(values: np.ndarray, n_rows: int, step: float) -> np.ndarray:
    """Tiled, each repeat shifted by the span of the source plus ``step`` so it keeps increasing."""
    n = len(values)
    span = values[-1] - values[0] + step
    shift = (np.arange(n_rows) // n) * span
    return (tiled(values, n_rows) + shift.astype(values.dtype)).astype(values.dtype)


def build_long_ibt(source: Path, n_rows: int, dest: Path) -> Path:
    """Write ``dest``: the rows of ``source`` tiled to ``n_rows`` rows, same variables and row length."""
    from pitbox.ibt import open_telemetry, write_ibt

    with open_telemetry(source) as tf:
        ch = tf.read()
        variables, buf_len, yaml = tf.variables, tf.header.buf_len, tf.session_info_raw
        start_date = tf.disk.session_start_date if tf.disk is not None else 0
        rate = tf.tick_rate
    t = ch["SessionTime"]
    if not (np.diff(t) > 0).all():
        raise SystemExit(f"{source}: SessionTime is not strictly increasing; pick a driven file without blank rows")
    out = {name: tiled(a, n_rows) for name, a in ch.items()}
    out["SessionTime"] = increasing(t, n_rows, 1.0 / rate)
    if "SessionTick" in ch:
        out["SessionTick"] = increasing(ch["SessionTick"], n_rows, 1)
    if "Lap" in ch:
        out["Lap"] = increasing(ch["Lap"], n_rows, 1)
    assert (np.diff(out["SessionTime"]) > 0).all()
    dest.parent.mkdir(parents=True, exist_ok=True)
    return write_ibt(dest, out, yaml, variables=variables, buf_len=buf_len, tick_rate=rate, start_date=start_date)


def long_file(source: Path, minutes: float) -> Path:
    """The tiled file, built by a child process (so this process stays small: a child's
    ``ru_maxrss`` starts from its parent's at fork)."""
    n_rows = int(round(minutes * 60 * TICK_RATE))
    dest = OUT / f"{source.stem}_{n_rows}rows.ibt"
    if not dest.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", str(source), str(n_rows), str(dest)], check=True, cwd=ROOT)
        print(f"built {dest.relative_to(ROOT)} ({n_rows} rows) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return dest


def file_shape(path: Path) -> tuple[int, int]:
    """(rows, channels) of an .ibt, from its header (no rows read)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(144)
    num_vars = struct.unpack_from("<i", head, 24)[0]
    return struct.unpack_from("<i", head, 140)[0], num_vars


# -- the steps, each run in a child process -------------------------------------------
# Each step imports what it needs and prepares its input untimed, then returns the work to
# time as a function of no arguments.

Work = Callable[[], object]


def step_baseline(path: Path, work: Path) -> Work:
    import pyarrow  # noqa: F401

    import pitbox.store  # noqa: F401

    return lambda: None


def step_pitbox_import(path: Path, work: Path) -> Work:
    from pitbox.store import import_file

    def run() -> None:
        result = import_file(path, work / "data")
        assert result.status == "imported", result

    return run


def step_pitbox_read_numpy(path: Path, work: Path) -> Work:
    from pitbox.ibt import open_telemetry

    def run() -> int:
        with open_telemetry(path) as tf:
            return sum(len(chunk["SessionTime"]) for chunk in tf.iter_chunks())

    return run


def step_pitbox_read_arrow(path: Path, work: Path) -> Work:
    from pitbox.ibt import open_telemetry
    from pitbox.store import ROW_GROUP_ROWS, arrow_schema, record_batch

    def run() -> int:
        with open_telemetry(path) as tf:
            schema = arrow_schema(tf.variables)
            return sum(record_batch(tf.variables, c, schema).num_rows for c in tf.iter_chunks(ROW_GROUP_ROWS))

    return run


def step_pyirsdk(path: Path, work: Path) -> Work:
    import irsdk

    def run() -> None:
        ibt = irsdk.IBT()
        ibt.open(str(path))
        try:
            for name in ibt.var_headers_names:
                ibt.get_all(name)
        finally:
            ibt.close()

    return run


def step_libibt(path: Path, work: Path) -> Work:
    import libibt

    def run() -> int:
        log = libibt.ibt(str(path))
        return sum(t.num_rows for t in log.channels.values())

    return run


def _write_step(path: Path, dest: Path, options: Callable[[list], dict]) -> Work:
    """Write the same Arrow batches the import writes (prepared untimed) with ``options``."""
    import pyarrow.parquet as pq

    from pitbox.ibt import open_telemetry
    from pitbox.store import ROW_GROUP_ROWS, arrow_schema, record_batch

    with open_telemetry(path) as tf:
        variables = tf.variables
        schema = arrow_schema(variables)
        batches = [record_batch(variables, c, schema) for c in tf.iter_chunks(ROW_GROUP_ROWS)]

    def run() -> None:
        with pq.ParquetWriter(dest, schema, **options(variables)) as w:
            for b in batches:
                w.write_batch(b, row_group_size=ROW_GROUP_ROWS)

    return run


def step_parquet_floor(path: Path, work: Path) -> Work:
    from pitbox.store import parquet_options

    return _write_step(path, work / "floor.parquet", parquet_options)


def step_parquet_default(path: Path, work: Path) -> Work:
    return _write_step(path, work / "default.parquet", lambda variables: {"compression": "zstd"})


STEPS: dict[str, Callable[[Path, Path], Work]] = {
    "pitbox import": step_pitbox_import,
    "pitbox read numpy": step_pitbox_read_numpy,
    "pitbox read arrow": step_pitbox_read_arrow,
    "pyirsdk get_all": step_pyirsdk,
    "libibt parse": step_libibt,
    "parquet write floor": step_parquet_floor,
    "parquet zstd default": step_parquet_default,
    "python baseline": step_baseline,
}


WHOLE = "pitbox import --no-index, whole process"
WHOLE_INDEXED = "pitbox import (with indexing), whole process"
#: The whole-process rows: extra arguments of ``pitbox import`` for each. ``--no-index`` does the
#: work pyirsdk's row does (the file's channels, here stored); the default also adds the sessions
#: to the team index (laps and corners analysed), shown as its own row.
WHOLE_ARGS = {WHOLE: ["--no-index"], WHOLE_INDEXED: []}


def max_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def child(step: str, path: Path) -> None:
    """Run one step in this (child) process and print its time and peak memory as JSON."""
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        run = STEPS[step](path, Path(work))
        rss_before = max_rss_bytes()
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        out_bytes = sum(p.stat().st_size for p in Path(work).rglob("*.parquet"))
    print(json.dumps({"step": step, "seconds": seconds, "cpu_seconds": cpu, "max_rss": max_rss_bytes(),
                      "rss_before": rss_before, "parquet_bytes": out_bytes}))


def run_child(step: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, str(path)], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step {step!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the table ------------------------------------------------------------------------------

def mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:.0f}"


def table(results: dict[str, dict], file_size: int, n_rows: int, n_channels: int) -> str:
    ours = results.get("pitbox import", {}).get("seconds")
    base = results.get("python baseline", {}).get("max_rss")
    lines = [
        f"file: {n_rows} rows, {n_channels} channels, {file_size / 1e6:.0f} MB (in the page cache)",
        "",
        "| step | seconds | CPU s (all threads) | time / pitbox import | peak RSS MB | above baseline MB | "
        "peak RSS / file size |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for step, r in results.items():
        rss = r["max_rss"]
        ratio = "n/a" if rss is None else f"{rss / file_size:.2f}"
        above = "n/a" if rss is None or base is None else mb(rss - base)
        if step == "python baseline":
            secs = ("—", "—", "—")
        else:
            secs = (f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}",
                    "n/a" if ours is None else f"{r['seconds'] / ours:.2f}")
        lines.append(f"| {step} | {secs[0]} | {secs[1]} | {secs[2]} | {mb(rss)} | {above} | {ratio} |")
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def goals(results: dict[str, dict], file_size: int) -> str:
    out = []
    ours = results.get("pitbox import")
    peer = results.get("pyirsdk get_all")
    if peer is not None and ours is not None:
        x = peer["seconds"] / ours["seconds"]
        out.append(f"- import vs pyirsdk get_all: {x:.1f}x faster (goal >= 10x): {verdict(x >= 10)}")
    if peer is not None:
        for step in WHOLE_ARGS:
            if step not in results:
                continue
            w, c = results[step], peer["seconds"] / results[step]["seconds"]
            cpu = peer["cpu_seconds"] / w["cpu_seconds"]
            goal = f" (goal >= 20x): {verdict(c >= 20)}" if step == WHOLE else " (for reference: more work)"
            cpu_goal = f" (goal >= 20x): {verdict(cpu >= 20)}" if step == WHOLE else ""
            out.append(f"- {step} ({w['seconds']:.2f} s wall, {w['cpu_seconds']:.2f} s CPU, start-up included) vs "
                       f"pyirsdk get_all (in-process, its start-up not counted: {peer['seconds']:.2f} s wall, "
                       f"{peer['cpu_seconds']:.2f} s CPU): {c:.1f}x faster in wall time{goal}; {cpu:.1f}x in CPU "
                       f"time{cpu_goal} (on a loaded machine the wall times depend on when each ran; the CPU "
                       "ratio is the steadier one)")
    if {"pitbox read numpy", "pitbox read arrow", "libibt parse"} <= set(results):
        numpy_s, arrow_s = results["pitbox read numpy"]["seconds"], results["pitbox read arrow"]["seconds"]
        lib = results["libibt parse"]["seconds"]
        out.append(f"- read into columns: {numpy_s:.2f} s into numpy ({arrow_s:.2f} s into Arrow) vs libibt's parse "
                   f"{lib:.2f} s (goal: no slower): {verdict(numpy_s <= lib)} (Arrow: {verdict(arrow_s <= lib)})")
    if ours is not None and ours["max_rss"] is not None:
        r = ours["max_rss"] / file_size
        out.append(f"- import peak RSS {mb(ours['max_rss'])} MB = {r:.2f}x the file size (goal < 2x): {verdict(r < 2)}")
    if ours is not None and "parquet write floor" in results:
        floor = results["parquet write floor"]["seconds"]
        out.append(f"- gap to the Parquet-write floor: {ours['seconds'] - floor:.2f} s "
                   f"(import {ours['seconds']:.2f} s = {ours['seconds'] / floor:.1f}x the floor's {floor:.2f} s)")
    if ours is not None:
        out.append(f"- session file: {ours['parquet_bytes'] / 1e6:.1f} MB "
                   f"({file_size / max(ours['parquet_bytes'], 1):.0f}x smaller than the .ibt)")
    return "\n".join(out)


def whole_process(path: Path, step: str = WHOLE) -> dict:
    """``pitbox import PATH`` as a user runs it: the console script's whole process, timed from
    before its start to its exit (the time, CPU time of every thread, peak memory and output
    size of that process)."""
    script = Path(sys.executable).with_name("pitbox")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "pitbox.cli"]
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*cmd, "import", str(path), "--data", str(Path(work) / "data"), *WHOLE_ARGS[step]],
                                cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"pitbox import failed:\n{proc.stderr.read().decode() if proc.stderr else ''}")
        out_bytes = sum(p.stat().st_size for p in Path(work).rglob("*.parquet"))
    rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return {"step": step, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss": rss,
            "rss_before": None, "parquet_bytes": out_bytes}


def best_of(step: str, path: Path, repeat: int) -> dict:
    """The fastest of ``repeat`` runs (each in a fresh child), with the highest peak memory seen."""
    runs = [whole_process(path, step) if step in WHOLE_ARGS else run_child(step, path) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    rss = [r["max_rss"] for r in runs if r["max_rss"] is not None]
    return {**best, "cpu_seconds": min(r["cpu_seconds"] for r in runs), "max_rss": max(rss) if rss else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60, help="length of the tiled file (default 60)")
    ap.add_argument("--skip-pyirsdk", action="store_true", help="skip pyirsdk (it takes 15 s or more per hour)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="real .ibt to tile")
    ap.add_argument("--repeat", type=int, default=3, help="runs per step, each in a fresh child; the best time is kept (default 3)")
    ap.add_argument("--only", nargs="+", metavar="STEP", choices=[*STEPS, *WHOLE_ARGS],
                    help="run only these steps (names as in the table, quoted)")
    ap.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--build", nargs=3, metavar=("SOURCE", "ROWS", "DEST"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    if args.build:
        build_long_ibt(Path(args.build[0]), int(args.build[1]), Path(args.build[2]))
        return 0
    if not args.source.is_file():
        print(f"source file not found: {args.source}", file=sys.stderr)
        return 2
    path = long_file(args.source, args.minutes)
    n_rows, n_channels = file_shape(path)
    size = path.stat().st_size
    results = {}
    for step in [*STEPS, *WHOLE_ARGS]:
        if step == "pyirsdk get_all" and args.skip_pyirsdk or args.only and step not in args.only:
            continue
        print(f"running {step} ...", file=sys.stderr, flush=True)
        results[step] = best_of(step, path, args.repeat)
    print(table(results, size, n_rows, n_channels))
    print()
    print(goals(results, size))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    sys.exit(main())
