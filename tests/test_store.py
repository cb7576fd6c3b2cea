"""Store behaviour beyond the CLI: sessions split by SessionNum, metadata, lap reads."""

from __future__ import annotations

from pathlib import Path

import irsdk
import numpy as np
import pyarrow.parquet as pq

from pitbox.ibt import open_telemetry, write_ibt
from pitbox.store import Store, import_file, read_meta

from conftest import LANGLEY, need


def test_file_with_two_session_nums_becomes_two_sessions(tmp_path: Path) -> None:
    with open_telemetry(need(LANGLEY)) as tf:
        ch = tf.read()
        ch["SessionNum"] = np.where(np.arange(tf.n_rows) < 3000, 0, 1).astype(np.int32)
        src = write_ibt(tmp_path / "two.ibt", ch, tf.session_info_raw, variables=tf.variables,
                        buf_len=tf.header.buf_len, start_date=tf.disk.session_start_date, version=1)
    result = import_file(src, tmp_path / "d")
    assert result.status == "imported" and len(result.sessions) == 2
    cat = Store(tmp_path / "d").sessions()
    assert sorted(cat.samples.tolist()) == [2476, 3000]
    assert [read_meta(p)["session_num"] for p in cat.sort_values("samples", ascending=False).path] == [0, 1]


def test_metadata_and_channel_units(tmp_path: Path) -> None:
    result = import_file(need(LANGLEY), tmp_path)
    path = Store(tmp_path).resolve(result.sessions[0])
    meta = read_meta(path)
    ib = irsdk.IBT()
    ib.open(str(LANGLEY))
    try:
        assert meta["units"] == {n: ib._var_headers_dict[n].unit for n in ib.var_headers_names}
        schema = pq.read_schema(path)
        assert schema.field("Speed").metadata[b"unit"] == b"m/s"
    finally:
        ib.close()
    assert meta["source_name"] == LANGLEY.name and meta["tick_rate"] == 60 and meta["truncated"] is False
    assert meta["session_yaml"].startswith("---\nWeekendInfo:")
    assert (meta["track"], meta["car"], meta["driver"], meta["session_type"]) == ("langley", "skmodified", "Loren Roberts2", "Offline Testing")


def test_read_lap_returns_exactly_that_laps_rows(tmp_path: Path) -> None:
    sid = import_file(need(LANGLEY), tmp_path).sessions[0]
    store = Store(tmp_path)
    laps = store.laps(sid)
    lap = store.read_lap(sid, 1, ["SessionTime", "Lap", "LapDistPct"])
    with open_telemetry(LANGLEY) as tf:
        ref = tf.read(["SessionTime", "Lap"], int(laps.start_row[1]), int(laps.end_row[1]))
    np.testing.assert_array_equal(lap.SessionTime.to_numpy(), ref["SessionTime"])
    assert set(lap.Lap) == {184}
