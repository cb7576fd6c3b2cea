"""Encoding: frames drawn by worker threads while imageio-ffmpeg's ffmpeg process encodes
the ones before them, written in order; and a probe of what ffmpeg wrote.

The encoder is a separate process (the ffmpeg that ``imageio-ffmpeg`` bundles, H.264 by
libx264). The main thread hands finished frames to it in order; drawing threads fill a
small ring of frame buffers ahead of it, so drawing, the pipe and x264 overlap. A video is
written beside its final name and renamed into place when ffmpeg has finished it, so an
interrupted render never leaves a broken file under the name asked for.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pitbox.video.canvas import COLOUR_TAGS, FrameBuffer
from pitbox.video.errors import VideoError

log = logging.getLogger(__name__)

DEFAULT_PRESET = "veryfast"
DEFAULT_CRF = 23
#: frames drawn ahead of the encoder per drawing thread
AHEAD = 3


def ffmpeg_exe() -> str:
    """The ffmpeg bundled with imageio-ffmpeg (no system ffmpeg is used)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError("video needs the 'video' extra: pip install 'pitbox[video]' (imageio-ffmpeg, Pillow)") \
            from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class StreamInfo:
    index: int
    kind: str  #: "video" or "audio"
    codec: str
    detail: str


@dataclass
class VideoInfo:
    """What ffmpeg reads from a file's header (``ffmpeg -i``)."""

    path: str
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    streams: list[StreamInfo] = field(default_factory=list)
    frames: int | None = None  #: frames written (set by :func:`encode`; ``ffmpeg -i`` does not say)

    @property
    def has_audio(self) -> bool:
        return any(s.kind == "audio" for s in self.streams)

    @property
    def video_codec(self) -> str | None:
        return next((s.codec for s in self.streams if s.kind == "video"), None)

    @property
    def audio_codec(self) -> str | None:
        return next((s.codec for s in self.streams if s.kind == "audio"), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "has_audio": self.has_audio}


_STREAM = re.compile(r"Stream #\d+:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (Video|Audio): (\w+)(.*)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+) fps")


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Streams, duration, size and frame rate of a video file, read by ffmpeg itself."""
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such video file")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(p)], capture_output=True, text=True,
                          errors="replace", timeout=60, stdin=subprocess.DEVNULL)
    text = proc.stderr
    if "Invalid data found" in text or "Stream #" not in text:
        raise VideoError(f"{p}: not a video ffmpeg can read ({text.strip().splitlines()[-1] if text.strip() else ''})")
    m = _DURATION.search(text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None
    info = VideoInfo(str(p), duration, None, None, None)
    for line in text.splitlines():
        s = _STREAM.search(line)
        if not s:
            continue
        kind = s.group(2).lower()
        info.streams.append(StreamInfo(int(s.group(1)), kind, s.group(3), s.group(4).strip(", ")))
        if kind == "video" and info.width is None:
            sz = _SIZE.search(s.group(4))
            if sz:
                info.width, info.height = int(sz.group(1)), int(sz.group(2))
            f = _FPS.search(s.group(4))
            if f:
                info.fps = float(f.group(1))
    return info


def temp_path(out: Path) -> Path:
    return out.with_name(f".{out.stem}.{os.getpid()}.partial{out.suffix or '.mp4'}")


def progress_bar(total: int, desc: str, progress: bool | None) -> Any:
    """A tqdm bar on stderr (``progress=None``: only when stderr is a terminal)."""
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="frame", disable=disable, leave=False, dynamic_ncols=True)


Render = Callable[[int, FrameBuffer, Any], None]


def encode(out: str | os.PathLike[str], size: tuple[int, int], fps: float, n_frames: int | None, render: Render,
           *, source: Iterable[Any] | None = None, expected_frames: int | None = None, audio_path: str | os.PathLike[str] | None = None,
           audio_codec: str = "aac", preset: str = DEFAULT_PRESET, crf: int = DEFAULT_CRF,
           workers: int | None = None, progress: bool | None = None, desc: str = "video",
           new_buffer: Callable[[], FrameBuffer] | None = None) -> VideoInfo:
    """Write ``n_frames`` frames of ``size`` (width, height; even) at ``fps`` as H.264 to ``out``.

    ``render(k, frame, src)`` fills frame ``k`` (a :class:`FrameBuffer`); ``src`` is the
    k-th item of ``source`` (e.g. the decoded frame of a video being overlaid) or None.
    With ``n_frames=None`` the video has one frame per item of ``source``
    (``expected_frames`` sizes the progress bar).
    Frames are drawn by ``workers`` threads (default 2) ahead of the encoder and written
    in order. ``audio_path`` adds its first audio stream (``audio_codec``, "copy" keeps it).
    Returns what ffmpeg reads back from the finished file.
    """
    import imageio_ffmpeg

    out = Path(out)
    w, h = size
    if w % 2 or h % 2 or w < 16 or h < 16:
        raise VideoError(f"video size {w}x{h}: expected even width and height of at least 16 pixels")
    if workers is not None and not 1 <= workers <= 32:
        raise VideoError(f"workers {workers}: expected 1 to 32 drawing threads")
    if n_frames is None and source is None:
        raise ValueError("encode: n_frames=None needs a source")
    if n_frames is not None and n_frames < 1:
        raise VideoError(f"{out}: nothing to render (0 frames)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    params = ["-preset", preset, "-crf", str(crf), *COLOUR_TAGS, "-movflags", "+faststart"]
    if audio_path is not None:
        params += ["-b:a", "160k"] if audio_codec == "aac" else []
    gen = imageio_ffmpeg.write_frames(
        str(tmp), (w, h), pix_fmt_in="yuv420p", pix_fmt_out="yuv420p", fps=fps, codec="libx264", quality=None,
        macro_block_size=2, ffmpeg_log_level="error", output_params=params,
        audio_path=None if audio_path is None else str(audio_path), audio_codec=audio_codec if audio_path else None)
    ok = False
    try:
        gen.send(None)
        written = _pipeline(gen, n_frames, render, source, workers or 2, progress, desc,
                            new_buffer or (lambda: FrameBuffer(w, h)), expected_frames)
        gen.close()
        if written == 0:
            raise VideoError(f"{out}: nothing to render (0 frames)")
        info = probe(tmp)
        if info.video_codec != "h264":
            raise VideoError(f"{out}: ffmpeg did not write an H.264 video ({info.streams})")
        os.replace(tmp, out)
        ok = True
        info.path = str(out)
        info.frames = written
        return info
    except OSError as exc:
        raise VideoError(f"{out}: ffmpeg stopped while encoding: {str(exc).splitlines()[0]}") from exc
    finally:
        if not ok:
            gen.close()
            tmp.unlink(missing_ok=True)


def _pipeline(gen: Any, n_frames: int | None, render: Render, source: Iterable[Any] | None, workers: int,
              progress: bool | None, desc: str, new_buffer: Callable[[], FrameBuffer],
              expected_frames: int | None = None) -> int:
    """Draw frames on ``workers`` threads ahead of the encoder, send them in order; returns
    the number of frames written."""
    src: Iterator[Any] | None = iter(source) if source is not None else None
    free: deque[FrameBuffer] = deque(new_buffer() for _ in range(workers * AHEAD + 1))
    pending: deque[Future[FrameBuffer]] = deque()
    done = False

    def job(k: int, fb: FrameBuffer, item: Any) -> FrameBuffer:
        render(k, fb, item)
        return fb

    total = n_frames if n_frames is not None else expected_frames
    written = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pitbox-video") as pool, \
            progress_bar(total or 0, desc, progress) as bar:
        nxt = 0

        def submit() -> bool:
            nonlocal nxt, done
            if done or (n_frames is not None and nxt >= n_frames) or not free:
                return False
            item = None
            if src is not None:
                item = next(src, _END)
                if item is _END:
                    done = True
                    return False
            pending.append(pool.submit(job, nxt, free.popleft(), item))
            nxt += 1
            return True

        while submit():
            pass
        try:
            while pending:
                fb = pending.popleft().result()
                gen.send(fb.data)
                written += 1
                free.append(fb)
                submit()
                bar.update(1)
        finally:
            for f in pending:
                f.cancel()
    return written


_END = object()
