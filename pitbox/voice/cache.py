"""The phrase cache: synthesized WAV files on disk, keyed by what makes them differ.

A phrase's key is the SHA-256 of (spoken text, engine, voice, model, output format), so the
same tip said by another voice, another model or the offline engine is another file. Files
are written to a temporary name and renamed, so a crash never leaves half a WAV under a key.

Folder (first that applies): the ``cache_dir`` argument, ``PITBOX_VOICE_CACHE``, the
platform's user cache folder + ``pitbox/voice`` (``~/.cache/pitbox/voice`` on Linux,
``%LOCALAPPDATA%\\pitbox\\Cache\\voice`` on Windows, ``~/Library/Caches/pitbox/voice`` on
macOS, from :mod:`platformdirs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``PITBOX_VOICE_CACHE``, else the platform's user cache folder + ``voice``."""
    env = os.environ.get("PITBOX_VOICE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pitbox", appauthor=False)) / "voice"


def phrase_key(spoken: str, engine: str, voice: str, model: str, fmt: str) -> str:
    """Hex SHA-256 of the phrase and everything that changes its audio."""
    blob = json.dumps([spoken, engine, voice, model, fmt], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class PhraseCache:
    """WAV files under ``root/<engine>/<key[:2]>/<key>.wav``. ``get`` returns None on a miss
    or an unreadable file (logged), never raises for one."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, engine: str, key: str) -> Path:
        return self.root / engine / key[:2] / f"{key}.wav"

    def get(self, engine: str, key: str) -> bytes | None:
        p = self.path(engine, key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("voice cache: cannot read %s (%s); synthesizing again", p, exc)
            return None
        if len(data) < 44 or data[:4] != b"RIFF":
            log.warning("voice cache: %s is not a WAV file; synthesizing again", p)
            return None
        return data

    def put(self, engine: str, key: str, wav: bytes) -> Path | None:
        """Store ``wav`` atomically; on a full or read-only disk log and return None."""
        p = self.path(engine, key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".wav")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(wav)
                os.replace(tmp, p)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("voice cache: cannot write %s (%s); continuing without caching", p, exc)
            return None
        return p
