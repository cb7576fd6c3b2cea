"""What happens between two sources the emulator plays (imports nothing: the CLI lists
these in its help without loading the emulator).

* ``auto``: ``restart`` when the two sources publish different variables or come from
  different events, else ``session`` when ``SessionNum`` changes, else ``exit``;
* ``session``: a new ``SessionNum`` and a YAML update, ticks running on;
* ``exit``: the driver out of the car for a while (``IsOnTrack`` false), then back in;
* ``restart``: the sim quits (status 0) and starts again with a new header and layout.
"""

from __future__ import annotations

TRANSITIONS = ("auto", "session", "exit", "restart")
