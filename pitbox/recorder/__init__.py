"""The live recorder: pyirsdk at 60 Hz into crash-safe Parquet sessions, recovery, the
telemetry-folder watcher, and one stint stored once (see ``docs/recorder.md``)."""

from pitbox.recorder.finalize import finalize, pending_recordings, recover
from pitbox.recorder.history import yaml_at, yaml_history
from pitbox.recorder.recorder import Recorder, RecorderStats
from pitbox.recorder.sources import IrsdkSource, Layout, ReplaySource, SourceGone
from pitbox.recorder.stint import link_session, link_store, merged_view, same_stint

__all__ = [
    "IrsdkSource", "Layout", "Recorder", "RecorderStats", "ReplaySource", "SourceGone",
    "finalize", "link_session", "link_store", "merged_view", "pending_recordings", "recover", "same_stint",
    "yaml_at", "yaml_history",
]
