"""Atomic writes: readers (and an interrupted run) never see half a file. One helper for every file we write."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside ``path`` to write to; renamed onto ``path`` when the block succeeds, removed if not.

    The temp file is created with mode 0666 less the umask, as ``open()`` would (``mkstemp``'s 0600 would make
    every agent, manifest and report private whatever the user's umask says).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, payload) -> None:
    """``payload`` as indented JSON (str() for what JSON lacks), written atomically."""
    with atomic_path(path) as temp:
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=2, ensure_ascii=False, default=str)
            stream.write("\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temp:
        Path(temp).write_text(text, encoding="utf-8")
