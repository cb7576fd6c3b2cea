"""Reader contract: every real file read by pitbox equals what pyirsdk, the reference reader, gives.

One class of checks run over every real ``.ibt`` and live dump (the contract suite); the
simulator's files join it in tests/test_sim*.py through :func:`assert_matches_pyirsdk`.
"""

from __future__ import annotations

from pathlib import Path

import irsdk
import numpy as np
import pytest

from pitbox.errors import IbtFormatError
from pitbox.ibt import open_telemetry
from pitbox.ibt.reader import detect_kind

from conftest import INVALID_IBT, need


def _as_ref(values: object, like: np.ndarray) -> np.ndarray:
    ref = np.array(values)
    return ref.astype("S1") if like.dtype.kind == "S" else ref


def assert_matches_pyirsdk(path: Path) -> None:
    """Every channel of an .ibt equals pyirsdk's ``IBT.get_all``, arrays included, dtype-exact."""
    tf = open_telemetry(path)
    ours = tf.read()
    ib = irsdk.IBT()
    ib.open(str(path))
    try:
        assert sorted(ours) == sorted(ib.var_headers_names)
        for name, values in ours.items():
            ref = _as_ref(ib.get_all(name), values)
            assert values.shape == ref.shape, name
            np.testing.assert_array_equal(values, ref.astype(values.dtype), err_msg=name)
            vh = ib._var_headers_dict[name]
            v = tf.channels[name]
            assert (v.unit, v.desc, v.count, int(v.type)) == (vh.unit, vh.desc, vh.count, vh.type), name
    finally:
        ib.close()
        tf.close()


def assert_yaml_matches_pyirsdk(path: Path) -> None:
    """The session YAML equals pyirsdk's parse, section by section (pyirsdk parses one at a time)."""
    tf = open_telemetry(path)
    ir = irsdk.IRSDK()
    ir.startup(test_file=str(path))
    try:
        assert tf.session_info, "no YAML sections"
        for key, section in tf.session_info.items():
            assert section == ir[key], key
    finally:
        ir.shutdown()
        tf.close()


def test_ibt_channels_equal_pyirsdk(real_ibt: Path) -> None:
    assert_matches_pyirsdk(real_ibt)


def test_ibt_yaml_equals_pyirsdk(real_ibt: Path) -> None:
    assert_yaml_matches_pyirsdk(real_ibt)


def test_ibt_row_count_is_disk_record_count(real_ibt: Path) -> None:
    with open_telemetry(real_ibt) as tf:
        assert tf.kind == "ibt" and not tf.truncated
        assert tf.n_rows == tf.disk.session_record_count
        assert tf.n_rows == (real_ibt.stat().st_size - tf.header.var_buf[0][1]) // tf.header.buf_len


def test_chunked_read_equals_whole_read(real_ibt: Path) -> None:
    with open_telemetry(real_ibt) as tf:
        whole = tf.read()
        parts = list(tf.iter_chunks(chunk_rows=777))
    for name, values in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), values, err_msg=name)


def test_live_dump_equals_pyirsdk_frozen_latest(real_dump: Path) -> None:
    ir = irsdk.IRSDK()
    ir.startup(test_file=str(real_dump))
    ir.freeze_var_buffer_latest()
    try:
        with open_telemetry(real_dump) as tf:
            assert tf.kind == "livedump" and tf.n_rows == 1
            row = tf.read()
            assert sorted(row) == sorted(ir.var_headers_names)
            for name, values in row.items():
                np.testing.assert_array_equal(values[0], _as_ref(ir[name], values).astype(values.dtype), err_msg=name)
            for key, section in tf.session_info.items():
                assert section == ir[key], key
    finally:
        ir.shutdown()


def test_live_dump_arrays_and_float6(real_dir: Path) -> None:
    """The 2024 dump holds CarIdx arrays of 64 and float[6] LatAccel, kept as arrays."""
    with open_telemetry(need(real_dir / "mercedesw13_monza-full_teamjorge-ibt_livedump.bin")) as tf:
        ch = tf.channels
        assert ch["CarIdxLapDistPct"].count == 64
        assert ch["LatAccel"].count == 6
        assert tf.read(["LatAccel"])["LatAccel"].shape == (1, 6)


def test_header_only_open_reads_no_rows(real_ibt: Path) -> None:
    """Opening reads the header, variables and YAML, never the rows (cataloguing stays cheap)."""
    with open_telemetry(real_ibt) as tf:
        assert tf._f.tell() <= tf.header.var_buf[0][1]  # the file position never reached the first row


def test_detect_kind(real_ibt: Path, real_dump: Path) -> None:
    assert detect_kind(real_ibt) == "ibt"
    assert detect_kind(real_dump) == "livedump"


def test_invalid_truncated_fixture_raises_naming_the_field() -> None:
    with pytest.raises(IbtFormatError) as info:
        open_telemetry(need(INVALID_IBT))
    assert info.value.field == "header.ver" and INVALID_IBT.name in str(info.value)


def test_bool_bitfield_char_types_preserved(real_dir: Path) -> None:
    with open_telemetry(need(real_dir / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt")) as tf:
        cols = tf.read(["OnPitRoad", "SessionFlags", "Lap"])
    assert cols["OnPitRoad"].dtype == np.bool_
    assert cols["SessionFlags"].dtype == np.uint32
    assert cols["Lap"].dtype == np.int32


def test_real_file_written_again_reads_the_same(real_ibt: Path, tmp_path: Path) -> None:
    """The writer: a real file read and written again gives the same channels and YAML, for
    our reader and for pyirsdk (IBT and IRSDK().startup(test_file=...))."""
    from pitbox.ibt import write_ibt

    with open_telemetry(real_ibt) as tf:
        cols = tf.read()
        copy = write_ibt(tmp_path / real_ibt.name, cols, tf.session_info_raw, variables=tf.variables,
                         buf_len=tf.header.buf_len, start_date=tf.disk.session_start_date, version=tf.header.version)
        info = tf.session_info
    with open_telemetry(copy) as again:
        assert again.session_info == info
        for name, values in again.read().items():
            np.testing.assert_array_equal(values, cols[name], err_msg=name)
    assert_matches_pyirsdk(copy)
    assert_yaml_matches_pyirsdk(copy)
