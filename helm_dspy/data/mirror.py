"""The offline data mirror: upstream files under their upstream names, one folder per scenario.

``HELM_DSPY_DATA_DIR`` (or ``--data-dir``) points at it. When set, scenarios read only from it and
never touch the network; a missing file is one error naming the file and where it comes from.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from helm_dspy.errors import UserError

DATA_DIR_ENV = "HELM_DSPY_DATA_DIR"


@dataclass(frozen=True)
class SourceFile:
    """One upstream file as the mirror holds it: ``<data dir>/<scenario>/<relative_path>``."""

    scenario: str
    relative_path: str
    url: str
    required_columns: tuple[str, ...] = field(default=())

    def mirror_path(self, data_dir: Path) -> Path:
        return data_dir / self.scenario / self.relative_path


def data_dir() -> Path | None:
    """The mirror folder, or None when data should be downloaded as HELM does."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def set_data_dir(path: str | os.PathLike | None) -> None:
    """Point this process (and the HELM runs it starts) at a mirror folder."""
    if path is None:
        return
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise UserError(f"data dir {resolved} does not exist or is not a folder; pass the mirror folder")
    os.environ[DATA_DIR_ENV] = str(resolved)


def locate(source: SourceFile) -> Path:
    """Path of ``source`` in the mirror; raises a one-line UserError when it is not there."""
    root = data_dir()
    if root is None:
        raise RuntimeError(f"{DATA_DIR_ENV} is not set")  # callers check data_dir() first
    path = source.mirror_path(root)
    if not path.is_file():
        raise UserError(
            f"{source.scenario}: missing mirror file {path} "
            f"(upstream: {source.url}); download it there or unset {DATA_DIR_ENV}"
        )
    return path


def check_csv_columns(source: SourceFile, path: Path, header: list[str] | None = None) -> None:
    """Fail with the name of the first required column the CSV header lacks."""
    if header is None:
        with open(path, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    missing = [column for column in source.required_columns if column not in header]
    if missing:
        raise UserError(
            f"{source.scenario}: {path} lacks required column {missing[0]!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            f"replace it with the upstream file from {source.url}"
        )


def read_csv_rows(source: SourceFile, path: Path) -> list[dict[str, str]]:
    """Rows of a mirrored CSV as strings (never type-inferred), after checking its columns."""
    check_csv_columns(source, path)
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
