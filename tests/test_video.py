"""Coaching videos, checked by decoding what ffmpeg wrote.

Every expected value comes from outside the renderer: car positions from the lap's own
GPS samples (projected here with our own tangent-plane formula, around the track origin of
the session YAML) at the lap's own sample times; cursor positions from the lap's measured
distance samples; the overlay's time from a bar code of the frame number that the test
burns into its own onboard video, against the pedal bars read back from the pixels; the
clip's audio against the tip synthesized separately by the voice engine. The renderer
only tells where its panels are (``result.layout``).
"""

from __future__ import annotations

import json
import re
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imageio_ffmpeg", reason="the video extra (imageio-ffmpeg) is not installed")
pytest.importorskip("PIL", reason="the video extra (Pillow) is not installed")
sim = pytest.importorskip("pitbox.sim", reason="the lap simulator (pitbox.sim) is not installed")

import imageio_ffmpeg  # noqa: E402

import pitbox.analysis as pa  # noqa: E402
from pitbox.cli import main as cli_main  # noqa: E402
from pitbox.video import VideoError, VideoResult, compare_video, overlay_video, probe  # noqa: E402
from pitbox.video.overlay import parse_sync  # noqa: E402

from conftest import LANGLEY, need  # noqa: E402

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SMALL = (480, 270)
LAP_RGB = np.array([255, 150, 20])
REF_RGB = np.array([40, 170, 255])
THR_RGB = np.array([40, 200, 80])
BRK_RGB = np.array([230, 40, 40])
BAR_BITS, BAR_Y, BAR_X0, BAR_W, BAR_STEP = 12, (118, 152), 16, 32, 36


# -- helpers: decoding and reading pixels -------------------------------------------------

def decode(path: Path) -> tuple[dict, list[np.ndarray]]:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    return meta, frames


def ffmpeg_probe(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def decode_audio(path: Path, rate: int) -> np.ndarray:
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.int16).astype(np.float64) / 32768.0


def blob(frame: np.ndarray, rect: list[int], colour: np.ndarray, tol: float = 60.0) -> tuple[float, float, int]:
    """Centroid (x, y) and pixel count of the pixels near ``colour`` inside ``rect``."""
    x0, y0, x1, y1 = rect
    part = frame[y0:y1, x0:x1].astype(np.float64)
    m = np.linalg.norm(part - colour, axis=-1) < tol
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return np.nan, np.nan, 0
    return float(xs.mean() + x0), float(ys.mean() + y0), int(len(xs))


def ring(frame: np.ndarray, rect: list[int], colour: np.ndarray, tol: float = 60.0) -> tuple[float, float, int]:
    """Centre (x, y) of a ring of ``colour`` inside ``rect`` by a least-squares circle fit
    (right even when another car's dot hides part of it), and its pixel count."""
    x0, y0, x1, y1 = rect
    part = frame[y0:y1, x0:x1].astype(np.float64)
    ys, xs = np.nonzero(np.linalg.norm(part - colour, axis=-1) < tol)
    if len(xs) < 5:
        return np.nan, np.nan, len(xs)
    a = np.column_stack([xs, ys, np.ones(len(xs))])
    sol = np.linalg.lstsq(a, -(xs**2 + ys**2).astype(np.float64), rcond=None)[0]
    return float(-sol[0] / 2 + x0), float(-sol[1] / 2 + y0), len(xs)


def project(lat: np.ndarray, lon: np.ndarray, origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """East/north metres on a tangent plane at ``origin`` (WGS84 radii of curvature)."""
    a, e2 = 6378137.0, 0.00669437999014
    lat0 = np.radians(origin[0])
    w = np.sqrt(1 - e2 * np.sin(lat0) ** 2)
    return (a / w * np.cos(lat0) * np.radians(lon - origin[1]), a * (1 - e2) / w**3 * np.radians(lat - origin[0]))


def origin_of(session: pa.Session) -> tuple[float, float]:
    wi = session.info["WeekendInfo"]
    return float(str(wi["TrackLatitude"]).split()[0]), float(str(wi["TrackLongitude"]).split()[0])


def gps_at(lap: pa.Lap, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lap's position [m] at lap times ``t`` from its raw GPS samples."""
    tel = lap.telemetry(["Lat", "Lon"])
    x, y = project(tel.Lat.to_numpy(), tel.Lon.to_numpy(), origin_of(lap.session))
    return np.interp(t, tel.time_s, x), np.interp(t, tel.time_s, y)


def to_px(layout_map: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = layout_map["scale_px_per_m"]
    return layout_map["x0"] + s * x, layout_map["y0"] - s * y


def raw_time_distance(lap: pa.Lap) -> tuple[np.ndarray, np.ndarray]:
    tel = lap.telemetry(["Speed"])
    return tel.time_s.to_numpy(), tel.distance_m.to_numpy()


# -- the store ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A simulated session: 4 timed laps, an early brake at T3 on lap 2 (the one tip)."""
    from pitbox.store import import_paths

    root = tmp_path_factory.mktemp("video")
    sim.simulate_session(track="pitboxsim_demo", laps=4, faults=["2:T3:brake_early:25"], seed=41, out=root / "s.ibt")
    data = root / "data"
    assert import_paths([root / "s.ibt"], data)[0].status == "imported"
    return data, _only_session(data)


def _only_session(data: Path) -> str:
    from pitbox.store import Store

    return str(Store(data).sessions().id.iloc[0])


# -- compare ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sync", ["distance", "time"])
def test_compare_video_cars_and_cursor_are_where_the_laps_say(store: tuple[Path, str], tmp_path: Path,
                                                               sync: str) -> None:
    data, sid = store
    s = pa.load_session(sid, data)
    check_compare(s.lap(2), s.lap(3), data, tmp_path, sync, 300.0, 700.0)


@pytest.mark.real
@pytest.mark.slow
def test_compare_video_of_real_laps(tmp_path: Path) -> None:
    """Two full laps of a real iRacing file (Langley, 2015), read from the .ibt itself."""
    s = pa.load_session(str(need(LANGLEY)))
    check_compare(s.lap(1), s.lap(2), None, tmp_path, "distance", 0.0, s.track_length_m)


@pytest.mark.slow
def test_compare_video_of_a_recording_without_gps(store: tuple[Path, str], tmp_path: Path) -> None:
    """A live recording has no GPS: the map comes from the track model learned from the
    session of the same track that has GPS. The cars must still be where that session's
    GPS puts the same drive (the recording is a copy of it without Lat/Lon/Alt)."""
    from pitbox.ibt import open_telemetry, write_ibt
    from pitbox.store import import_file

    data, sid = store
    gps = pa.load_session(sid, data)
    live_data = tmp_path / "data"
    import_file(_ibt_of(data), live_data)  # the session with GPS, for the track model
    with open_telemetry(_ibt_of(data)) as tf:
        ch = {k: v for k, v in tf.read().items() if k not in ("Lat", "Lon", "Alt")}
        live = write_ibt(tmp_path / "live.ibt", ch, tf.session_info_raw, units={v.name: v.unit for v in tf.variables},
                         types={v.name: v.type for v in tf.variables}, start_date=tf.disk.session_start_date + 1)
    live_id = import_file(live, live_data).sessions[0]
    s = pa.load_session(live_id, live_data)
    r = check_compare(s.lap(2), s.lap(3), live_data, tmp_path, "distance", 300.0, 700.0, truth=(gps.lap(2), gps.lap(3)))
    assert r.meta["map_source"] == "model"


def _ibt_of(data: Path) -> Path:
    return data.parent / "s.ibt"


def check_compare(lap: pa.Lap, ref: pa.Lap, data: Path | None, tmp_path: Path, sync: str, d0: float,
                  d1: float, truth: tuple[pa.Lap, pa.Lap] | None = None) -> VideoResult:
    """Render, decode, and check streams, frames, both cars against the laps' GPS (of
    ``truth``, the same drive with GPS, when the laps have none) and the cursor."""
    fps, hold = 15.0, 0.4
    gps_lap, gps_ref = truth or (lap, ref)
    r = compare_video(lap, ref, tmp_path / "cmp.mp4", data, sync=sync, size=SMALL, fps=fps, start_m=d0, end_m=d1,
                      hold_s=hold)
    # streams, duration, frame count, read by ffmpeg itself
    text = ffmpeg_probe(r.path)
    assert text.count("Stream #") == 1 and "Video: h264" in text and "480x270" in text and "15 fps" in text
    meta, frames = decode(r.path)
    lt, ld = raw_time_distance(lap)
    rt, rd = raw_time_distance(ref)
    t0, t1 = np.interp([d0, d1], ld, lt)
    r0, r1 = np.interp([d0, d1], rd, rt)
    motion = (t1 - t0) if sync == "distance" else max(t1 - t0, r1 - r0)
    assert abs(len(frames) - (motion + hold) * fps) <= 2
    assert len(frames) == r.frames
    assert meta["duration"] == pytest.approx(len(frames) / fps, abs=0.1)

    panels = r.layout["panels"]
    first = panels["delta"]["rect"]
    top, bottom = r.layout["cursor_span"]
    for k in np.linspace(0, len(frames) - 1, 7).astype(int):
        f = frames[k]
        t_lap = min(t0 + k / fps, t1)
        d_lap = np.interp(t_lap, lt, ld)
        # the lap's car: the orange dot, where its GPS puts it at that moment
        ex, ey = to_px(r.layout["map"], *gps_at(gps_lap, np.array([t_lap])))
        x, y, n = blob(f, r.layout["map"]["rect"], LAP_RGB)
        assert n >= 10, f"frame {k}: no orange dot"
        assert np.hypot(x - ex[0], y - ey[0]) <= 3.0, (k, x, y, ex, ey)
        # the reference: a blue ring; at the same distance, or at the same time since the start
        t_ref = np.interp(d_lap, rd, rt) if sync == "distance" else min(r0 + k / fps, r1)
        rx, ry = to_px(r.layout["map"], *gps_at(gps_ref, np.array([t_ref])))
        x, y, n = ring(f, r.layout["map"]["rect"], REF_RGB)
        assert n >= 10 and np.hypot(x - rx[0], y - ry[0]) <= 3.0, (k, x, y, rx, ry)
        # the cursor: the white column over the traces, at the lap's distance
        x0, x1 = first[0], first[2]
        strip = f[top:bottom, x0:x1 + 2].astype(int)
        white = (strip.min(axis=-1) > 215).sum(axis=0)
        cx = x0 + int(np.argmax(white))
        expect = x0 + (d_lap - d0) / (d1 - d0) * (x1 - x0)
        assert white.max() > 0.6 * (bottom - top)
        assert abs(cx - expect) <= 2.0, (k, cx, expect)
    check_compare_elements(r, frames, fps, (lt, ld), (rt, rd), t0, t1)
    return r


GAIN_RGB, LOSS_RGB, TEXT_RGB = np.array([40, 190, 90]), np.array([225, 55, 55]), np.array([230, 232, 236])


def check_compare_elements(r: VideoResult, frames: list[np.ndarray], fps: float, lap_td: tuple, ref_td: tuple,
                           t0: float, t1: float) -> None:
    """Every element the issue names is drawn: the delta ribbon and the speed, throttle,
    brake, steering and gear traces (the lap's and the reference's), both lap timers
    running, and the running delta coloured by its sign (behind: red, ahead: green),
    the sign taken from the laps' own time and distance samples."""
    (lt, ld), (rt, rd) = lap_td, ref_td
    panels = r.layout["panels"]
    assert list(panels) == ["delta", "Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear"]
    mid = frames[len(frames) // 2]
    red, green = blob(mid, panels["delta"]["rect"], LOSS_RGB)[2], blob(mid, panels["delta"]["rect"], GAIN_RGB)[2]
    assert red + green > 20, "no delta ribbon"
    for name in list(panels)[1:]:  # thin lines smeared by 4:2:0 (blue hidden where the laps agree): by hue
        x0, y0, x1, y1 = panels[name]["rect"]
        px = mid[y0:y1, x0:x1].astype(int)
        r_, b_ = px[..., 0], px[..., 2]
        orange, blue = ((r_ > 150) & (r_ > b_ + 80)).sum(), ((b_ > 150) & (b_ > r_ + 80)).sum()
        assert orange > 15 and blue > 3, f"{name}: a trace is missing ({orange} orange, {blue} blue pixels)"
    header = panels["delta"]["rect"][1]
    w = mid.shape[1]
    left, centre, right = [0, 0, w // 3, header], [w // 3, 0, 2 * w // 3, header], [2 * w // 3, 0, w, header]
    k1 = min(len(frames) - 1, int(fps))  # one second in: both timers have moved on
    for side in (left, right):
        x0, y0, x1, y1 = side
        assert blob(frames[0], side, TEXT_RGB)[2] > 30, "a timer is missing"
        assert np.abs(frames[0][y0:y1, x0:x1].astype(int) - frames[k1][y0:y1, x0:x1]).max() > 100, "a timer stands"
    kk = rd[-1] / ld[-1]
    for k in np.linspace(0, len(frames) - 1, 9).astype(int):
        t_lap = min(t0 + k / fps, t1)
        d_lap = np.interp(t_lap, lt, ld)
        delta = t_lap - np.interp(d_lap * kk, rd, rt)
        if abs(delta) < 0.03:
            continue
        red, green = blob(frames[k], centre, LOSS_RGB)[2], blob(frames[k], centre, GAIN_RGB)[2]
        assert (red > 3 * green) if delta > 0 else (green > 3 * red), (k, delta, red, green)


def test_compare_from_the_cli_with_json(store: tuple[Path, str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data, sid = store
    out = tmp_path / "c.mp4"
    rc = cli_main(["video", "compare", f"{sid}:1", f"{sid}:3", "--out", str(out), "--data", str(data),
                   "--size", "320x180", "--fps", "10", "--start", "0", "--end", "150", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["path"] == str(out) and out.is_file() and res["size"] == [320, 180]
    assert probe(out).video_codec == "h264"
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("args, message", [
    (["--size", "321x180"], "even width and height"),
    (["--fps", "0"], "frames per second"),
    (["--start", "500", "--end", "100"], "range"),
])
def test_compare_bad_options_are_one_line_errors(store: tuple[Path, str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], args: list[str],
                                                 message: str) -> None:
    data, sid = store
    rc = cli_main(["video", "compare", f"{sid}:1", f"{sid}:3", "--out", str(tmp_path / "x.mp4"), "--data",
                   str(data), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_progress_bar_counts_the_frames(store: tuple[Path, str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data, sid = store
    r = compare_video(f"{sid}:1", f"{sid}:3", tmp_path / "p.mp4", data, size=(160, 90), fps=5, start_m=0.0,
                      end_m=100.0, progress=True)
    err = capsys.readouterr().err
    assert f"compare:   0%|          | 0/{r.frames} " in err and "frame/s" in err  # a tqdm bar sized to the video
    compare_video(f"{sid}:1", f"{sid}:3", tmp_path / "q.mp4", data, size=(160, 90), fps=5, start_m=0.0,
                  end_m=100.0, progress=False)
    assert capsys.readouterr().err == ""


def test_the_store_from_pitbox_data(store: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data, sid = store
    monkeypatch.setenv("PITBOX_DATA", str(data))
    monkeypatch.chdir(tmp_path)  # no ./data here
    rc = cli_main(["video", "compare", f"{sid}:1", f"{sid}:3", "--out", "e.mp4", "--size", "160x90", "--fps", "5",
                   "--start", "0", "--end", "100", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["frames"] > 0
    monkeypatch.delenv("PITBOX_DATA")
    rc = cli_main(["video", "compare", f"{sid}:1", f"{sid}:3", "--out", "f.mp4"])
    err = capsys.readouterr().err
    assert rc == 2 and sid[:8] in err and "Traceback" not in err and not (tmp_path / "f.mp4").exists()


def test_an_interrupted_render_leaves_no_file(tmp_path: Path) -> None:
    from pitbox.video.encode import encode

    out = tmp_path / "v.mp4"
    out.write_bytes(b"an older video")

    def render(k: int, fb, _src) -> None:
        if k == 5:
            raise RuntimeError("drawing failed")
        fb.data[:] = 128

    with pytest.raises(RuntimeError, match="drawing failed"):
        encode(out, (64, 48), 10, 20, render)
    assert out.read_bytes() == b"an older video"  # the file asked for is not touched
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_colours_survive_our_yuv_frames(tmp_path: Path) -> None:
    """Frames go to ffmpeg as YUV we convert ourselves: ffmpeg's decoder must give the
    colours back (BT.601, limited range, as ffmpeg assumes)."""
    from pitbox.video.canvas import Canvas
    from pitbox.video.encode import encode

    colours = [(255, 150, 20), (40, 170, 255), (40, 200, 80), (230, 40, 40), (255, 255, 255), (16, 18, 22),
               (128, 128, 128), (0, 0, 0)]
    bg = np.zeros((64, 256, 3), np.uint8)
    for i, c in enumerate(colours):
        bg[:, i * 32:(i + 1) * 32] = c
    canvas = Canvas(256, 64, bg)

    def render(k: int, fb, _src) -> None:
        canvas.clear(fb)

    encode(tmp_path / "c.mp4", (256, 64), 10, 3, render, crf=10)
    _, frames = decode(tmp_path / "c.mp4")
    for i, c in enumerate(colours):
        got = frames[1][32, i * 32 + 16].astype(int)
        assert np.abs(got - np.array(c)).max() <= 6, (c, got)


# -- overlay ------------------------------------------------------------------------------

def make_onboard(path: Path, n_frames: int, fps: float, size: tuple[int, int] = SMALL, audio: bool = True) -> None:
    """A test 'onboard video': grey frames carrying their own frame number as a 12-bit bar
    code of big black/white blocks, and a 440 Hz tone."""
    w, h = size
    wav = path.with_suffix(".wav")
    if audio:
        rate = 44100
        t = np.arange(int(n_frames / fps * rate)) / rate
        with wave.open(str(wav), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(rate)
            wf.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).tobytes())
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", quality=None, macro_block_size=2,
                                      output_params=["-preset", "veryfast", "-crf", "23"],
                                      audio_path=str(wav) if audio else None, audio_codec="aac" if audio else None)
    gen.send(None)
    for n in range(n_frames):
        f = np.full((h, w, 3), 128, np.uint8)
        for i in range(BAR_BITS):
            f[BAR_Y[0]:BAR_Y[1], BAR_X0 + BAR_STEP * i:BAR_X0 + BAR_STEP * i + BAR_W] = 255 if (n >> i) & 1 else 0
        gen.send(f)
    gen.close()


def read_barcode(frame: np.ndarray) -> int:
    y0, y1 = BAR_Y
    n = 0
    for i in range(BAR_BITS):
        x = BAR_X0 + BAR_STEP * i
        if frame[y0 + 6:y1 - 6, x + 6:x + BAR_W - 6].mean() > 128:
            n |= 1 << i
    return n


def read_bar(frame: np.ndarray, rect: list[int], colour: np.ndarray) -> float:
    """Fill fraction of a vertical gauge bar, from the pixels of its middle columns."""
    x0, y0, x1, y1 = rect
    mid = frame[y0:y1, x0 + 2:x1 - 2].astype(np.float64)
    filled = (np.linalg.norm(mid - colour, axis=-1) < 70).mean(axis=1) > 0.5
    return float(filled.sum()) / (y1 - y0)


def session_pedals(lap: pa.Lap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Throttle and brake of the whole session against time since ``lap``'s start line."""
    s = lap.session
    ts, th, br = [], [], []
    for i in s.laps.lap_index:
        tel = s.lap(int(i)).telemetry(["Throttle", "Brake"])
        ts.append(tel.time_s.to_numpy() + float(s.lap(int(i)).row.start_s) - float(lap.row.start_s))
        th.append(tel.Throttle.to_numpy())
        br.append(tel.Brake.to_numpy())
    t = np.concatenate(ts)
    o = np.argsort(t, kind="stable")
    return t[o], np.concatenate(th)[o], np.concatenate(br)[o]


def fit_shift(read_thr: np.ndarray, read_brk: np.ndarray, t_true: np.ndarray, pedals: tuple) -> tuple[float, float]:
    """The time shift [s] that best lines the pedal bars read from the frames up with the
    telemetry at the frames' true times, and the RMS misfit there."""
    ts, th, br = pedals
    shifts = np.arange(-0.5, 0.5001, 0.002)
    err = [np.mean((read_thr - np.interp(t_true + s, ts, th)) ** 2 + (read_brk - np.interp(t_true + s, ts, br)) ** 2)
           for s in shifts]
    i = int(np.argmin(err))
    return float(shifts[i]), float(np.sqrt(err[i]))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["positive_offset", "negative_offset", "drifting_clock"])
def test_overlay_time_matches_the_frame(store: tuple[Path, str], tmp_path: Path, case: str) -> None:
    data, sid = store
    s = pa.load_session(sid, data)
    lap = s.lap(2)
    fps = 30.0
    # when the test's camera starts (lap time) and how fast its clock runs
    start, rate, n = {"positive_offset": (-1.2, 1.0, 225),  # video from 1.2 s before the line to T1's braking
                      "negative_offset": (4.3, 1.0, 165),  # the lap had started 4.3 s before the video
                      "drifting_clock": (4.0, 1.03, 165)}[case]  # the camera's clock runs 3 % slow
    src = tmp_path / "onboard.mp4"
    make_onboard(src, n, fps)
    truth = lambda frame: start + rate * frame / fps  # noqa: E731 - lap time shown by source frame n
    if case == "drifting_clock":
        v1, v2 = 0.5, (n - 1) / fps - 0.5
        sync, offset = f"{v1}={truth(v1 * fps)},{v2}={truth(v2 * fps)}", None
    else:
        sync, offset = None, -start
    r = overlay_video(lap, src, tmp_path / "out.mp4", data, offset_s=offset, sync=sync)
    text = ffmpeg_probe(r.path)
    assert "Video: h264" in text and "Audio: aac" in text and "480x270" in text
    _, frames = decode(r.path)
    assert len(frames) == n == r.frames
    # every output frame is its source frame, the bar code intact
    codes = np.array([read_barcode(f) for f in frames])
    assert (codes == np.arange(n)).all()
    for rect in (r.layout["timer"], r.layout["gauges"], r.layout["map"]["rect"]):
        assert rect[3] <= BAR_Y[0] or rect[1] >= BAR_Y[1], "the overlay covers the middle of the picture"
    thr = np.array([read_bar(f, r.layout["throttle"], THR_RGB) for f in frames])
    brk = np.array([read_bar(f, r.layout["brake"], BRK_RGB) for f in frames])
    assert thr.max() > 0.9 and brk.max() > 0.4  # both pedals move in the window
    t_true = truth(codes.astype(float))
    pedals = session_pedals(lap)
    for half in (slice(0, n // 2), slice(n // 2, n)):
        shift, rms = fit_shift(thr[half], brk[half], t_true[half], pedals) if _moves(thr[half], brk[half]) else (0, 0)
        assert abs(shift) <= 1.0 / fps, f"{case}: overlay {shift * 1000:.0f} ms off the frame's time"
        assert rms < 0.08
    # the car on the map: where the lap's GPS puts it at the frame's own time (inside the lap)
    checked = 0
    for k in np.linspace(0, n - 1, 6).astype(int):
        t = truth(float(codes[k]))
        if not 0.0 <= t <= lap.time_s:
            continue
        ex, ey = to_px(r.layout["map"], *gps_at(lap, np.array([t])))
        x, y, npx = blob(frames[k], r.layout["map"]["rect"], LAP_RGB)
        assert npx >= 5 and np.hypot(x - ex[0], y - ey[0]) <= 3.0, (case, k, x, y, ex, ey)
        checked += 1
    assert checked >= 4
    # the source's sound is kept
    audio = decode_audio(r.path, 8000)
    assert len(audio) / 8000 == pytest.approx(n / fps, abs=0.1)
    spec = np.abs(np.fft.rfft(audio[:8000]))
    assert np.fft.rfftfreq(8000, 1 / 8000)[int(np.argmax(spec))] == pytest.approx(440, abs=3)


def _moves(thr: np.ndarray, brk: np.ndarray) -> bool:
    return bool(np.ptp(thr) > 0.5 or np.ptp(brk) > 0.3)


def test_overlay_without_audio_and_errors(store: tuple[Path, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data, sid = store
    src = tmp_path / "silent.mp4"
    make_onboard(src, 20, 10.0, (320, 180), audio=False)
    out = tmp_path / "o.mp4"
    rc = cli_main(["video", "overlay", f"{sid}:1", "--video", str(src), "--out", str(out), "--data", str(data),
                   "--offset", "-2.5", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["has_audio"] is False and res["frames"] == 20 and res["lap_starts_at_video_s"] == -2.5
    rc = cli_main(["video", "overlay", f"{sid}:1", "--video", str(tmp_path / "missing.mp4"), "--out", str(out),
                   "--data", str(data)])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.mp4" in err and "Traceback" not in err
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    assert cli_main(["video", "overlay", f"{sid}:1", "--video", str(not_video), "--out", str(out),
                     "--data", str(data)]) == 2
    assert "notes.mp4" in capsys.readouterr().err


def test_sync_anchors() -> None:
    lap_s = 84.0
    c = parse_sync(None, "10,94.84", lap_s)  # the camera's clock runs 1 % slow over the lap
    assert c.lap_time(10.0) == pytest.approx(0.0) and c.lap_time(94.84) == pytest.approx(lap_s)
    assert c.rate == pytest.approx(84.0 / 84.84)
    c = parse_sync(None, "2=5, 12=15.1", lap_s)
    assert c.lap_time(2.0) == pytest.approx(5.0) and c.lap_time(12.0) == pytest.approx(15.1)
    c = parse_sync(-3.5, None, lap_s)  # the lap started 3.5 s before the video
    assert c.lap_time(0.0) == pytest.approx(3.5) and c.video_time(0.0) == pytest.approx(-3.5)
    for bad in ("10", "a,b", "20,10", "10,30"):  # one anchor, words, reversed, 3x too fast
        with pytest.raises(VideoError):
            parse_sync(None, bad, lap_s)
    with pytest.raises(VideoError, match="not both"):
        parse_sync(1.0, "1,2", lap_s)


# -- clips --------------------------------------------------------------------------------

def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    import io

    with wave.open(io.BytesIO(data)) as wf:
        x = np.frombuffer(wf.readframes(wf.getnframes()), np.int16).astype(np.float64) / 32768.0
        return x, wf.getframerate()


def best_lag(got: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag [samples] within +-max_lag where ``got`` looks most like ``ref``, and the
    normalised correlation there."""
    from scipy.signal import correlate

    g = np.concatenate([np.zeros(max_lag), got, np.zeros(max_lag + len(ref))])
    c = correlate(g, ref, mode="valid", method="fft")[:2 * max_lag + 1]
    csum = np.concatenate([[0.0], np.cumsum(g**2)])
    energy = (csum[len(ref):] - csum[:-len(ref)])[:2 * max_lag + 1]
    norm = c / (np.sqrt(energy) * np.linalg.norm(ref) + 1e-12)
    i = int(np.argmax(norm))
    return i - max_lag, float(norm[i])


def onset_s(x: np.ndarray, rate: int, frac: float = 0.05) -> float:
    """First moment the 10 ms envelope passes ``frac`` of its peak [s]."""
    n = max(1, rate // 100)
    env = np.sqrt(np.convolve(x**2, np.ones(n) / n, mode="same"))
    return float(np.argmax(env > frac * env.max()) / rate)


@pytest.mark.slow
def test_clip_speaks_the_tip_from_its_first_frame(store: tuple[Path, str], tmp_path: Path) -> None:
    voice = pytest.importorskip("pitbox.voice", reason="the voice engine (pitbox.voice, issue 11) is not installed")
    from pitbox.video import tip_clips

    data, sid = store
    tips = pa.coach(pa.analyse(sid, data=data), explain=False).tips
    assert len(tips) >= 1
    tip = tips.sort_values("time_loss_s").iloc[-1].to_dict()
    assert (tip["corner"], tip["fault"]) == ("T3", "brake_early")  # what the simulator injected
    # the tip spoken by the offline voice, on its own (cached: the clip gets the very same audio)
    cache = tmp_path / "voice-cache"
    phrase = voice.tip_phrase(tip)
    speech = next((sp for sp in (voice.Voice(engine="local", cache_dir=cache).synthesize(phrase) for _ in range(3))
                   if sp.engine == "local"), None)
    if speech is None:
        pytest.skip("the offline voice (pyttsx3 + espeak-ng) did not speak on this machine")
    fps = 15.0
    (r,) = tip_clips(sid, tmp_path / "clips", data, voice=voice.Voice(engine="local", cache_dir=cache),
                     size="480x270", fps=fps, top=1)
    assert (r.tip["lap_index"], r.tip["corner"], r.engine) == (tip["lap_index"], "T3", "local")
    text = ffmpeg_probe(r.path)
    assert "Video: h264" in text and "Audio: aac" in text and "480x270" in text
    _, frames = decode(r.path)
    assert len(frames) == r.frames and len(frames) / fps >= speech.duration_s
    # the audio track starts with the tip: same onset, same waveform, nothing after it
    ref, rate = wav_samples(speech.wav)
    got = decode_audio(r.path, rate)
    assert onset_s(got, rate) == pytest.approx(onset_s(ref, rate), abs=0.03)
    max_lag = int(0.1 * rate)
    lag, corr = best_lag(got[:len(ref) + max_lag], ref, max_lag)
    assert corr > 0.8 and abs(lag) / rate <= 0.03, (corr, lag / rate)
    tail = got[len(ref) + max_lag:]
    assert len(tail) == 0 or np.sqrt(np.mean(tail**2)) < 0.01
    # the clip runs from before the reference brakes to after the lap is back on the throttle
    g_lap, g_ref = r.layout["gauges"]
    assert read_bar(frames[0], g_ref["brake"], BRK_RGB) < 0.05 and read_bar(frames[0], g_lap["brake"], BRK_RGB) < 0.05
    assert max(read_bar(f, g_ref["brake"], BRK_RGB) for f in frames) > 0.3
    assert read_bar(frames[-1], g_lap["throttle"], THR_RGB) > 0.3
    index = json.loads((tmp_path / "clips" / "clips.json").read_text())
    assert index["clips"][0]["spoken"] == speech.spoken and index["clips"][0]["path"] == str(r.path)


def test_clips_without_a_voice_are_text_only_with_the_tip_written_in(store: tuple[Path, str], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """No voice: no audio track, and the tip (corner, change) and its cost are written in
    the frames, found by matching text rendered here with the DejaVu fonts against the
    decoded pixels (a wrong corner, change or cost matches clearly worse)."""
    data, sid = store
    tip = pa.coach(pa.analyse(sid, data=data), explain=False).tips.sort_values("time_loss_s").iloc[-1]
    assert tip.corner == "T3"  # the corner the simulator's fault is in
    rc = cli_main(["video", "clips", sid, "--out", str(tmp_path), "--data", str(data), "--voice", "text",
                   "--size", "960x540", "--fps", "4", "--top", "1", "--json"])
    assert rc == 0
    (clip,) = json.loads(capsys.readouterr().out)
    assert clip["engine"] == "text" and clip["spoken"] == "" and clip["has_audio"] is False
    assert "Audio" not in ffmpeg_probe(Path(clip["path"]))
    _, frames = decode(Path(clip["path"]))
    cost = f"{tip.time_loss_s:.2f} s"
    wrong_cost = f"{tip.time_loss_s + 0.21:.2f} s"
    change = str(tip.change)
    wrong_change = re.sub(r"\d", lambda m: str((int(m.group()) + 3) % 10), change, count=1)  # one digit off
    assert wrong_change != change
    for f in (frames[0], frames[-1]):
        band = f[: f.shape[0] // 6]  # the banner over the two columns
        for right, wrong, font in ((cost, wrong_cost, BOLD), ("T3", "T5", BOLD), (change, wrong_change, SANS)):
            good, bad = text_match(band, right, font), text_match(band, wrong, font)
            assert good > 0.9 and good > bad + 0.02, (right, good, wrong, bad)


BOLD, SANS = "DejaVuSans-Bold.ttf", "DejaVuSans.ttf"


def text_match(img: np.ndarray, text: str, font_file: str, sizes: range = range(10, 40)) -> float:
    """Best normalised cross-correlation of ``text`` (light on dark, any size in ``sizes``
    pixels, drawn here with Pillow) anywhere in ``img``."""
    from PIL import Image, ImageDraw, ImageFont
    from scipy.signal import fftconvolve

    try:
        ImageFont.truetype(font_file, 12)
    except OSError:
        pytest.skip(f"font {font_file} (fonts-dejavu-core) is not installed")
    g = img.astype(np.float64).max(axis=-1)
    best = -1.0
    for size in sizes:
        font = ImageFont.truetype(font_file, size)
        left, top, right, bottom = font.getbbox(text)
        im = Image.new("L", (right - left + 4, bottom - top + 4), 0)
        ImageDraw.Draw(im).text((2 - left, 2 - top), text, font=font, fill=255)
        tpl = np.asarray(im, np.float64)
        if tpl.shape[0] > g.shape[0] or tpl.shape[1] > g.shape[1]:
            continue
        tz = tpl - tpl.mean()
        ones = np.ones_like(tpl)
        num = fftconvolve(g, tz[::-1, ::-1], mode="valid")
        s1 = fftconvolve(g, ones, mode="valid")
        s2 = fftconvolve(g**2, ones, mode="valid")
        var = np.maximum(s2 - s1**2 / tpl.size, 1e-9)
        best = max(best, float((num / (np.sqrt(var) * np.linalg.norm(tz))).max()))
    return best


def test_patches_never_overlap_and_keep_every_box() -> None:
    """The canvas groups overlapping drawing boxes into patches: checked against a brute
    force union on random boxes."""
    from pitbox.video.canvas import group_boxes

    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        xy = rng.integers(0, 300, size=(n, 2))
        wh = rng.integers(1, 60, size=(n, 2))
        boxes = [(int(x), int(y), int(x + w), int(y + h)) for (x, y), (w, h) in zip(xy, wh, strict=True)]
        groups = group_boxes(boxes)
        assert sorted(i for _, m in groups for i in m) == list(range(n))
        for i, (a, ma) in enumerate(groups):
            assert a == (min(boxes[j][0] for j in ma), min(boxes[j][1] for j in ma),
                         max(boxes[j][2] for j in ma), max(boxes[j][3] for j in ma))
            for b, _ in groups[i + 1:]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
