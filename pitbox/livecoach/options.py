"""``pitbox record``'s live coach options (no heavy imports: the parser is built from this)."""

from __future__ import annotations

import argparse
from typing import Any

KINDS = ("session_best", "all_time_best", "optimal")


def add_coach_options(parser: argparse.ArgumentParser) -> None:
    """``--no-live-coach``, ``--coach-reference``, ``--fuel-laps``, ``--fuel-minutes``."""
    g = parser.add_argument_group("live coach (on when the stream or --publish is on)")
    g.add_argument("--no-live-coach", action="store_true",
                   help="do not run the live coach (delta, predicted lap, fuel, tyres, tips) on the stream")
    g.add_argument("--coach-reference", default="session_best", metavar="REF",
                   help="reference lap: session_best (default), all_time_best, optimal or SESSION:LAP")
    g.add_argument("--fuel-laps", type=float, default=None, metavar="N",
                   help="fuel to add: enough for N more laps (default: the session's remaining laps or time)")
    g.add_argument("--fuel-minutes", type=float, default=None, metavar="M", help="fuel to add: enough for M minutes")


def reference_choice(value: str) -> tuple[str, str | None]:
    """``--coach-reference`` as (kind, SESSION:LAP or None)."""
    return (value, None) if value in KINDS else ("lap", value)


def start_service(args: Any, targets: list[Any], data: Any, lossless: bool = False, voice: Any = None,
                  process: bool = True) -> Any:
    """The started :class:`~pitbox.livecoach.service.LiveCoachService` in front of
    ``targets`` (None when ``--no-live-coach`` or neither a target nor a ``voice``);
    ``lossless`` for replays as fast as possible (see the service). ``voice`` (a
    :class:`~pitbox.voice.coach.VoiceCoach`, ``--voice``) gets the coach's frames and
    messages after the publishers (the stream is never held up by the voice). ``process=False`` runs the after-lap analysis on the
    pump thread (tests)."""
    if (not targets and voice is None) or getattr(args, "no_live_coach", False):
        return None
    from pitbox.livecoach.reference import parse_kind
    from pitbox.livecoach.service import LiveCoachService

    kind, lap = reference_choice(args.coach_reference)
    parse_kind(kind, lap)
    return LiveCoachService(list(targets) + ([voice] if voice is not None else []), data=data, reference=kind,
                            lap=lap, fuel_laps=args.fuel_laps,
                            fuel_minutes=args.fuel_minutes, lossless=lossless, process=process).start()
