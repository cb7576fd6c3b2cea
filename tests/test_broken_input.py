"""Broken telemetry files, built here from the real ones, never crash PitBox or hurt the store.

Every broken variant is written to ``tmp_path`` from the bytes of a real iRacing file (the
real files are never copied into the repo). Each must either raise :class:`IbtFormatError`
naming the file and the field (and the CLI ``import`` and ``info`` exit non-zero with that
reason, no traceback), or, where only rows are missing, import exactly the complete rows
marked truncated, with values equal to what pyirsdk reads from the intact file. The rest
of the store stays byte for byte as it was. The section offsets used to cut files are read
here with ``struct`` from the real header, independently of the reader under test.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import irsdk
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitbox.cli import main
from pitbox.errors import IbtFormatError, TruncatedWarning
from pitbox.ibt.reader import open_telemetry
from pitbox.store import import_file, read_meta

from conftest import AMG, REAL, need

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]  # safety nets only, for a loaded machine

#: A small 2024 file that sits in the store before every broken import ("the rest of the store").
NEIGHBOUR = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"
#: The file the fuzzers mutate (small, so that each example imports in milliseconds).
FUZZ_SOURCE = NEIGHBOUR


# -- the real file's layout, read with struct ------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Byte offsets of the sections of a real ``.ibt`` file (``irsdk_header`` order)."""

    size: int
    num_vars: int
    var_header_offset: int
    session_info_offset: int
    session_info_len: int
    buf_len: int
    data_offset: int
    records: int

    @property
    def var_headers_end(self) -> int:
        return self.var_header_offset + 144 * self.num_vars


def layout_of(raw: bytes) -> Layout:
    (_, _, _, _, si_len, si_off, num_vars, vh_off, _, buf_len) = struct.unpack_from("<10i", raw, 0)
    data_off = struct.unpack_from("<i", raw, 52)[0]
    records = struct.unpack_from("<i", raw, 140)[0]
    return Layout(len(raw), num_vars, vh_off, si_off, si_len, buf_len, data_off, records)


#: (struct format, byte offset) of the header and disk sub-header fields.
HEADER_FIELDS = {
    "ver": ("<i", 0), "status": ("<i", 4), "tick_rate": ("<i", 8), "session_info_update": ("<i", 12),
    "session_info_len": ("<i", 16), "session_info_offset": ("<i", 20), "num_vars": ("<i", 24),
    "var_header_offset": ("<i", 28), "num_buf": ("<i", 32), "buf_len": ("<i", 36),
    "var_buf0.tick_count": ("<i", 48), "var_buf0.buf_offset": ("<i", 52),
    "session_start_date": ("<q", 112), "session_start_time": ("<d", 120), "session_end_time": ("<d", 128),
    "session_lap_count": ("<i", 136), "session_record_count": ("<i", 140),
}
#: (struct format, offset inside one 144-byte variable header).
VAR_FIELDS = {"type": ("<i", 0), "offset": ("<i", 4), "count": ("<i", 8), "count_as_time": ("<B", 12),
              "name": ("32s", 16)}


def patched(raw: bytes, fmt: str, offset: int, value: object) -> bytes:
    out = bytearray(raw)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def var_index(raw: bytes, name: str) -> int:
    lay = layout_of(raw)
    for i in range(lay.num_vars):
        raw_name = struct.unpack_from("32s", raw, lay.var_header_offset + 144 * i + 16)[0]
        if raw_name.split(b"\0", 1)[0] == name.encode():
            return i
    raise LookupError(name)


def patch_var(raw: bytes, index: int, field: str, value: object) -> bytes:
    fmt, off = VAR_FIELDS[field]
    return patched(raw, fmt, layout_of(raw).var_header_offset + 144 * index + off, value)


def with_yaml(raw: bytes, yaml: bytes) -> bytes:
    """The file with its session YAML replaced (header lengths and row offset moved to match)."""
    lay = layout_of(raw)
    assert lay.session_info_offset + lay.session_info_len == lay.data_offset, "YAML directly before the rows"
    out = raw[: lay.session_info_offset] + yaml + raw[lay.data_offset :]
    out = patched(out, "<i", 16, len(yaml))
    return patched(out, "<i", 52, lay.session_info_offset + len(yaml))


def yaml_of(raw: bytes) -> bytes:
    lay = layout_of(raw)
    return raw[lay.session_info_offset : lay.session_info_offset + lay.session_info_len]


# -- shared references -------------------------------------------------------------------

@pytest.fixture(scope="module")
def amg_raw() -> bytes:
    return need(AMG).read_bytes()


@pytest.fixture(scope="module")
def amg_reference() -> dict[str, np.ndarray]:
    """Every channel of the intact file as pyirsdk's ``IBT.get_all`` reads it (the independent truth)."""
    ibt = irsdk.IBT()
    ibt.open(str(need(AMG)))
    try:
        return {name: np.asarray(ibt.get_all(name)) for name in ibt.var_headers_names}
    finally:
        ibt.close()


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one session (and its catalogue), copied into every test."""
    root = tmp_path_factory.mktemp("template") / "data"
    assert main(["import", str(need(NEIGHBOUR)), "--data", str(root)]) == 0
    return root


@pytest.fixture
def store(store_template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(store_template, root)  # copy2 keeps the mtimes
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below ``root`` (hidden ones included)."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def column_values(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)
    return arr.to_numpy(zero_copy_only=False)


def assert_rows_equal(table: pa.Table, reference: dict[str, np.ndarray], n: int) -> None:
    assert table.num_rows == n
    assert set(table.column_names) == set(reference)
    for name, ref in reference.items():
        ours = column_values(table[name])
        want = ref[:n].astype(ours.dtype) if ref.dtype != ours.dtype else ref[:n]
        np.testing.assert_array_equal(ours, want, err_msg=name)


# -- expectations --------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def expect_format_error(path: Path, field: str, store: Path, capsys: pytest.CaptureFixture[str],
                        info_fails: bool = True) -> IbtFormatError:
    """Import raises IbtFormatError naming the file and field; the CLI exits non-zero with the
    reason; ``info`` fails too unless the fault only shows in the rows; the store is untouched."""
    before = snapshot(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedWarning)
        with pytest.raises(IbtFormatError) as exc:
            import_file(path, store)
    msg = str(exc.value)
    assert str(path) in msg and field in msg, msg
    assert "\n" not in msg
    code, text = run_cli(capsys, "import", str(path), "--data", str(store))
    assert code != 0 and field in text and "failed" in text
    code, text = run_cli(capsys, "info", str(path))
    if info_fails:
        assert code != 0 and field in text, text
    else:
        assert code == 0, text
    assert snapshot(store) == before
    return exc.value


def expect_truncated(path: Path, n_rows: int, store: Path, reference: dict[str, np.ndarray]) -> None:
    """Import keeps exactly the ``n_rows`` complete rows (equal to pyirsdk on the intact file),
    warns and marks the session truncated; the files already in the store are untouched."""
    before = snapshot(store)
    with pytest.warns(TruncatedWarning):
        result = import_file(path, store)
    assert result.status == "imported" and result.truncated
    after = snapshot(store)
    assert {k: v for k, v in after.items() if k in before} == before
    new = sorted(set(after) - set(before))
    assert len(new) == 1 and new[0].endswith(".parquet") and not Path(new[0]).name.startswith("."), new
    meta = read_meta(store / new[0])
    assert meta["truncated"] is True and meta["samples"] == n_rows
    assert_rows_equal(pq.read_table(store / new[0]), reference, n_rows)


def write(tmp_path: Path, data: bytes, name: str = "broken.ibt") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# -- cuts ------------------------------------------------------------------------------

#: Cut points named by the section they fall in, as functions of the real layout.
CUTS: dict[str, Callable[[Layout], int]] = {
    "empty": lambda L: 0,
    "header-1-byte": lambda L: 1,
    "header-middle": lambda L: 56,
    "header-last-byte-missing": lambda L: 111,
    "disk-subheader-start": lambda L: 112,
    "disk-subheader-middle": lambda L: 130,
    "disk-subheader-last-byte-missing": lambda L: 143,
    "var-headers-start": lambda L: L.var_header_offset,
    "var-headers-inside-first": lambda L: L.var_header_offset + 60,
    "var-headers-middle": lambda L: L.var_header_offset + 144 * (L.num_vars // 2) + 17,
    "var-headers-last-byte-missing": lambda L: L.var_headers_end - 1,
    "yaml-start": lambda L: L.session_info_offset,
    "yaml-middle": lambda L: L.session_info_offset + L.session_info_len // 2,
    "yaml-last-byte-missing": lambda L: L.session_info_offset + L.session_info_len - 1,
    "rows-start": lambda L: L.data_offset,
    "first-row-middle": lambda L: L.data_offset + L.buf_len // 2,
    "first-row-last-byte-missing": lambda L: L.data_offset + L.buf_len - 1,
    "after-first-row": lambda L: L.data_offset + L.buf_len,
    "second-row-first-byte": lambda L: L.data_offset + L.buf_len + 1,
    "mid-rows-on-boundary": lambda L: L.data_offset + L.buf_len * (L.records // 2),
    "mid-rows-inside-row": lambda L: L.data_offset + L.buf_len * (L.records // 2) + 333,
    "last-row-missing": lambda L: L.size - L.buf_len,
    "last-byte-missing": lambda L: L.size - 1,
}

_rng = random.Random(20261126)
RANDOM_CUTS = sorted(_rng.random() for _ in range(10))


def check_cut(cut: int, raw: bytes, tmp_path: Path, store: Path, reference: dict[str, np.ndarray],
              capsys: pytest.CaptureFixture[str]) -> None:
    lay = layout_of(raw)
    path = write(tmp_path, raw[:cut])
    if cut < lay.data_offset:
        # the header, variable headers or YAML are incomplete: a format error, nothing imported
        expect_format_error(path, "", store, capsys)
    elif (cut - lay.data_offset) // lay.buf_len == 0:
        expect_format_error(path, "rows", store, capsys, info_fails=False)
    else:
        expect_truncated(path, (cut - lay.data_offset) // lay.buf_len, store, reference)


@pytest.mark.parametrize("where", list(CUTS))
def test_cut_at_section_boundary(where: str, amg_raw: bytes, amg_reference: dict[str, np.ndarray],
                                 tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_cut(CUTS[where](layout_of(amg_raw)), amg_raw, tmp_path, store, amg_reference, capsys)


@pytest.mark.parametrize("fraction", RANDOM_CUTS, ids=[f"{f:.4f}" for f in RANDOM_CUTS])
def test_cut_at_random_point(fraction: float, amg_raw: bytes, amg_reference: dict[str, np.ndarray],
                             tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_cut(int(fraction * len(amg_raw)), amg_raw, tmp_path, store, amg_reference, capsys)


def test_cut_error_names_the_section(amg_raw: bytes, tmp_path: Path) -> None:
    lay = layout_of(amg_raw)
    for cut, field in [(50, "header"), (lay.var_header_offset + 10, "header.var_header_offset"),
                       (lay.session_info_offset + 10, "header.session_info_offset"),
                       (lay.data_offset + 10, "rows")]:
        with pytest.raises(IbtFormatError, match=field.replace(".", r"\.")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncatedWarning)
                import_file(write(tmp_path, amg_raw[:cut]), tmp_path / "data")


def test_truncated_file_through_the_cli(amg_raw: bytes, tmp_path: Path, store: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lay = layout_of(amg_raw)
    path = write(tmp_path, amg_raw[: lay.data_offset + 100 * lay.buf_len + 7])
    code, text = run_cli(capsys, "import", str(path), "--data", str(store))
    assert code == 0 and "truncated" in text and "warning" in text
    code, text = run_cli(capsys, "sessions", "--data", str(store), "--json")
    assert code == 0 and '"samples":100' in text.replace(" ", "")


# -- header fields ---------------------------------------------------------------------

@dataclass(frozen=True)
class Flip:
    field: str  #: HEADER_FIELDS key, or "var:<channel or index>.<field>"
    value: object
    outcome: str  #: "reader" (open fails), "store" (import fails, info works), "truncated"
    names: str = ""  #: what the error message must contain


def apply(raw: bytes, flip: Flip) -> bytes:
    value = flip.value(layout_of(raw)) if callable(flip.value) else flip.value
    if flip.field.startswith("var:"):
        target, field = flip.field[4:].split(".")
        index = int(target) if target.lstrip("-").isdigit() else var_index(raw, target)
        return patch_var(raw, index % layout_of(raw).num_vars, field, value)
    fmt, off = HEADER_FIELDS[flip.field]
    return patched(raw, fmt, off, value)


I32_MAX, I32_MIN = 2**31 - 1, -(2**31)


class Rel:
    """A value relative to the real layout: ``Rel("buf_len", 2, 1)`` is ``2 * buf_len + 1``."""

    def __init__(self, attr: str, mul: int = 1, add: int = 0):
        self.attr, self.mul, self.add = attr, mul, add

    def __call__(self, lay: Layout) -> int:
        return getattr(lay, self.attr) * self.mul + self.add

    def __repr__(self) -> str:
        return f"{self.mul}*{self.attr}{self.add:+d}" if self.mul != 1 else f"{self.attr}{self.add:+d}"


FLIPS = [
    *(Flip("ver", v, "reader", "header.ver") for v in (0, 99, -1, I32_MAX)),
    *(Flip("tick_rate", v, "reader", "header.tick_rate") for v in (0, -60, I32_MAX)),
    *(Flip("num_vars", v, "reader", "header.num_vars") for v in (0, -1, I32_MAX, I32_MIN, 4097)),
    Flip("num_vars", Rel("num_vars", 1, 1), "reader", "variable header"),  # the YAML read as a variable
    *(Flip("var_header_offset", v, "reader", "header.var_header_offset") for v in (-1, 0, 100, I32_MAX, I32_MIN)),
    Flip("var_header_offset", Rel("size", 1, -100), "reader", "header.var_header_offset"),
    *(Flip("session_info_len", v, "reader", "header.session_info_len") for v in (-1, I32_MAX, I32_MIN)),
    Flip("session_info_len", Rel("size"), "reader", "header.session_info_offset"),
    *(Flip("session_info_offset", v, "reader", "header.session_info_offset") for v in (-1, 0, I32_MAX)),
    Flip("session_info_offset", Rel("size", 1, -10), "reader", "header.session_info_offset"),
    *(Flip("num_buf", v, "reader", "header.num_buf") for v in (0, 5, -1, I32_MAX)),
    *(Flip("buf_len", v, "reader", "header.buf_len") for v in (0, -1, I32_MAX, I32_MIN)),
    # a row length that disagrees with the variables: too short for them, or longer than they are
    Flip("buf_len", Rel("buf_len", 1, -1), "reader", "offset"),
    Flip("buf_len", Rel("buf_len", 1, -100), "reader", "offset"),
    *(Flip("buf_len", Rel("buf_len", 1, d), "reader", "header.buf_len") for d in (1, 4, 8, 16, 1000)),
    *(Flip("buf_len", Rel("buf_len", k), "reader", "header.buf_len") for k in (2, 3)),
    *(Flip("var_buf0.buf_offset", v, "reader", "header.var_buf[0].buf_offset") for v in (-1, 0, 143, I32_MAX)),
    Flip("var_buf0.buf_offset", Rel("size", 1, 1), "reader", "header.var_buf[0].buf_offset"),
    *(Flip("session_start_date", v, "reader", "session_start_date") for v in (-1, 2**40, 2**63 - 1, -(2**63))),
    Flip("session_record_count", -1, "reader", "session_record_count"),
    # a record count that disagrees with the size: every complete row imports, marked truncated
    *(Flip("session_record_count", v, "truncated") for v in (0, I32_MAX, Rel("records", 1, 1))),
    # variable headers: unknown type, outside the row, absurd counts, bad names
    *(Flip(f"var:{i}.type", v, "reader", ".type") for i in (0, 100, -1) for v in (6, -1, 99, I32_MAX)),
    *(Flip(f"var:{i}.offset", v, "reader", ".offset") for i in (0, 100, -1) for v in (-1, I32_MAX, I32_MIN, 1 << 20)),
    Flip("var:Speed.offset", Rel("buf_len", 1, -2), "reader", ".offset"),
    *(Flip(f"var:{i}.count", v, "reader", ".count") for i in (0, 100) for v in (0, -1, I32_MAX, I32_MIN)),
    Flip("var:Speed.count", 300, "reader", ".offset"),  # 300 floats cannot fit where Speed sits
    Flip("var:5.name", b"", "reader", ".name"),
    Flip("var:5.name", b"Speed", "reader", "a name used once"),
    Flip("var:5.name", b"bad\nname", "reader", ".name"),
    # lap channels of the wrong shape or type: the rows cannot be split into laps
    Flip("var:SessionTime.type", 0, "store", "SessionTime"),
    Flip("var:SessionTime.type", 1, "store", "SessionTime"),
    Flip("var:SessionTime.count", 2, "store", "SessionTime"),
    Flip("var:SessionTick.type", 0, "store", "SessionTick"),
    Flip("var:SessionNum.count", 2, "store", "SessionNum"),
    Flip("var:Lap.type", 4, "store", "Lap"),
    Flip("var:LapDistPct.type", 1, "store", "LapDistPct"),
    Flip("var:Lap.name", b"Lapp", "store", "channel Lap"),
]


def _flip_id(f: Flip) -> str:
    return f"{f.field}={f.value!r}"


@pytest.mark.parametrize("flip", FLIPS, ids=[_flip_id(f) for f in FLIPS])
def test_header_field_flipped(flip: Flip, amg_raw: bytes, amg_reference: dict[str, np.ndarray],
                              tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, apply(amg_raw, flip))
    if flip.outcome == "truncated":
        expect_truncated(path, layout_of(amg_raw).records, store, amg_reference)
    else:
        expect_format_error(path, flip.names, store, capsys, info_fails=flip.outcome == "reader")


def test_garbage_session_num_is_refused(amg_raw: bytes, tmp_path: Path, store: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """SessionNum pointed at a channel that changes every row would split the file into
    thousands of sessions: refused instead."""
    rpm_offset = struct.unpack_from("<i", amg_raw, layout_of(amg_raw).var_header_offset
                                    + 144 * var_index(amg_raw, "RPM") + 4)[0]
    raw = patch_var(amg_raw, var_index(amg_raw, "SessionNum"), "offset", rpm_offset)
    expect_format_error(write(tmp_path, raw), "SessionNum", store, capsys, info_fails=False)


# -- not telemetry at all --------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 7, 112, 144, 4096, 100_000])
def test_random_bytes(size: int, tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = random.Random(size).randbytes(size)
    expect_format_error(write(tmp_path, data), "header", store, capsys)


def test_zero_length_file(tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = expect_format_error(write(tmp_path, b""), "header", store, capsys)
    assert "0 bytes" in str(err)


def test_directory(tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "session.ibt"
    folder.mkdir()
    before = snapshot(store)
    with pytest.raises(IbtFormatError, match="a directory"):
        import_file(folder, store)
    with pytest.raises(IbtFormatError, match="a directory"):
        open_telemetry(folder)
    code, text = run_cli(capsys, "info", str(folder))
    assert code != 0 and "a directory" in text
    code, text = run_cli(capsys, "import", str(folder), "--data", str(store))
    assert code != 0 and "no .ibt files" in text
    assert snapshot(store) == before


def test_missing_path(tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = expect_format_error(tmp_path / "nope.ibt", "path", store, capsys)
    assert "an existing file" in str(err)


def test_folder_with_a_broken_file_imports_the_others(amg_raw: bytes, tmp_path: Path, store: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "telemetry"
    folder.mkdir()
    write(folder, amg_raw[:5000], "a_broken.ibt")
    shutil.copyfile(need(NEIGHBOUR), folder / "b_good.ibt")
    code, text = run_cli(capsys, "import", str(folder), "--data", str(store), "--json")
    assert code != 0
    assert '"status": "failed"' in text and "a_broken.ibt" in text and "header.var_header_offset" in text
    assert '"status": "present"' in text  # the good file (same bytes as the neighbour) is already there


# -- YAML ------------------------------------------------------------------------------

@pytest.mark.parametrize("old,new", [
    (b" TrackName: spielberg gp\n", b" TrackName: [spielberg gp\n"),
    (b" TrackName: spielberg gp\n", b" TrackName: {a: b\n"),
    (b"SessionInfo:\n", b"SessionInfo:\n\t- broken: tab\n"),
], ids=["unclosed-list", "unclosed-map", "tab-indent"])
def test_unparseable_yaml(old: bytes, new: bytes, amg_raw: bytes, tmp_path: Path, store: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    yaml = yaml_of(amg_raw)
    assert old in yaml
    path = write(tmp_path, with_yaml(amg_raw, yaml.replace(old, new, 1)))
    expect_format_error(path, "session info YAML section", store, capsys)


def test_yaml_of_the_wrong_shape_imports_as_unknown(amg_raw: bytes, tmp_path: Path, store: Path) -> None:
    """Sections that are scalars or lists where maps belong do not crash the import."""
    yaml = yaml_of(amg_raw)
    yaml = yaml.replace(b" TrackName: spielberg gp\n", b" TrackName: [a, b]\n", 1)
    yaml = yaml.replace(b" Drivers:\n", b" Drivers: 3\n Dummy:\n", 1)
    path = write(tmp_path, with_yaml(amg_raw, yaml))
    result = import_file(path, store)
    meta = read_meta(store / "track=unknown" / "car=unknown" / f"{result.sessions[0]}.parquet")
    assert (meta["track"], meta["car"], meta["driver"]) == ("unknown", "unknown", "unknown")


def test_yaml_alias_bomb_refused_quickly(amg_raw: bytes, tmp_path: Path, store: Path) -> None:
    """Nested aliases expand to 10**8 items if anyone turns them into text: refused at once
    (iRacing never writes aliases), by the import and by ``pitbox info``."""
    bomb = [b" L0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"]
    for k in range(1, 9):
        bomb.append(f" L{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]\n".encode())
    bomb.append(b" TrackName: *l8\n")
    yaml = yaml_of(amg_raw).replace(b" TrackName: spielberg gp\n", b"".join(bomb), 1)
    path = write(tmp_path, with_yaml(amg_raw, yaml))
    with pytest.raises(IbtFormatError, match="alias"):
        import_file(path, store)
    assert main(["info", str(path)]) == 2


# -- fuzzing ---------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

INTERESTING = [0, 1, -1, 2, 3, 4, 5, 6, 7, 8, 16, 60, 112, 143, 144, 255, 1024, 4096, 65535,
               I32_MAX, I32_MIN, 2**30, -(2**30)]
int32s = st.one_of(st.sampled_from(INTERESTING), st.integers(I32_MIN, I32_MAX))


@pytest.fixture(scope="module")
def fuzz_raw() -> bytes:
    return need(FUZZ_SOURCE).read_bytes()


def bounded_open_and_read(path: Path, tmp: Path) -> None:
    """Open, read every row and import: IbtFormatError, or everything bounded by the file size."""
    size = path.stat().st_size
    tracemalloc.start()
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncatedWarning)
                tf = open_telemetry(path)
        except IbtFormatError:
            return
        with tf:
            assert 0 <= tf.n_rows <= size // tf.header.buf_len
            assert len(tf.variables) <= (size - 112) // 144
            cols = tf.read()
            assert all(len(c) == tf.n_rows for c in cols.values())
            try:
                tf.session_info  # noqa: B018 - parses the YAML
            except IbtFormatError:
                pass
        _, peak = tracemalloc.get_traced_memory()
        assert peak < 4 * size + (8 << 20), f"{peak} bytes allocated for a {size}-byte file"
    finally:
        tracemalloc.stop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # arithmetic on garbage rows (NaN, overflow)
            import_file(path, tmp / "data")
    except IbtFormatError:
        pass


@pytest.mark.timeout(600)
@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(sorted(HEADER_FIELDS)), st.data()), min_size=1, max_size=3))
def test_fuzz_header(changes: list, fuzz_raw: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    raw = fuzz_raw
    for field, data in changes:
        fmt, off = HEADER_FIELDS[field]
        if fmt == "<d":
            value = data.draw(st.floats(allow_nan=True, allow_infinity=True), label=field)
        elif fmt == "<q":
            value = data.draw(st.integers(-(2**63), 2**63 - 1), label=field)
        else:
            value = data.draw(int32s, label=field)
        raw = patched(raw, fmt, off, value)
    tmp = tmp_path_factory.mktemp("fuzz")
    bounded_open_and_read(write(tmp, raw), tmp)


@pytest.mark.timeout(600)
@FUZZ
@given(changes=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["type", "offset", "count", "count_as_time"]),
                                  int32s), min_size=1, max_size=4))
def test_fuzz_var_headers(changes: list, fuzz_raw: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    raw = fuzz_raw
    num_vars = layout_of(raw).num_vars
    for index, field, value in changes:
        if field == "count_as_time":
            value &= 0xFF
        raw = patch_var(raw, index % num_vars, field, value)
    tmp = tmp_path_factory.mktemp("fuzz")
    bounded_open_and_read(write(tmp, raw), tmp)


@pytest.mark.timeout(600)
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_metadata_bytes(flips: list, fuzz_raw: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random bytes anywhere before the rows: header, sub-header, variable headers, YAML."""
    data_offset = layout_of(fuzz_raw).data_offset
    raw = bytearray(fuzz_raw)
    for pos, byte in flips:
        raw[pos % data_offset] = byte
    tmp = tmp_path_factory.mktemp("fuzz")
    bounded_open_and_read(write(tmp, bytes(raw)), tmp)
