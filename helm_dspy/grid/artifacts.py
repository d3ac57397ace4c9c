"""Folders as bytes and back, for Ray tasks: what travels to a worker and what its results are.

The driver's ``--local-path`` folder goes to the task as a tarball and is unpacked in a private temp folder; only
agents, run folders and HELM's request-cache files come back (credentials.conf and the deployment files never
do). The driver writes what comes back atomically: each file through ``core.files``, each run folder by rename.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from helm_dspy.core.files import atomic_path

CACHE_TABLE = "unnamed"
"""The table HELM's sqlite request cache (sqlitedict) keeps its entries in."""


def pack(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> bytes:
    """``folder``'s files as a gzipped tarball (paths relative to it); names under ``exclude`` left out."""
    buffer = io.BytesIO()
    folder = Path(folder)
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                if path.is_file() and not any(relative.parts[0] == name for name in exclude):
                    if not path.name.endswith((".lock", ".tmp")):
                        tar.add(path, arcname=str(relative))
    return buffer.getvalue()


def unpack(payload: bytes, folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")
    return folder


def files_of(folder: str | os.PathLike) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (small folders: agents, cache files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_files(files: dict[str, bytes], folder: str | os.PathLike, last: frozenset[str] = frozenset()) -> None:
    """Each file written atomically under ``folder``; the names in ``last`` after the others (manifests)."""
    ordered = sorted(files, key=lambda name: name in last)
    for name in ordered:
        target = Path(folder) / name
        with atomic_path(target) as temp:
            temp.write_bytes(files[name])


def place_runs(payload: bytes, suite_dir: str | os.PathLike) -> list[str]:
    """Run folders from a task's ``runs/<suite>`` tarball moved into the driver's suite folder; their names."""
    suite_dir = Path(suite_dir)
    suite_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=suite_dir))
    try:
        unpack(payload, staging)
        placed = []
        for run in sorted(staging.iterdir()):
            target = suite_dir / run.name
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                os.replace(target, old)
                os.replace(run, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(run, target)
            placed.append(run.name)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def merge_cache(files: dict[str, bytes], cache_dir: str | os.PathLike) -> int:
    """A task's HELM cache files merged into the driver's (entries it lacks are added); returns how many."""
    added = 0
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if not name.endswith(".sqlite") or "/" in name:
            continue
        with tempfile.NamedTemporaryFile(suffix=".sqlite", dir=cache_dir, delete=False) as incoming:
            incoming.write(content)
        try:
            target = cache_dir / name
            if not target.exists():
                os.replace(incoming.name, target)
                with sqlite3.connect(target) as connection:
                    added += connection.execute(f"select count(*) from {CACHE_TABLE}").fetchone()[0]
                continue
            with sqlite3.connect(target, timeout=60) as connection:
                connection.execute("attach database ? as incoming", (incoming.name,))
                before = connection.total_changes
                connection.execute(f"insert or ignore into main.{CACHE_TABLE} select * from incoming.{CACHE_TABLE}")
                added += connection.total_changes - before
                connection.commit()
                connection.execute("detach database incoming")
        finally:
            Path(incoming.name).unlink(missing_ok=True)
    return added
