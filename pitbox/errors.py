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
* A fault in the user's data (a missing channel, a session without the laps a command
  needs, a malformed corner file) is always one of these exceptions, never a bare
  ``ValueError`` or ``KeyError``: a missing channel is :class:`MissingChannel` everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


class MissingChannel(PitboxError, KeyError):
    """A channel the work needs is not in the file or session.

    ``where`` names the file or session, ``channels`` the channel (or the alternatives, any
    one of which would do) and ``purpose`` what needs it. It is also a ``KeyError`` (a
    channel looked up by name), so code that asks "is it there?" that way keeps working.
    """

    def __init__(self, where: object, channels: str | Sequence[str], purpose: str = ""):
        self.where = str(where)
        self.channels = (channels,) if isinstance(channels, str) else tuple(channels)
        self.purpose = purpose
        names = self.channels[0] if len(self.channels) == 1 else ", ".join(self.channels[:-1]) + " or " + self.channels[-1]
        msg = f"{self.where}: no channel {names}" if len(self.channels) == 1 else f"{self.where}: none of the channels {names}"
        super().__init__(msg + (f" ({purpose})" if purpose else ""))

    @property
    def channel(self) -> str:
        """The (first) missing channel."""
        return self.channels[0]

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class TrackFileError(PitboxError):
    """A corner file (a track's corner names and boundaries) that cannot be read or is malformed.

    The message names the file and the field and says what was expected.
    """


class OutputError(PitboxError):
    """A file PitBox was asked to write (a report, an export, an ``.ibt``) cannot be written."""


@contextmanager
def writing(path: str | PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into an :class:`OutputError` naming it."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


class ConfigError(PitboxError):
    """An unknown or invalid setting."""


class TruncatedWarning(UserWarning):
    """A telemetry file ends early; only its complete rows were used."""
