"""iRacing's telemetry layout: readers (``.ibt``, live memory dumps) and the ``.ibt`` writer."""

from pitbox.ibt.layout import VarHeader, VarType
from pitbox.ibt.reader import IbtFile, LiveDump, TelemetryFile, detect_kind, open_telemetry
from pitbox.ibt.writer import write_ibt

__all__ = ["IbtFile", "LiveDump", "TelemetryFile", "VarHeader", "VarType", "detect_kind", "open_telemetry", "write_ibt"]
