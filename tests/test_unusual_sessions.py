"""Every command on broken and unusual sessions: one line on stderr, the right exit code, no
traceback.

The sessions are built here from one simulated session (``pitbox simulate``'s engine) by
rewriting it with the ``.ibt`` writer: cut to one lap, cut before the first line crossing
(no laps), cut to the car standing in the pit box, and with channels dropped (no GPS, no
brake, no speed, nothing to find corners with), plus a file cut inside its headers. What
each command does with each is written in docs/analysis.md ("Unusual and broken sessions"):
it succeeds (exit 0) where there is something to say, even if it is "no tips", and fails
with one ``PitboxError`` line and exit 2 where there is not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import pitbox.sim as sim
from pitbox.cli import main
from pitbox.ibt import open_telemetry, write_ibt
from pitbox.store import import_file

pytestmark = pytest.mark.slow

#: What each session is made of: rows kept (None: all) and channels dropped.
GOOD = ("two_laps", "one_lap", "no_gps", "no_brake", "no_speed")
NO_LAP = ("no_laps", "stationary")
NO_CORNERS = ("no_corner_channels",)
ALL = (*GOOD, *NO_LAP, *NO_CORNERS, "truncated")


@dataclass
class Sessions:
    root: Path
    data: Path
    ibt: dict[str, Path]
    ids: dict[str, str]


def _rewrite(src: Path, dest: Path, shift_s: int, rows: slice | None = None, drop: tuple[str, ...] = ()) -> Path:
    with open_telemetry(src) as tf:
        ch = {k: (v if rows is None else v[rows]) for k, v in tf.read().items() if k not in drop}
        return write_ibt(dest, ch, tf.session_info_raw, units={v.name: v.unit for v in tf.variables},
                         types={v.name: v.type for v in tf.variables}, start_date=tf.disk.session_start_date + shift_s)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Sessions:
    root = tmp_path_factory.mktemp("unusual")
    base = root / "two_laps.ibt"
    sim.simulate_session(track="pitboxsim_demo", laps=2, faults=["2:T3:brake_early:25"], seed=3, out=base,
                         in_lap=False)
    with open_telemetry(base) as tf:
        lap, speed = tf.read(["Lap", "Speed"]).values()
    crossings = np.flatnonzero(np.diff(lap) == 1) + 1
    still = int(np.flatnonzero(speed > 0)[0])
    ibt = {"two_laps": base}
    specs: dict[str, dict] = {
        "one_lap": {"rows": slice(0, int(crossings[1]) + 60)},
        "no_gps": {"drop": ("Lat", "Lon", "Alt")},
        "no_brake": {"drop": ("Brake", "BrakeRaw", "BrakeABSactive")},
        "no_speed": {"drop": ("Speed",)},
        "no_laps": {"rows": slice(0, int(crossings[0]) - 30)},
        "stationary": {"rows": slice(0, still)},
        "no_corner_channels": {"drop": ("Lat", "Lon", "Alt", "YawRate", "LatAccel", "Yaw")},
    }
    for k, (name, spec) in enumerate(specs.items()):
        ibt[name] = _rewrite(base, root / f"{name}.ibt", 10 * (k + 1), **spec)
    ibt["truncated"] = root / "truncated.ibt"
    ibt["truncated"].write_bytes(base.read_bytes()[:700])  # cut inside the variable headers
    data = root / "data"
    ids = {name: import_file(p, data).sessions[0] for name, p in ibt.items() if name != "truncated"}
    return Sessions(root, data, ibt, ids)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(cmd: str, err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pitbox {cmd}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _expect(capsys: pytest.CaptureFixture[str], argv: list[str], ok: bool, needle: str = "") -> str:
    rc, out, err = _run(capsys, argv)
    if ok:
        assert rc == 0, err
        assert "Traceback" not in err and "error" not in err
        return out
    assert rc == 2, (rc, out, err)
    line = _one_error_line(argv[0], err)
    assert needle in line, line
    return line


# -- per session ---------------------------------------------------------------------------

#: command -> (argv for a session file and id, sessions where it succeeds, needle of the error by kind)
CASES: dict[str, tuple[Callable[[Sessions, str], list[str]], tuple[str, ...]]] = {
    "info": (lambda s, n: ["info", str(s.ibt[n])], (*GOOD, *NO_LAP, *NO_CORNERS)),
    "laps": (lambda s, n: ["laps", s.ids.get(n, str(s.ibt[n])), "--data", str(s.data)], (*GOOD, *NO_LAP, *NO_CORNERS)),
    "compare": (lambda s, n: ["compare", f"{s.ibt[n]}:1", f"{s.ibt[n]}:1"], (*GOOD, *NO_CORNERS)),
    "coach": (lambda s, n: ["coach", str(s.ibt[n])], GOOD),
    "export": (lambda s, n: ["export", f"{s.ibt[n]}:0", "--out", str(s.root / f"{n}.csv")], (*GOOD, *NO_LAP, *NO_CORNERS)),
}
ERRORS = {"no_laps": "no lap_index 1", "stationary": "no lap_index 1", "no_corner_channels": "none of the channels",
          "truncated": "header.var_header_offset"}
COACH_ERRORS = {"no_laps": "no valid complete lap", "stationary": "no valid complete lap",
                "no_corner_channels": "none of the channels Lat/Lon, YawRate or LatAccel",
                "truncated": "header.var_header_offset"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("cmd", list(CASES))
def test_command_on_an_unusual_session(sessions: Sessions, capsys: pytest.CaptureFixture[str], cmd: str,
                                       name: str) -> None:
    build, ok = CASES[cmd]
    argv = build(sessions, name)
    if cmd == "laps" and name == "truncated":
        argv = ["laps", str(sessions.ibt[name]), "--data", str(sessions.data)]
        needle = "no session"
    else:
        needle = (COACH_ERRORS if cmd == "coach" else ERRORS).get(name, "")
    out = _expect(capsys, argv, name in ok, needle)
    if cmd == "coach" and name == "one_lap":
        assert "tips:\n  (none)" in out  # one lap: nothing to compare it with, no tip
    if cmd == "compare" and name == "no_corner_channels":
        assert "corners (none):" in out  # the delta stands without corners


def test_coach_json_and_report_on_unusual_sessions(sessions: Sessions, capsys: pytest.CaptureFixture[str]) -> None:
    out = _expect(capsys, ["coach", str(sessions.ibt["no_speed"]), "--json"], True)
    assert '"tips": [' in out
    html = sessions.root / "no_speed.html"  # no speed: no continuity check, a map coloured by nothing
    _expect(capsys, ["report", str(sessions.ibt["no_speed"]), "--out", str(html)], True)
    assert html.stat().st_size > 100_000 and "not continuous" in html.read_text(encoding="utf-8")
    for name in ("stationary", "no_corner_channels", "truncated"):
        _expect(capsys, ["coach", str(sessions.ibt[name]), "--json"], False, COACH_ERRORS[name])
        _expect(capsys, ["report", str(sessions.ibt[name]), "--out", str(sessions.root / "x.html")], False,
                COACH_ERRORS[name])


def test_export_motec_of_a_lap_without_speed_and_of_a_standing_car(sessions: Sessions,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("no_speed", "stationary", "no_laps"):
        out = sessions.root / f"{name}.motec.csv"
        _expect(capsys, ["export", f"{sessions.ibt[name]}:0", "--format", "motec", "--out", str(out)], True)
        assert out.read_text(encoding="utf-8").startswith('"Format","MoTeC CSV File"')


def test_outputs_that_cannot_be_written(sessions: Sessions, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = sessions.root / "a_file"
    blocker.write_text("not a folder")
    target = blocker / "x"
    _expect(capsys, ["export", f"{sessions.ibt['one_lap']}:1", "--out", f"{target}.csv"], False, "cannot write")
    _expect(capsys, ["report", str(sessions.ibt["one_lap"]), "--out", f"{target}.html"], False, "cannot write")
    _expect(capsys, ["simulate", "--laps", "1", "--out", f"{target}.ibt"], False, "does not exist")


def test_import_record_and_emulate_unusual_sessions(sessions: Sessions, capsys: pytest.CaptureFixture[str]) -> None:
    data = sessions.root / "again"
    rc, out, err = _run(capsys, ["import", str(sessions.ibt["stationary"]), str(sessions.ibt["truncated"]),
                                 "--data", str(data)])
    assert rc == 1 and "1 imported" in out  # the good file is imported, the broken one named
    assert len(err.strip().splitlines()) == 1 and "truncated.ibt" in err and "Traceback" not in err
    for name in ("stationary", "no_laps"):
        out = _expect(capsys, ["record", "replay", str(sessions.ibt[name]), "--data", str(data), "--speed", "0"], True)
        assert "1 session(s) stored" in out
    _expect(capsys, ["record", "replay", str(sessions.ibt["truncated"]), "--data", str(data)], False,
            "header.var_header_offset")
    out = _expect(capsys, ["emulate", str(sessions.ibt["stationary"]), "--memmap", str(sessions.root / "mm.bin"),
                           "--speed", "inf"], True)
    _expect(capsys, ["emulate", str(sessions.ibt["truncated"]), "--memmap", str(sessions.root / "mm2.bin")], False,
            "header.var_header_offset")


@pytest.mark.parametrize(("argv", "rc", "needle"), [
    (["coach", "{no_laps}"], 2, "no valid complete lap"),
    (["coach", "{no_corner_channels}"], 2, "none of the channels"),
    (["info", "{truncated}"], 2, "header.var_header_offset"),
    (["coach", "{one_lap}"], 0, ""),
], ids=["no-laps", "no-corner-channels", "truncated", "one-lap"])
def test_real_processes(sessions: Sessions, argv: list[str], rc: int, needle: str) -> None:
    args = [a.format(**{k: str(v) for k, v in sessions.ibt.items()}) for a in argv]
    res = subprocess.run([sys.executable, "-m", "pitbox.cli", *args], capture_output=True, text=True, timeout=300,
                         cwd=sessions.root)
    assert res.returncode == rc, res.stderr
    assert "Traceback" not in res.stderr
    if rc:
        _one_error_line(argv[0], res.stderr)
        assert needle in res.stderr
