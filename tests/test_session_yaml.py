"""Each YAML repair, tested on a real file whose YAML the test breaks on purpose.

The expected value is what the test wrote into the YAML; pyirsdk (the reference reader)
must agree wherever it carries the same repair.
"""

from __future__ import annotations

from pathlib import Path

import irsdk
import pytest
import yaml

from pitbox.errors import IbtFormatError
from pitbox.ibt import open_telemetry, write_ibt
from pitbox.ibt import session_yaml as sy

from conftest import REAL, need

PRACTICE = REAL / "skmodified_langley_iRacingTelemetry_2015-08-24_practice.ibt"


def rewrite(src: Path, dest: Path, edit) -> Path:
    """Copy a real file with its YAML bytes edited (rows and variables unchanged)."""
    with open_telemetry(src) as tf:
        raw = edit(tf.session_info_raw)
        write_ibt(dest, tf.read(), raw, variables=tf.variables, buf_len=tf.header.buf_len,
                  start_date=tf.disk.session_start_date, version=tf.header.version)
    return dest


def pyirsdk_section(path: Path, key: str):
    ir = irsdk.IRSDK()
    ir.startup(test_file=str(path))
    try:
        return ir[key]
    finally:
        ir.shutdown()


def first_driver(info: dict) -> dict:
    return info["DriverInfo"]["Drivers"][0]


@pytest.fixture
def practice() -> Path:
    return need(PRACTICE)


def test_unquoted_driver_name_with_colon_and_quotes(practice: Path, tmp_path: Path) -> None:
    name = 'Mark "Sparky" Logan: #8'
    p = rewrite(practice, tmp_path / "a.ibt", lambda b: b.replace(b"UserName: Mark Logan", f"UserName: {name}".encode(), 1))
    section = sy.split_sections(sy.decode(open_telemetry(p).session_info_raw))["DriverInfo"]
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(section)  # the break is real
    ours = open_telemetry(p).session_info
    assert first_driver(ours)["UserName"] == name
    assert ours["DriverInfo"] == pyirsdk_section(p, "DriverInfo")


def test_value_starting_with_comma(practice: Path, tmp_path: Path) -> None:
    p = rewrite(practice, tmp_path / "b.ibt", lambda b: b.replace(b"TrackCity: Hampton", b"TrackCity: ,Hampton", 1))
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(sy.split_sections(sy.decode(open_telemetry(p).session_info_raw))["WeekendInfo"])
    ours = open_telemetry(p).session_info
    assert ours["WeekendInfo"]["TrackCity"] == ",Hampton"
    assert ours["WeekendInfo"] == pyirsdk_section(p, "WeekendInfo")


def test_undefined_cp1252_byte_becomes_space(practice: Path, tmp_path: Path) -> None:
    p = rewrite(practice, tmp_path / "c.ibt", lambda b: b.replace(b"UserName: Mark Logan", b"UserName: Mark\x81Logan", 1))
    with pytest.raises(UnicodeDecodeError):
        open_telemetry(p).session_info_raw.decode("cp1252")
    ours = open_telemetry(p).session_info
    assert first_driver(ours)["UserName"] == "Mark Logan"
    assert ours["DriverInfo"] == pyirsdk_section(p, "DriverInfo")


def test_cp1252_accented_name_decodes(practice: Path, tmp_path: Path) -> None:
    p = rewrite(practice, tmp_path / "d.ibt", lambda b: b.replace(b"UserName: Mark Logan", "UserName: Jörg Müller".encode("cp1252"), 1))
    ours = open_telemetry(p).session_info
    assert first_driver(ours)["UserName"] == "Jörg Müller"
    assert ours["DriverInfo"] == pyirsdk_section(p, "DriverInfo")


def test_utf8_flagged_yaml_with_inner_quotes(practice: Path, tmp_path: Path) -> None:
    def edit(b: bytes) -> bytes:
        b = b.replace(b"---\nWeekendInfo:\n", b"---\nWeekendInfo:\n Encoding: UTF8\n", 1)
        return b.replace(b"TrackCity: Hampton", 'TrackCity: "Hamp "ton" Ł"'.encode(), 1)

    p = rewrite(practice, tmp_path / "e.ibt", edit)
    assert sy.is_utf8(open_telemetry(p).session_info_raw)
    ours = open_telemetry(p).session_info
    assert ours["WeekendInfo"]["TrackCity"] == 'Hamp "ton" Ł'
    assert ours["WeekendInfo"] == pyirsdk_section(p, "WeekendInfo")


def test_car_number_with_leading_zeros_stays_a_string(practice: Path, tmp_path: Path) -> None:
    """pyirsdk lacks this repair: plain YAML 1.1 reads 007 as the octal int 7."""
    p = rewrite(practice, tmp_path / "f.ibt", lambda b: b.replace(b'CarNumber: "8"', b"CarNumber: 007", 1))
    assert yaml.safe_load("CarNumber: 007")["CarNumber"] == 7
    assert first_driver(open_telemetry(p).session_info)["CarNumber"] == "007"


def test_non_printable_characters_removed(practice: Path, tmp_path: Path) -> None:
    p = rewrite(practice, tmp_path / "g.ibt", lambda b: b.replace(b"UserName: Mark Logan", b"UserName: Mark\x07 Logan", 1))
    ours = open_telemetry(p).session_info
    assert first_driver(ours)["UserName"] == "Mark Logan"
    assert ours["DriverInfo"] == pyirsdk_section(p, "DriverInfo")


def test_unrepairable_yaml_names_file_and_section(practice: Path, tmp_path: Path) -> None:
    p = rewrite(practice, tmp_path / "h.ibt", lambda b: b.replace(b" TrackName: langley", b" TrackName: [langley", 1))
    with pytest.raises(IbtFormatError) as info:
        _ = open_telemetry(p).session_info
    assert "h.ibt" in str(info.value) and "WeekendInfo" in info.value.field


def test_dates_stay_strings_as_in_pyirsdk() -> None:
    assert sy.parse(b"---\nWeekendInfo:\n Date: 2015-05-28\n\n")["WeekendInfo"]["Date"] == "2015-05-28"


def test_yaml_alias_bomb_refused_quickly() -> None:
    """Nested aliases would expand to 10^8 items; iRacing never writes aliases."""
    bomb = "---\nWeekendInfo:\n a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    bomb += "".join(f" {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7))
    with pytest.raises(IbtFormatError) as info:
        sy.parse(bomb.encode() + b"\n")
    assert "alias" in str(info.value)
