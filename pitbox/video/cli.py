"""Commands: ``video compare``, ``video overlay``, ``video clips``.

LAP arguments are ``SESSION:LAP`` as for ``pitbox compare``. Heavy imports (Pillow, numpy,
imageio-ffmpeg, the analysis) happen when a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _common(p: argparse.ArgumentParser, size: bool = True) -> None:
    p.add_argument("--data", help="store folder (default: $PITBOX_DATA or ./data)")
    if size:
        p.add_argument("--size", default="1280x720", metavar="WxH", help="frame size (default 1280x720)")
        p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better (default 23)")
    p.add_argument("--workers", type=int, metavar="N", help="drawing threads ahead of the encoder (default 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return
    print(f"{result.path}  {result.frames} frames, {result.duration_s:.1f} s at {result.fps:g} fps, "
          f"{result.size[0]}x{result.size[1]}, {'with' if result.info.has_audio else 'no'} audio; "
          f"rendered in {result.render_s:.1f} s ({result.realtime_ratio:.1f}x real time)")


def cmd_compare(args: argparse.Namespace) -> int:
    from pitbox.video.compare import compare_video

    r = compare_video(args.lap, args.reference, args.out, args.data, sync=args.sync, size=args.size, fps=args.fps,
                      start_m=args.start, end_m=args.end, hold_s=args.hold, preset=args.preset, crf=args.crf,
                      workers=args.workers)
    _print(r, args.json)
    return 0


def cmd_overlay(args: argparse.Namespace) -> int:
    from pitbox.video.overlay import overlay_video

    r = overlay_video(args.lap, args.video, args.out, args.data, offset_s=args.offset, sync=args.sync,
                      reference=args.reference, preset=args.preset, crf=args.crf, workers=args.workers)
    _print(r, args.json)
    return 0


def cmd_clips(args: argparse.Namespace) -> int:
    from pitbox.video.clips import tip_clips

    rs = tip_clips(args.session, args.out, args.data, reference=args.reference, voice=args.voice, size=args.size,
                   fps=args.fps, top=args.top, laps=args.lap, preset=args.preset, crf=args.crf,
                   workers=args.workers)
    if args.json:
        print(json.dumps([r.to_dict() for r in rs], indent=1, default=str))
        return 0
    if not rs:
        print("no tips: no clip made")
    for r in rs:
        t = r.tip
        voice = f"spoken by {r.engine}" if r.spoken else "text only"
        print(f"{r.path}  lap {t['lap']} {t['corner']} {t['fault']} ({t['time_loss_s']:.2f} s), "
              f"{r.duration_s:.1f} s, {voice}")
    return 0


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="coaching videos: lap comparison, onboard overlay, one clip per tip")
    vs = p.add_subparsers(dest="video_command", metavar="KIND")
    p.set_defaults(func=lambda args: _help(p))

    c = vs.add_parser("compare", help="two laps in one video: map, delta, traces, timers")
    c.add_argument("lap", metavar="SESSION:LAP")
    c.add_argument("reference", metavar="SESSION:LAP")
    c.add_argument("--out", required=True, metavar="FILE.mp4")
    c.add_argument("--sync", choices=("distance", "time"), default="distance",
                   help="distance: the reference shown where the lap is (default); time: both on their own clocks")
    c.add_argument("--start", type=float, metavar="M", help="start at this distance of the lap [m]")
    c.add_argument("--end", type=float, metavar="M", help="end at this distance of the lap [m]")
    c.add_argument("--hold", type=float, default=1.0, metavar="S", help="still frames at the end [s] (default 1)")
    _common(c)
    c.set_defaults(func=cmd_compare)

    o = vs.add_parser("overlay", help="gauges, map and delta over the driver's onboard video (its audio kept)")
    o.add_argument("lap", metavar="SESSION:LAP")
    o.add_argument("--video", required=True, metavar="ONBOARD.mp4")
    o.add_argument("--out", required=True, metavar="FILE.mp4")
    g = o.add_mutually_exclusive_group()
    g.add_argument("--offset", type=float, metavar="S",
                   help="video time [s] at which the lap starts (negative: it started before the video)")
    g.add_argument("--sync", metavar="T1,T2",
                   help="video times [s] of the lap's start and end line crossings (drift corrected), "
                        "or V1=L1,V2=L2 (video time = lap time, twice); write --sync=-1.5,80 for negatives")
    o.add_argument("--reference", metavar="SESSION:LAP", help="lap the delta is against (default the fastest valid)")
    _common(o, size=False)
    o.set_defaults(func=cmd_overlay)

    k = vs.add_parser("clips", help="one clip per coaching tip, the tip written in and spoken")
    k.add_argument("session", metavar="SESSION")
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--reference", metavar="SESSION:LAP", help="default: the session's fastest valid lap")
    k.add_argument("--voice", choices=("auto", "elevenlabs", "local", "text"), default="auto",
                   help="voice engine (auto: ElevenLabs with a key, else the offline voice, else text)")
    k.add_argument("--top", type=int, metavar="N", help="only the N costliest tips")
    k.add_argument("--lap", type=int, action="append", metavar="LAP_INDEX", help="only tips of this lap (repeatable)")
    _common(k)
    k.set_defaults(func=cmd_clips)
