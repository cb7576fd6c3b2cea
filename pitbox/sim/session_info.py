"""The session YAML of a simulated file, laid out the way iRacing writes it.

iRacing's style: one-space indentation per level, list items as ``- key: value`` at the
parent's indentation with their other keys two columns further in, sections separated by
a blank line, ``---`` first and ``...`` last. Values are written as strings exactly as
iRacing formats them (``"3.21 km"``, ``"24.52 C"``, quoted car numbers).
"""

from __future__ import annotations

from typing import Any

from pitbox.sim.car import Car
from pitbox.sim.driver import DriverSpec
from pitbox.sim.tracks import Track

Node = dict[str, Any] | list[Any] | str


def emit(node: Node, indent: int = 0) -> list[str]:
    """iRacing-style YAML lines for nested dicts/lists of preformatted strings."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, val in node.items():
            if isinstance(val, dict):
                lines.append(f"{pad}{key}:")
                lines += emit(val, indent + 1)
            elif isinstance(val, list):
                lines.append(f"{pad}{key}:")
                lines += emit(val, indent)
            else:
                lines.append(f"{pad}{key}: {val}".rstrip(" ") if val != "" else f"{pad}{key}: ")
    elif isinstance(node, list):
        for item in node:
            sub = emit(item, indent + 2)
            sub[0] = f"{pad}- " + sub[0][indent + 2:]
            lines += sub
    return lines


def _f(x: float, nd: int) -> str:
    return f"{x:.{nd}f}"


def weekend_info(track: Track, session_id: int, unique_id: int, surface_c: float, air_c: float,
                 date: str) -> dict[str, Any]:
    m = track.meta
    return {
        "TrackName": track.name,
        "TrackID": str(m.get("track_id", 0)),
        "TrackLength": track.track_length_text,
        "TrackLengthOfficial": track.track_length_text,
        "TrackDisplayName": str(m.get("display_name", track.name)),
        "TrackDisplayShortName": str(m.get("display_short_name", track.name)),
        "TrackConfigName": track.config,
        "TrackCity": str(m.get("city", "")),
        "TrackCountry": str(m.get("country", "")),
        "TrackAltitude": f"{track.origin_alt:.2f} m",
        "TrackLatitude": f"{track.origin_lat:.6f} m",
        "TrackLongitude": f"{track.origin_lon:.6f} m",
        "TrackNorthOffset": "0.0000 rad",
        "TrackNumTurns": str(len(track.corners)),
        "TrackPitSpeedLimit": f"{track.pit.speed_limit_kmh:.2f} kph",
        "TrackType": str(m.get("track_type", "road course")),
        "TrackDirection": "neutral",
        "TrackWeatherType": "Static",
        "TrackSkies": "Clear",
        "TrackSurfaceTemp": f"{surface_c:.2f} C",
        "TrackAirTemp": f"{air_c:.2f} C",
        "TrackAirPressure": "29.92 Hg",
        "TrackWindVel": "0.00 m/s",
        "TrackWindDir": "0.00 rad",
        "TrackRelativeHumidity": "50 %",
        "TrackFogLevel": "0 %",
        "TrackCleanup": "0",
        "TrackDynamicTrack": "0",
        "TrackVersion": "pitboxsim.1",
        "SeriesID": "0",
        "SeasonID": "0",
        "SessionID": str(session_id),
        "SubSessionID": str(session_id),
        "SessionUniqueID": str(unique_id),
        "LeagueID": "0",
        "Official": "0",
        "RaceWeek": "0",
        "EventType": "Practice",
        "Category": "Road",
        "SimMode": "full",
        "TeamRacing": "0",
        "MinDrivers": "0",
        "MaxDrivers": "1",
        "DCRuleSet": "None",
        "QualifierMustStartRace": "0",
        "NumCarClasses": "1",
        "NumCarTypes": "1",
        "HeatRacing": "0",
        "BuildType": "Release",
        "BuildTarget": "Members",
        "BuildVersion": "pitboxsim",
        "source": "simulated",
        "WeekendOptions": {
            "NumStarters": "1",
            "StartingGrid": "single file",
            "QualifyScoring": "best lap",
            "CourseCautions": "off",
            "StandingStart": "0",
            "Restarts": "single file",
            "WeatherType": "Static",
            "Skies": "Clear",
            "WeatherTemp": f"{air_c:.2f} C",
            "TimeOfDay": "12:00 pm",
            "Date": date,
            "EarthRotationSpeedupFactor": "1",
            "Unofficial": "1",
            "CommercialMode": "consumer",
            "IsFixedSetup": "0",
            "IncidentLimit": "unlimited",
        },
        "TelemetryOptions": {"TelemetryDiskFile": '""'},
    }


def session_info(laps_done: int, lap_times: dict[int, float], best_lap: int | None, incidents: int = 0,
                 session_type: str = "Practice") -> dict:
    best = lap_times.get(best_lap, -1.0) if best_lap is not None else -1.0
    last = lap_times[max(lap_times)] if lap_times else -1.0
    timed = [t for t in lap_times.values() if t > 0]
    avg = sum(timed) / len(timed) if timed else -1.0
    return {
        "Sessions": [{
            "SessionNum": "0",
            "SessionLaps": "unlimited",
            "SessionTime": "unlimited",
            "SessionNumLapsToAvg": "0",
            "SessionType": session_type,
            "SessionTrackRubberState": "moderate usage",
            "SessionName": session_type.upper(),
            "SessionSubType": "",
            "SessionSkipped": "0",
            "SessionRunGroupsUsed": "0",
            "SessionEnforceTireCompoundChange": "0",
            "ResultsPositions": [{
                "Position": "1",
                "ClassPosition": "0",
                "CarIdx": "0",
                "Lap": str(best_lap or 0),
                "Time": _f(best, 4),
                "FastestLap": str(best_lap or 0),
                "FastestTime": _f(best, 4),
                "LastTime": _f(last, 4),
                "LapsLed": "0",
                "LapsComplete": str(laps_done),
                "JokerLapsComplete": "0",
                "LapsDriven": _f(float(laps_done), 3),
                "Incidents": str(incidents),
                "ReasonOutId": "0",
                "ReasonOutStr": "Running",
            }],
            "ResultsFastestLap": [{"CarIdx": "0", "FastestLap": str(best_lap or 0), "FastestTime": _f(best, 4)}],
            "ResultsAverageLapTime": _f(avg, 4),
            "ResultsNumCautionFlags": "0",
            "ResultsNumCautionLaps": "0",
            "ResultsNumLeadChanges": "0",
            "ResultsLapsComplete": str(laps_done),
            "ResultsOfficial": "0",
        }]
    }


def driver_info(car: Car, driver: DriverSpec, track: Track, est_lap_s: float, setup_name: str = "baseline") -> dict:
    shift = car.redline_rpm - 400
    return {
        "DriverCarIdx": "0",
        "DriverUserID": str(driver.user_id),
        "PaceCarIdx": "-1",
        "DriverCarIsElectric": "0",
        "DriverCarIdleRPM": _f(car.idle_rpm, 3),
        "DriverCarRedLine": _f(car.redline_rpm, 3),
        "DriverCarEngCylinderCount": "8",
        "DriverCarFuelKgPerLtr": "0.750",
        "DriverCarFuelMaxLtr": _f(car.fuel_max_l, 3),
        "DriverCarMaxFuelPct": "1.000",
        "DriverCarGearNumForward": str(len(car.gear_ratios)),
        "DriverCarGearNeutral": "1",
        "DriverCarGearReverse": "1",
        "DriverCarSLFirstRPM": _f(shift - 1000, 3),
        "DriverCarSLShiftRPM": _f(shift, 3),
        "DriverCarSLLastRPM": _f(shift + 100, 3),
        "DriverCarSLBlinkRPM": _f(shift + 200, 3),
        "DriverCarVersion": "pitboxsim.1",
        "DriverPitTrkPct": _f(track.pit.box_pct, 6),
        "DriverCarEstLapTime": _f(est_lap_s, 4),
        "DriverSetupName": f"{setup_name}.sto",
        "DriverSetupIsModified": "0" if setup_name == "baseline" else "1",
        "DriverSetupLoadTypeName": "baseline",
        "DriverSetupPassedTech": "1",
        "DriverIncidentCount": "0",
        "Drivers": [{
            "CarIdx": "0",
            "UserName": driver.name,
            "AbbrevName": "",
            "Initials": "",
            "UserID": str(driver.user_id),
            "TeamID": "0",
            "TeamName": driver.name,
            "CarNumber": f'"{driver.car_number}"',
            "CarNumberRaw": str(int(driver.car_number) if driver.car_number.isdigit() else 0),
            "CarPath": car.car_path,
            "CarClassID": "0",
            "CarID": str(car.car_id),
            "CarIsPaceCar": "0",
            "CarIsAI": "0",
            "CarIsElectric": "0",
            "CarScreenName": car.screen_name,
            "CarScreenNameShort": car.screen_name_short,
            "CarClassShortName": "",
            "CarClassRelSpeed": "0",
            "CarClassLicenseLevel": "0",
            "CarClassMaxFuelPct": "1.000 %",
            "CarClassWeightPenalty": "0.000 kg",
            "CarClassPowerAdjust": "0.000 %",
            "CarClassDryTireSetLimit": "0 %",
            "CarClassColor": "0xffffff",
            "CarClassEstLapTime": _f(est_lap_s, 4),
            "IRating": "1",
            "LicLevel": "1",
            "LicSubLevel": "1",
            "LicString": "R 0.01",
            "LicColor": "0xundefined",
            "IsSpectator": "0",
            "CarDesignStr": "1,FF0000,00FF00,0000FF",
            "HelmetDesignStr": "1,ffffff,000000,ff0000",
            "SuitDesignStr": "1,ffffff,000000,ff0000",
            "CarNumberDesignStr": "0,0,FFFFFF,777777,000000",
            "CarSponsor_1": "0",
            "CarSponsor_2": "0",
            "CurDriverIncidentCount": "0",
            "TeamIncidentCount": "0",
        }],
    }


def split_time_info(track: Track) -> dict:
    return {"Sectors": [{"SectorNum": str(i), "SectorStartPct": _f(p, 6)} for i, p in enumerate(track.sectors)]}


def car_setup(fuel_l: float, items: dict[str, dict[str, str]] | None = None) -> dict:
    """The ``CarSetup`` section: tyre pressures, fuel, and ``items`` (extra sections of
    preformatted values, e.g. ``{"Aero": {"RearWingAngle": "9.0 deg"}}``)."""
    setup: dict[str, Any] = {
        "UpdateCount": "1",
        "Tires": {side: {"StartingPressure": "165 kPa", "LastHotPressure": "165 kPa"}
                  for side in ("LeftFront", "LeftRear", "RightFront", "RightRear")},
        "Chassis": {"Rear": {"FuelLevel": f"{fuel_l:.1f} L"}},
    }
    for section, values in (items or {}).items():
        setup.setdefault(section, {}).update(values)
    return setup


def render(sections: dict[str, Node]) -> str:
    """The whole YAML text: ``---``, sections separated by blank lines, ``...``."""
    parts = ["---"]
    for name, node in sections.items():
        parts.extend(emit({name: node}))
        parts.append("")
    parts.append("...")
    return "\n".join(parts) + "\n"


def track_temps(seed_uniform: float, seed_uniform2: float) -> tuple[float, float]:
    """Air and track temperatures (C) from two uniforms in [0, 1)."""
    air = 16.0 + 14.0 * seed_uniform
    return round(air + 8.0 + 10.0 * seed_uniform2, 2), round(air, 2)
