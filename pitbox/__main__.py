"""``python -m pitbox``: the ``pitbox`` command (:func:`pitbox.cli.run`, as the console script)."""

from pitbox.cli import run

run()
