"""The channel catalogue: regenerable from the real files, classified as iRacing shows it,
and one scalar rule for sub-sampled channels that agrees with iRacing's own scalars."""

from __future__ import annotations

from pathlib import Path

import irsdk
import numpy as np
import pytest

from pitbox import catalogue, catalogue_build
from pitbox.catalogue import ChannelShapeError, UnknownChannel, channel_info, load_catalogue, scalar_view

from conftest import REAL, need

COMMITTED = Path(catalogue.__file__).resolve().parent / "data" / "channels.csv"
IBT_2024 = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"
LIVE_2024 = REAL / "mercedesw13_monza-full_teamjorge-ibt_livedump.bin"
LIVE_2021 = REAL / "rt2000_longbeach_irsdkSharp_livedump.bin"
AMG_2023 = REAL / "mercedesamggt4_spielberg-gp_itelem.ibt"


def _ibt_names(path: Path) -> dict[str, int]:
    """name -> count, read by pyirsdk (independent of our reader)."""
    ibt = irsdk.IBT()
    ibt.open(str(path))
    try:
        return {n: ibt._var_headers_dict[n].count for n in ibt.var_headers_names}
    finally:
        ibt.close()


def _live_names(path: Path) -> dict[str, int]:
    ir = irsdk.IRSDK()
    assert ir.startup(test_file=str(path))
    try:
        return {n: ir._var_headers_dict[n].count for n in ir.var_headers_names}
    finally:
        ir.shutdown()


# -- the committed table ----------------------------------------------------------------


def test_table_regenerates_identically_from_the_real_files(real_dir: Path) -> None:
    assert catalogue_build.build_catalogue_text(real_dir).encode("utf-8") == COMMITTED.read_bytes()


def test_regenerator_command_writes_the_same_bytes(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "channels.csv"
    assert catalogue_build.main([str(real_dir), "--out", str(out)]) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()


def test_regenerator_rejects_a_folder_without_live_dumps(tmp_path: Path) -> None:
    need(IBT_2024)
    (tmp_path / "a.ibt").write_bytes(IBT_2024.read_bytes())
    with pytest.raises(catalogue_build.IbtFormatError, match="live dump"):
        catalogue_build.build_catalogue_text(tmp_path)


def test_every_real_channel_is_catalogued(real_dir: Path) -> None:
    cat = load_catalogue()
    for path in [IBT_2024, AMG_2023, *sorted(real_dir.glob("skmodified*.ibt"))]:
        assert set(_ibt_names(path)) <= set(cat.index), path.name
    for path in sorted(real_dir.glob("*_livedump.bin")):
        assert set(_live_names(path)) <= set(cat.index), path.name


# -- classification against the 2024 pair ------------------------------------------------


def test_2024_pair_classification_matches_pyirsdk_and_the_brief() -> None:
    disk, live = _ibt_names(need(IBT_2024)), _live_names(need(LIVE_2024))
    cat = load_catalogue()
    ref = cat[cat["evidence"] == "reference"]
    disk_only = set(disk) - set(live)
    live_only = set(live) - set(disk)
    float6 = {n for n in set(disk) & set(live) if disk[n] == 1 and live[n] == 6}
    assert set(ref.index[ref["availability"] == "disk"]) == disk_only
    assert set(ref.index[ref["availability"] == "live"]) == live_only
    assert set(ref.index[ref["availability"] == "both"]) == set(disk) & set(live)
    assert set(cat.index[cat["live_float6"]]) == float6
    # the numbers the product brief states for 2024 builds
    assert (len(disk_only), len(live_only), len(float6)) == (29, 76, 18)
    for n in live:
        assert cat.loc[n, "count_live"] == live[n], n


def test_known_facts_about_disk_and_live_channels() -> None:
    cat = load_catalogue()
    for n in ["Lat", "Lon", "Alt", "LFspeed", "RRspeed", "LFtempL", "RFpressure", "LFrideHeight"]:
        assert cat.loc[n, "availability"] == "disk", n
    car_idx = [n for n in cat.index if n.startswith("CarIdx")]
    assert len(car_idx) >= 20
    assert (cat.loc[car_idx, "availability"] == "live").all()
    assert (cat.loc[car_idx, "count_live"] == 64).all()
    for n in ["LatAccel", "LongAccel", "YawRate", "VelocityX", "VelocityY", "VelocityZ"]:
        info = channel_info(n)
        assert (info.count_disk, info.count_live, info.live_float6, info.availability) == (1, 6, True, "both")
    assert channel_info("Speed").unit == "m/s"


def test_interpolation_kinds() -> None:
    cat = load_catalogue()
    integral = cat["type"].isin(["char", "bool", "int", "bitfield"])
    assert (cat.loc[integral, "interpolation"] == "discrete").all()
    assert {n: cat.loc[n, "interpolation"] for n in ["Speed", "Throttle", "LapDist", "SessionTime"]} == dict.fromkeys(
        ["Speed", "Throttle", "LapDist", "SessionTime"], "continuous")
    assert cat.loc["LapDistPct", "interpolation"] == "cyclic"
    assert cat.loc["LapLastLapTime", "interpolation"] == "discrete"  # steps once per lap
    assert cat.loc["LapCurrentLapTime", "interpolation"] == "continuous"
    assert cat.loc["dcBrakeBias", "interpolation"] == "discrete"
    assert channel_info("Gear").discrete


def test_catalogue_is_cached_but_callers_get_copies() -> None:
    a = load_catalogue()
    a.loc["Speed", "unit"] = "furlongs"
    assert load_catalogue().loc["Speed", "unit"] == "m/s"


def test_unknown_channel_raises_our_error() -> None:
    with pytest.raises(UnknownChannel, match="NoSuchChannel"):
        channel_info("NoSuchChannel")


def test_merge_orders_keeps_each_files_order() -> None:
    merged = catalogue_build.merge_orders([["a", "c", "e"], ["a", "b", "c", "d"], ["x", "a"]])
    assert merged == ["x", "a", "b", "c", "d", "e"]


# -- the scalar rule ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [IBT_2024, AMG_2023], ids=["2024", "2023"])
def test_scalar_view_equals_irackings_scalar_on_disk(path: Path) -> None:
    ibt = irsdk.IBT()
    ibt.open(str(need(path)))
    try:
        st = np.array(ibt.get_all("SteeringWheelTorque_ST"))
        scalar = np.array(ibt.get_all("SteeringWheelTorque"))
    finally:
        ibt.close()
    assert st.shape == (len(scalar), 6)
    assert np.array_equal(scalar_view(st, "SteeringWheelTorque_ST"), scalar)
    assert not np.array_equal(st[:, 0], scalar)  # the first sub-sample is not it: the test can fail


def test_scalar_view_equals_irackings_scalar_live_2021() -> None:
    ir = irsdk.IRSDK()
    assert ir.startup(test_file=str(need(LIVE_2021)))
    ir.freeze_var_buffer_latest()
    try:
        for n in ["LatAccel", "LongAccel", "VertAccel", "YawRate", "VelocityX", "VelocityY", "SteeringWheelTorque"]:
            sub = np.array(ir[n + "_ST"], dtype=np.float32)
            assert np.ptp(sub) > 0 or n == "SteeringWheelTorque", n  # a moving car: sub-samples differ
            assert scalar_view(sub[None], n)[0] == np.float32(ir[n]), n
    finally:
        ir.shutdown()


def test_scalar_view_shapes() -> None:
    rows = np.arange(18, dtype=np.float32).reshape(3, 6)
    assert scalar_view(rows).tolist() == [5.0, 11.0, 17.0]
    flat = np.array([1.0, 2.0, 3.0])
    assert scalar_view(flat) is flat
    with pytest.raises(ChannelShapeError, match="CarIdxLapDistPct"):
        scalar_view(np.zeros((3, 64)), "CarIdxLapDistPct")
