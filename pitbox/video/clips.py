"""``pitbox video clips``: one short clip per coaching tip, the tip spoken.

Each clip runs from before the reference's brake point (1.5 s at the reference's speed
there, earlier when the lap brakes first) to the corner's exit (or the later throttle
pickup) and a little beyond. The lap (left) and the reference (right) run side by side
on their own clocks from the same point of the track, each on a zoomed map with its
inputs; below, both laps' speed, throttle and brake over the clip's stretch with both
cursors, the brake points marked, and the time lost so far in the stretch. The tip and
its cost are written in, and spoken on the audio track from the first frame by the voice
engine (:mod:`pitbox.voice`; ElevenLabs, the offline voice, or text only when there is
no voice).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pitbox.video import draw as D
from pitbox.video.canvas import Canvas, FrameBuffer
from pitbox.video.common import DEFAULT_FPS, VideoResult, check_fps, parse_size
from pitbox.video.encode import DEFAULT_CRF, DEFAULT_PRESET, encode
from pitbox.video.errors import VideoError
from pitbox.video.timeline import LapData, Timeline, lap_pair, timeline

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

LEAD_S = 1.5  #: seconds (at the reference's speed) before the earlier brake point
TAIL_S = 0.8  #: seconds after the exit
SPEECH_PAD_S = 0.4  #: still frames after the speech ends, when it is longer than the drive
FAULT_WORDS = {"brake_early": "braking early", "brake_late": "braking late", "low_min_speed": "slow apex",
               "late_throttle": "late on the throttle", "coasting": "coasting", "lockup": "locking up"}


@dataclass
class ClipResult(VideoResult):
    """A tip's clip: the video, the tip, what was spoken and by which engine."""

    tip: dict[str, Any] = field(default_factory=dict)
    spoken: str = ""  #: the text synthesized ("" when no voice spoke)
    engine: str = "text"  #: voice engine: "elevenlabs", "local" or "text" (no audio)
    speech_s: float = 0.0  #: duration of the speech [s]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "tip": self.tip, "spoken": self.spoken, "engine": self.engine,
                "speech_s": round(self.speech_s, 3)}


def clip_window(ref: LapData, lap: LapData, corner: Any, ref_row: dict[str, Any], lap_row: dict[str, Any]
                ) -> tuple[float, float]:
    """The clip's stretch in the lap's metres: from :data:`LEAD_S` before the earlier brake
    point (or the corner's turn-in) to :data:`TAIL_S` after the later of the exit and the
    throttle pickups; kept inside the lap."""
    k = ref.length_m / lap.length_m
    starts = [corner.start_m]
    ends = [corner.end_m]
    for row, kk in ((ref_row, 1.0), (lap_row, k)):
        bp, tp = row.get("brake_point_m"), row.get("throttle_pickup_m")
        if bp is not None and np.isfinite(bp):
            starts.append(float(bp) * kk)
        if tp is not None and np.isfinite(tp):
            ends.append(float(tp) * kk)
    s, e = min(starts), max(ends)
    v_s = max(float(ref.value_at("Speed", s)) if "Speed" in ref.channels else 30.0, 10.0)
    v_e = max(float(ref.value_at("Speed", e)) if "Speed" in ref.channels else 30.0, 10.0)
    d0 = max(0.0, (s - LEAD_S * v_s)) / k
    d1 = min(ref.length_m, e + TAIL_S * v_e) / k
    return d0, min(d1, lap.length_m)


class ClipScene:
    """Side-by-side drawing of one tip's clip."""

    def __init__(self, a: LapData, b: LapData, delta_distance_m: np.ndarray, delta_s: np.ndarray, tl: Timeline,
                 tip: dict[str, Any], marks: dict[str, float | None], size: tuple[int, int], note: str):
        self.a, self.b, self.tl, self.tip = a, b, tl, tip
        self.k = b.length_m / a.length_m
        w, h = size
        self.w, self.h = w, h
        u = self.u = h / 720.0
        self.pad = pad = max(4, round(12 * u))
        # the lap's loss since the start of the stretch
        d0 = tl.start_m
        self.delta_d = np.asarray(delta_distance_m) / self.k
        self.section = np.asarray(delta_s) - float(np.interp(d0 * self.k, delta_distance_m, delta_s))
        self.section_now = self.section_at(tl.d_lap)
        banner = round(112 * u)
        bottom_h = round(238 * u)
        col_w = (w - 3 * pad) // 2
        top, bot = banner + pad, h - bottom_h - pad
        self.cols = [(pad, top, pad + col_w, bot), (2 * pad + col_w, top, w - pad, bot)]
        # trace strip
        names = ["section"] + [c for c in ("Speed", "Throttle", "Brake") if c in a.channels and c in b.channels]
        weights = {"section": 1.0, "Speed": 1.3, "Throttle": 0.8, "Brake": 0.8}
        y, y_end, gap = h - bottom_h, h - pad - round(18 * u), max(2, round(4 * u))
        avail = y_end - y - gap * (len(names) - 1)
        total = sum(weights[n] for n in names)
        self.panels: dict[str, D.TracePanel] = {}
        for i, n in enumerate(names):
            ph = round(avail * weights[n] / total) if i < len(names) - 1 else y_end - y
            if n == "section":
                m = (self.delta_d >= d0) & (self.delta_d <= tl.end_m)
                v0, v1 = D.nice_range([self.section[m] if m.any() else np.zeros(1)], floor=0.05)
                v0, v1 = min(v0, -0.02), max(v1, 0.02)
            elif n in ("Throttle", "Brake"):
                v0, v1 = -0.05, 1.08
            else:
                vals = [a.channels[n][(a.distance_m >= d0) & (a.distance_m <= tl.end_m)],
                        b.channels[n][(b.distance_m >= d0 * self.k) & (b.distance_m <= tl.end_m * self.k)]]
                v0, v1 = D.nice_range(vals, floor=1.0)
            self.panels[n] = D.TracePanel(n, (pad, y, w - pad, y + ph), d0, tl.end_m, v0, v1)
            y += ph + gap
        self.strip = (h - bottom_h, y_end)
        self.marks = marks
        # the zoomed maps: the stretch of both laps, the same zoom on both sides
        self.maps = []
        pts_x, pts_y = [], []
        for lap, kk in ((a, 1.0), (b, self.k)):
            m = (lap.distance_m >= d0 * kk) & (lap.distance_m <= tl.end_m * kk)
            pts_x.append(lap.x_m[m])
            pts_y.append(lap.y_m[m])
        px, py = np.concatenate(pts_x), np.concatenate(pts_y)
        for c in self.cols:
            mr = self._map_rect(c)
            self.maps.append(D.fit_map(px, py, mr, margin=0.12))
        self.canvas = Canvas(w, h, self._background(note))
        self._pre()

    def section_at(self, d_lap: np.ndarray) -> np.ndarray:
        return np.interp(d_lap, self.delta_d, self.section)

    def _map_rect(self, col: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = col
        u = self.u
        return x0, y0 + round(44 * u), x1 - round(150 * u), y1

    def _gauges(self, col: tuple[int, int, int, int]) -> dict[str, Any]:
        x0, y0, x1, y1 = col
        u = self.u
        gx = x1 - round(142 * u)
        bw = max(4, round(22 * u))
        by0, by1 = y0 + round(70 * u), y1 - round(14 * u)
        return {"throttle": (gx + round(10 * u), by0, gx + round(10 * u) + bw, by1),
                "brake": (gx + round(42 * u), by0, gx + round(42 * u) + bw, by1),
                "speed": (x1 - round(34 * u), y0 + round(72 * u)), "gear": (x1 - round(34 * u), y0 + round(140 * u))}

    # -- static ---------------------------------------------------------------------------
    def _background(self, note: str) -> np.ndarray:
        from PIL import Image, ImageDraw

        im = Image.new("RGB", (self.w, self.h), D.BACKGROUND)
        d = ImageDraw.Draw(im)
        self._banner(d, note)
        for i, (col, lap, colour) in enumerate(zip(self.cols, (self.a, self.b), (D.LAP, D.REF), strict=True)):
            self._column(im, d, i, col, lap, colour)
        self._strip(d)
        return np.asarray(im).copy()

    def _banner(self, d: ImageDraw.ImageDraw, note: str) -> None:
        u, pad, tip = self.u, self.pad, self.tip
        fault = FAULT_WORDS.get(str(tip.get("fault")), str(tip.get("fault", "")).replace("_", " "))
        d.text((pad, round(10 * u)), f"{tip.get('corner')}  ·  lap {tip.get('lap')}  ·  {fault}",
               font=D.font(30 * u, "bold"), fill=D.TEXT, anchor="la")
        d.text((pad, round(52 * u)), str(tip.get("change", "")), font=D.font(22 * u), fill=D.TEXT, anchor="la")
        d.text((pad, round(86 * u)), note, font=D.font(15 * u), fill=D.MUTED, anchor="la")
        d.text((self.w - pad, round(10 * u)), "costs", font=D.font(16 * u), fill=D.MUTED, anchor="ra")
        d.text((self.w - pad, round(32 * u)), f"{float(tip.get('time_loss_s', 0.0)):.2f} s",
               font=D.font(44 * u, "bold"), fill=D.LOSS, anchor="ra")

    def _column(self, im: Image.Image, d: ImageDraw.ImageDraw, i: int, col: tuple[int, int, int, int],
                lap: LapData, colour: D.RGB) -> None:
        u = self.u
        x0, y0, x1, y1 = col
        d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=D.PANEL)
        d.text((x0 + 10 * u, y0 + 8 * u), lap.label, font=D.font(22 * u, "bold"), fill=colour, anchor="la")
        tf = self.maps[i]
        # the whole lap's line (clipped by the panel), then the brake points
        mr = tf.rect
        from PIL import Image, ImageDraw  # noqa: F811 - the runtime import of the names typed above

        sub = Image.new("RGB", (mr[2] - mr[0], mr[3] - mr[1]), D.PANEL)
        sd = ImageDraw.Draw(sub)
        shifted = D.MapTransform(tf.scale, tf.x0 - mr[0], tf.y0 - mr[1], (0, 0, mr[2] - mr[0], mr[3] - mr[1]))
        D.draw_track(sd, shifted, self.b.x_m, self.b.y_m, max(6, 16 * u), None)
        for name, which, c in (("ref_brake_m", self.b, D.REF), ("lap_brake_m", self.a, D.LAP)):
            m = self.marks.get(name)
            if m is None or not np.isfinite(m):
                continue
            px, py = shifted(*which.xy_at(m))
            r = max(3, 7 * u)
            sd.rectangle([float(px) - r, float(py) - r, float(px) + r, float(py) + r], outline=c, width=max(1, round(3 * u)))
        im.paste(sub, (mr[0], mr[1]))
        g = self._gauges(col)
        for key, lab in (("throttle", "THR"), ("brake", "BRK")):
            r = g[key]
            d.rectangle([r[0] - 1, r[1] - 1, r[2], r[3]], outline=D.GRID, width=1)
            d.text(((r[0] + r[2]) / 2, r[1] - 4 * u), lab, font=D.font(12 * u), fill=D.MUTED, anchor="md")
        sx, sy = g["speed"]
        d.text((sx, sy - 4 * u), "km/h", font=D.font(12 * u), fill=D.MUTED, anchor="md")
        gx, gy = g["gear"]
        d.text((gx, gy - 4 * u), "gear", font=D.font(12 * u), fill=D.MUTED, anchor="md")

    def _strip(self, d: ImageDraw.ImageDraw) -> None:
        u = self.u
        fs = 13 * u
        for n, p in self.panels.items():
            if n == "section":
                D.draw_delta_ribbon(d, p, self.delta_d, self.section, "time lost in this stretch s", fs)
            else:
                label, f, _ = D.DISPLAY[n]
                pv = D.TracePanel(n, p.rect, p.d0, p.d1, p.v0 * f, p.v1 * f)
                D.draw_trace_panel(d, pv, [self.b.distance_m / self.k, self.a.distance_m],
                                   [self.b.channels[n] * f, self.a.channels[n] * f], [D.REF, D.LAP], label, fs,
                                   width=max(1, round(2 * u)))
        top, bottom = self.strip
        p0 = next(iter(self.panels.values()))
        for name, c in (("ref_brake_m", D.REF), ("lap_brake_m", D.LAP)):
            m = self.marks.get(name)
            if m is not None and np.isfinite(m) and p0.d0 <= m <= p0.d1:
                x = float(p0.x(m))
                for yy in range(top, bottom, max(4, round(10 * u))):  # dashed
                    d.line([(x, yy), (x, min(yy + max(2, round(5 * u)), bottom))], fill=c, width=1)
        from pitbox.video.compare import draw_ticks

        draw_ticks(d, list(self.panels.values())[-1], u)

    # -- per frame ----------------------------------------------------------------------
    def _pre(self) -> None:
        tl = self.tl
        self.pos = [self.maps[0](*self.a.xy_at(tl.d_lap)), self.maps[1](*self.b.xy_at(tl.d_ref))]
        p0 = next(iter(self.panels.values()))
        self.cur = [np.clip(p0.x(d), p0.rect[0], p0.rect[2] - 1) for d in (tl.d_lap, tl.d_ref / self.k)]
        self.vals = []
        for lap, d in ((self.a, tl.d_lap), (self.b, tl.d_ref)):
            self.vals.append({n: lap.value_at(n, d) for n in ("Speed", "Throttle", "Brake", "Gear") if n in lap.channels})
        f = D.font(30 * self.u, "mono")
        b = f.getbbox("8:88.888", anchor="ra")
        self.timer_box = (b[0] - 4, b[1], b[2] + 2, b[3] + 4)

    def ops(self, k: int) -> list[Any]:
        u, tl = self.u, self.tl
        ops: list[Any] = []
        top, bottom = self.strip
        ops.append(D.Line(((float(self.cur[1][k]), top), (float(self.cur[1][k]), bottom)), D.REF_CURSOR,
                          max(1, round(2 * u))))
        ops.append(D.Line(((float(self.cur[0][k]), top), (float(self.cur[0][k]), bottom)), D.CURSOR,
                          max(2, round(2 * u))))
        sec = float(self.section_now[k])
        p = self.panels["section"]
        x1, y0 = p.rect[2] - round(6 * u), p.rect[1] + round(2 * u)
        box = (x1 - round(110 * u), y0, x1, y0 + round(22 * u))
        ops.append(D.Rect(*box, D.PANEL))  # readable over the ribbon
        ops.append(D.Text(x1 - round(6 * u), y0 + round(2 * u), D.signed(sec, 2) + " s", 16 * u, D.delta_colour(sec),
                          "ra", "mono", box=box))
        for i, (col, t) in enumerate(zip(self.cols, (tl.t_lap[k], tl.t_ref[k]), strict=True)):
            x0, y0c, x1c, _ = col
            tx, ty = x1c - round(10 * u), y0c + round(6 * u)
            b = self.timer_box
            ops.append(D.Text(tx, ty, D.mmss(float(t)), 30 * u, D.TEXT, "ra", "mono",
                              box=(tx + b[0], ty + b[1], tx + b[2], ty + b[3])))
            g = self._gauges(col)
            v = self.vals[i]
            for key, name, colour in (("throttle", "Throttle", D.THROTTLE), ("brake", "Brake", D.BRAKE)):
                if name in v:
                    r = g[key]
                    val = float(np.clip(v[name][k], 0.0, 1.0))
                    ops.append(D.Rect(r[0], round(r[3] - val * (r[3] - r[1])), r[2], r[3], colour))
            if "Speed" in v:
                sx, sy = g["speed"]
                ops.append(D.Text(sx, sy, f"{float(v['Speed'][k]) * 3.6:.0f}", 34 * u, D.TEXT, "ma", "bold",
                                  box=(sx - 34 * u, sy, sx + 34 * u, sy + 40 * u)))
            if "Gear" in v:
                gx, gy = g["gear"]
                ops.append(D.Text(gx, gy, f"{int(v['Gear'][k])}", 40 * u, D.LAP if i == 0 else D.REF, "ma", "bold",
                                  box=(gx - 30 * u, gy, gx + 30 * u, gy + 46 * u)))
            px, py = self.pos[i]
            colour = D.LAP if i == 0 else D.REF
            ops.append(D.Dot(float(px[k]), float(py[k]), max(5.0, 11 * u), colour, (0, 0, 0)))
        return ops

    def render(self, k: int, fb: FrameBuffer, _src: Any = None) -> None:
        self.canvas.clear(fb)
        self.canvas.draw(fb, self.ops(k))

    def layout_info(self) -> dict[str, Any]:
        return {"maps": [m.to_dict() for m in self.maps], "columns": [list(c) for c in self.cols],
                "gauges": [{k: list(v) for k, v in self._gauges(c).items()} for c in self.cols],
                "panels": {n: p.to_dict() for n, p in self.panels.items()}, "strip": list(self.strip)}


def _voice(voice: Any) -> Any:
    """A :class:`pitbox.voice.Voice` (from an engine name), or None when the voice engine is
    not installed."""
    if voice is None or not isinstance(voice, str):
        return voice
    try:
        from pitbox.voice import Voice
    except ImportError as exc:
        log.warning("no voice engine (%s): clips get the tip as text only", exc)
        return None
    return Voice(engine=voice)


def _phrase(tip: dict[str, Any]) -> str:
    try:
        from pitbox.voice import tip_phrase
    except ImportError:
        return f"{tip.get('corner')}: {tip.get('change')}"
    return tip_phrase(tip)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def tip_clips(session: Any, out_dir: str | os.PathLike[str], data: str | os.PathLike[str] | None = None, *,
              reference: object = None, voice: Any = "auto", size: tuple[int, int] | str | None = None,
              fps: float = DEFAULT_FPS, top: int | None = None, laps: list[int] | None = None,
              preset: str = DEFAULT_PRESET, crf: int = DEFAULT_CRF, workers: int | None = None,
              progress: bool | None = None) -> list[ClipResult]:
    """One clip per coaching tip of ``session`` (see the module docs) in ``out_dir``, and an
    index ``clips.json`` beside them.

    The tips are :func:`pitbox.analysis.coach`'s for the session against ``reference``
    (default the fastest valid lap); ``top`` keeps the costliest N, ``laps`` only those
    lap indices. ``voice`` is an engine name for :class:`pitbox.voice.Voice` ("auto",
    "elevenlabs", "local", "text") or a ``Voice``.
    """
    from pitbox.analysis import analyse, coach, load_session

    s = load_session(session, data)
    a = analyse(s, reference, data)
    tips = coach(a, explain=False).tips
    if laps is not None:
        tips = tips[tips.lap_index.isin([int(i) for i in laps])]
    if top is not None:
        tips = tips.sort_values("time_loss_s", ascending=False).head(int(top))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    v = _voice(voice)
    results = []
    for _, row in tips.iterrows():
        tip = {k: (val.item() if hasattr(val, "item") else val) for k, val in row.to_dict().items()}
        results.append(tip_clip(a, tip, out / f"lap{int(tip['lap_index']):02d}_{_slug(str(tip['corner']))}_"
                                f"{_slug(str(tip['fault']))}.mp4", data, voice=v, size=size, fps=fps, preset=preset,
                                crf=crf, workers=workers, progress=progress))
    index = {"session": s.id, "reference": a.reference.label, "clips": [r.to_dict() for r in results]}
    (out / "clips.json").write_text(json.dumps(index, indent=1, default=str), encoding="utf-8")
    return results


def tip_clip(a: Any, tip: dict[str, Any], out: str | os.PathLike[str], data: str | os.PathLike[str] | None = None,
             *, voice: Any = "auto", size: tuple[int, int] | str | None = None, fps: float = DEFAULT_FPS,
             preset: str = DEFAULT_PRESET, crf: int = DEFAULT_CRF, workers: int | None = None,
             progress: bool | None = None) -> ClipResult:
    """The clip of one tip (a row of ``coach(a).tips`` as a dict) of the analysed session ``a``."""
    t0 = time.perf_counter()
    wh = parse_size(size)
    fps = check_fps(fps)
    lap = a.session.lap(int(tip["lap_index"]))
    ref = a.reference
    la, lb, res = lap_pair(lap, ref, data)
    try:
        corner = a.corner(str(tip["corner"]))
    except KeyError:
        raise VideoError(f"tip at {tip['corner']!r}: no such corner in the analysis") from None
    t = a.table
    rows = {}
    for key, lp in (("ref", ref), ("lap", lap)):
        hit = t[(t.session_id == lp.session.id) & (t.lap_index == lp.lap_index) & (t.corner == corner.name)]
        rows[key] = hit.iloc[0].to_dict() if len(hit) else {}
    d0, d1 = clip_window(lb, la, corner, rows["ref"], rows["lap"])
    k = lb.length_m / la.length_m
    marks = {"ref_brake_m": _f(rows["ref"].get("brake_point_m")),
             "lap_brake_m": _f(rows["lap"].get("brake_point_m"))}
    marks = {"ref_brake_m": None if marks["ref_brake_m"] is None else marks["ref_brake_m"] / k,
             "lap_brake_m": marks["lap_brake_m"]}
    v = _voice(voice)
    speech = None
    phrase = _phrase(tip)
    if v is not None:
        speech = v.synthesize(phrase)
        if not speech.wav:
            speech = None
    delta = res["delta"]
    tl = timeline(la, lb, delta.distance_m, delta.delta_s, fps, "time", d0, d1, hold_s=0.6)
    if speech is not None and tl.duration_s < speech.duration_s + SPEECH_PAD_S:  # the drive is shorter
        extra = speech.duration_s + SPEECH_PAD_S - tl.duration_s
        tl = timeline(la, lb, delta.distance_m, delta.delta_s, fps, "time", d0, d1, hold_s=0.6 + extra)
    note = (f'spoken ({speech.engine}): "{speech.spoken}"' if speech is not None
            else "no voice available: the tip as text only")
    scene = ClipScene(la, lb, delta.distance_m, delta.delta_s, tl, tip, marks, wh, note)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="pitbox-clip-") as tmp:
        audio = None
        if speech is not None:
            audio = Path(tmp) / "tip.wav"
            audio.write_bytes(speech.wav)
        info = encode(out, wh, fps, tl.n_frames, scene.render, audio_path=audio, preset=preset, crf=crf,
                      workers=workers, progress=progress, desc=f"clip {tip['corner']} lap {tip['lap']}",
                      new_buffer=scene.canvas.new_buffer)
    meta = {"lap": lap.label, "reference": ref.label, "corner": corner.name, "start_m": d0, "end_m": d1}
    return ClipResult(Path(info.path), tl.n_frames, fps, wh, tl.n_frames / fps, info, time.perf_counter() - t0,
                      scene.layout_info(), meta, tip=tip, spoken=speech.spoken if speech else "",
                      engine=speech.engine if speech else "text", speech_s=speech.duration_s if speech else 0.0)


def _f(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None
