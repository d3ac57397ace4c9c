"""The offline data mirror: upstream files under their upstream names, one folder per scenario.

``HELM_DSPY_DATA_DIR`` (or ``--data-dir``) points at it. When set, scenarios read only from it and
never touch the network; a missing file is one error naming the file and where it comes from.
Every file is also checked against the upstream version HELM 0.5.16 evaluates (sha256 and row count,
``known_files.py``) the first time a process locates it: a cut, edited or mis-encoded file is one error,
not a silently smaller benchmark, unless the user opts in with ``HELM_DSPY_ALLOW_MODIFIED_DATA=1``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import threading
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helm_dspy.data.known_files import HELM_VERSION, KNOWN_FILES, KnownFile
from helm_dspy.errors import UserError

DATA_DIR_ENV = "HELM_DSPY_DATA_DIR"
ALLOW_MODIFIED_ENV = "HELM_DSPY_ALLOW_MODIFIED_DATA"
DATA_FILES_MARKER = "helm-dspy data files: "
"""Prefix of the line ``helm-run``'s scenario.json description gets: the JSON of ``file_record``."""


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
    verify(source, path)
    return path


def check_csv_columns(source: SourceFile, path: Path, header: list[str] | None = None) -> None:
    """Fail with the name of the first required column the CSV header lacks."""
    if header is None:
        with open(path, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    missing = [column for column in source.required_columns if column not in header]
    if missing:
        raise DataFileError(
            "malformed",
            f"{source.scenario}: {path} lacks required column {missing[0]!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            f"replace it with the upstream file from {source.url}",
        )


def read_csv_rows(source: SourceFile, path: Path) -> list[dict[str, str]]:
    """Rows of a mirrored CSV as strings (never type-inferred), after checking its columns."""
    check_csv_columns(source, path)
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# --- verification against the upstream files --------------------------------------------------


class DataFileError(UserError):
    """A mirror file that is not what HELM evaluates: ``malformed`` (unreadable) or ``mismatch`` (another version)."""

    def __init__(self, kind: str, message: str, sha256: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.sha256 = sha256


@dataclass(frozen=True)
class FileCheck:
    """What one mirror file holds: ``verified`` (the upstream bytes), ``modified`` or ``unverified`` (no known hash)."""

    sha256: str
    size: int
    rows: int | None
    status: str
    problem: str | None = field(default=None, compare=False)
    """For ``modified``: how it differs from upstream (the error message without the advice)."""

    def as_record(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "problem"}


_CHECKS: dict[tuple[str, int, int], FileCheck | DataFileError] = {}
_LOCATED: dict[tuple[str, str], FileCheck] = {}
_LOCK = threading.Lock()


def allow_modified() -> bool:
    """The explicit opt-in to mirror files that differ from upstream (read at each check, never cached)."""
    return os.environ.get(ALLOW_MODIFIED_ENV, "").strip().lower() in ("1", "true", "yes")


def verify(source: SourceFile, path: Path) -> FileCheck:
    """Check ``path`` against the upstream file; raise one-line ``DataFileError`` unless it may be used.

    Hashing is cached per (path, size, mtime), so every reader of a run can call this. A file whose hash
    differs is read through once to say what is wrong (encoding, columns, JSON, row count).
    """
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        check = _CHECKS.get(key)
    if check is None:
        try:
            check = _inspect(source, path, path.read_bytes())
        except DataFileError as error:
            check = error
        with _LOCK:
            _CHECKS[key] = check
    if isinstance(check, DataFileError):
        raise DataFileError(check.kind, str(check), check.sha256)
    if check.status == "modified" and not allow_modified():
        raise DataFileError(
            "mismatch",
            f"{source.scenario}: {check.problem}; replace it with the upstream file from {source.url}, "
            f"or set {ALLOW_MODIFIED_ENV}=1 to use it as is",
            check.sha256,
        )
    with _LOCK:
        _LOCATED[(source.scenario, source.relative_path)] = check
    return check


def file_record(scenario: str) -> dict[str, dict]:
    """Mirror files this process has read for ``scenario``: path in the mirror -> sha256, size, rows, status.

    Empty when nothing came from the mirror (data downloaded as HELM does). Runs store it so a result
    can be traced to the exact bytes it was computed from.
    """
    with _LOCK:
        return {
            f"{name}/{rel}": check.as_record() for (name, rel), check in sorted(_LOCATED.items()) if name == scenario
        }


def describe_with_files(description: str, scenario: str) -> str:
    """``description`` plus a line with ``file_record(scenario)``: HELM writes it into each run's scenario.json."""
    files = file_record(scenario)
    return f"{description}\n{DATA_FILES_MARKER}{json.dumps(files, sort_keys=True)}" if files else description


def recorded_files(description: str) -> dict[str, dict]:
    """The file record ``describe_with_files`` put into a scenario.json description (empty when none)."""
    for line in description.splitlines():
        if line.startswith(DATA_FILES_MARKER):
            return json.loads(line[len(DATA_FILES_MARKER) :])
    return {}


def _inspect(source: SourceFile, path: Path, data: bytes) -> FileCheck:
    digest = hashlib.sha256(data).hexdigest()
    known = KNOWN_FILES.get((source.scenario, source.relative_path))
    if known is not None and digest == known.sha256:
        return FileCheck(digest, len(data), known.rows, "verified")
    try:
        rows, cut = _count_rows(source, path, data)
    except DataFileError as error:
        raise DataFileError(error.kind, str(error), digest) from None
    if known is None:
        return FileCheck(digest, len(data), rows, "unverified")
    return FileCheck(digest, len(data), rows, "modified", _difference(path, known, digest, rows, cut))


def _difference(path: Path, known: KnownFile, digest: str, rows: int, cut: bool) -> str:
    upstream = f"the upstream file HELM {HELM_VERSION} evaluates" if known.evaluated else "the upstream file"
    note = f" ({known.note})" if known.note else ""
    if rows != known.rows:
        last = " (the last one cut off)" if cut else ""
        return f"{path} has {rows:,} {known.unit}{last}; {upstream} has {known.rows:,}{note}"
    return (
        f"{path} is not {upstream}: sha256 {digest[:16]}... differs from {known.sha256[:16]}... "
        f"(same {rows:,} {known.unit}, different content)"
    )


def _count_rows(source: SourceFile, path: Path, data: bytes) -> tuple[int, bool]:
    """Rows as the readers see them, and whether the last one is cut off; ``DataFileError`` if unreadable."""

    def malformed(what: str) -> DataFileError:
        return DataFileError(
            "malformed", f"{source.scenario}: {what}; replace it with the upstream file from {source.url}"
        )

    label = str(path)
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [name for name in archive.namelist() if name.endswith(".csv")]
                if not members:
                    raise malformed(f"{path} holds no CSV")
                data, label = archive.read(members[0]), f"{path} (member {members[0]})"
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
            raise malformed(f"{path} is not a readable zip archive ({error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise malformed(
            f"{label} is not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start:,})"
        ) from None
    if label.endswith((".csv", ".csv)")):
        return _count_csv(source, path, text, malformed)
    return _count_json(source, label, text, malformed), False


def _count_csv(source: SourceFile, path: Path, text: str, malformed) -> tuple[int, bool]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        check_csv_columns(source, path, header)
        records = [record for record in reader if record]  # csv.DictReader skips blank lines too
    except csv.Error as error:
        raise malformed(f"{path} is not a readable CSV (line {reader.line_num:,}: {error})") from None
    inside_quotes = text.count('"') % 2 == 1  # quotes in quoted fields are doubled: odd means it ends mid-field
    return len(records), bool(records) and (inside_quotes or len(records[-1]) < len(header))


def _count_json(source: SourceFile, label: str, text: str, malformed) -> int:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string"):
            raise malformed(
                f"{label} is not valid JSON: it stops mid-value after {len(text):,} characters (cut off?)"
            ) from None
        raise malformed(
            f"{label} is not valid JSON ({error.msg} at line {error.lineno:,}, column {error.colno:,})"
        ) from None
    if isinstance(value, dict) and isinstance(value.get("exams"), dict):  # HEAD-QA: count the questions
        try:
            return sum(len(exam["data"]) for exam in value["exams"].values())
        except (KeyError, TypeError) as error:
            raise malformed(f"{label} is not a HEAD-QA exam file ({type(error).__name__}: {error})") from None
    if source.scenario == "head_qa" or not isinstance(value, dict):
        raise malformed(f"{label} does not have the upstream JSON structure")
    return len(value)
