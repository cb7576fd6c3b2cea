"""PitBox exceptions and the error policy.

Policy (after FastF1's ``exceptions.py``):

* Interface code (opening a file, resolving a session, parsing arguments, talking to a
  server) **raises** one of the exceptions below. Every message names the file or field
  and says what was expected, so a user can act on it without a traceback.
* Long data processing (importing thousands of rows, building a lap table) **warns and
  degrades** where the data is still usable: a file whose last rows are missing imports
  its complete rows, warns with :class:`TruncatedWarning` and is marked truncated.
* The library never prints and never exits; the CLI turns a :class:`PitboxError` into one
  line on stderr and a non-zero exit code.
"""

from __future__ import annotations

from os import PathLike


class PitboxError(Exception):
    """Base class of every error PitBox raises on purpose."""


class IbtFormatError(PitboxError):
    """A telemetry file (``.ibt`` or live memory dump) is not what iRacing writes.

    Attributes name the file, the field that is wrong and what was expected.
    """

    def __init__(self, path: str | PathLike[str] | None, field: str, expected: str, found: object = None):
        self.path = str(path) if path is not None else "<memory>"
        self.field = field
        self.expected = expected
        self.found = found
        msg = f"{self.path}: {field}: expected {expected}"
        if found is not None:
            msg += f", found {found!r}"
        super().__init__(msg)


class SessionNotFound(PitboxError):
    """No session in the store matches the id, prefix or path the user gave."""


class LapNotFound(PitboxError):
    """A lap index that the session's lap table does not have."""


class StoreError(PitboxError):
    """The Parquet store cannot be read or written (permissions, full disk, bad file)."""


class ConfigError(PitboxError):
    """An unknown or invalid setting."""


class TruncatedWarning(UserWarning):
    """A telemetry file ends early; only its complete rows were used."""
