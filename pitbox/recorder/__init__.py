"""The live recorder: pyirsdk at 60 Hz into crash-safe Parquet sessions, recovery, the
telemetry-folder watcher, and one stint stored once (see ``docs/recorder.md``). Names load
on first use (``lazy_loader``): ``pitbox record --help`` loads neither numpy nor pyarrow."""

from __future__ import annotations

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "finalize": ["finalize", "pending_recordings", "recover"],
    "history": ["yaml_at", "yaml_history"],
    "recorder": ["Recorder", "RecorderStats"],
    "sources": ["IrsdkSource", "Layout", "ReplaySource", "SourceGone"],
    "stint": ["link_session", "link_store", "merged_view", "same_stint"],
})
