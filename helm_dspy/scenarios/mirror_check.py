"""``helm-dspy data check``: what the mirror holds, per scenario and split, and whether it loads."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from helm_dspy.data import mirror
from helm_dspy.data.known_files import HELM_VERSION
from helm_dspy.data.mirror import SourceFile
from helm_dspy.errors import UserError


@dataclass(frozen=True)
class MirrorEntry:
    """One file a scenario reads for one split; ``needed`` files make the check fail when absent."""

    split: str
    source: SourceFile
    needed: bool
    loader: str
    """Method of the scenario object that loads this split (counted through the product's own code)."""


@dataclass
class CheckRow:
    scenario: str
    split: str
    file: str
    status: str
    instances: int | None
    needed: bool
    sha256: str | None = None
    detail: str | None = None
    """The full one-line message for a mismatched or malformed file (printed under the table)."""

    @property
    def failed(self) -> bool:
        return self.status.startswith(FAILED_STATUSES) or (self.needed and self.status.startswith("missing"))


FAILED_STATUSES = ("malformed", "mismatch")
LEGEND = (
    "status ok: sha256 is the upstream file's (for test splits, the file HELM {helm} evaluates); unverified: optional "
    "file with no known upstream sha256 (encoding and columns checked); modified: not upstream, used because {env}=1"
)


def mirror_entries() -> dict[str, tuple[type, list[MirrorEntry]]]:
    """Scenario name -> (scenario class, its mirror files). Imported lazily: HELM classes are heavy."""
    from helm_dspy.scenarios import head_qa, medbullets, medcalc_bench, medec

    return {
        "medcalc_bench": (
            medcalc_bench.MedCalcBenchDSPyScenario,
            [
                MirrorEntry("test", medcalc_bench.TEST_FILE, True, "get_instances"),
                MirrorEntry("train", medcalc_bench.TRAIN_FILE, False, "load_train"),
                MirrorEntry("train", medcalc_bench.TRAIN_ZIP, False, "load_train"),
                MirrorEntry("train (one-shot demos)", medcalc_bench.ONE_SHOT_FILE, False, "load_one_shot"),
            ],
        ),
        "medec": (
            medec.MedecDSPyScenario,
            [
                MirrorEntry("test", medec.TEST_FILE, True, "get_instances"),
                MirrorEntry("valid", medec.VALID_FILE, True, "load_valid"),
                MirrorEntry("train", medec.TRAIN_FILE, False, "load_train"),
            ],
        ),
        "head_qa": (
            head_qa.HeadQADSPyScenario,
            [
                MirrorEntry("test", head_qa.HF_SPLIT_FILES["test"], True, "get_instances"),
                MirrorEntry("train", head_qa.HF_SPLIT_FILES["train"], True, "load_train"),
                MirrorEntry("valid", head_qa.HF_SPLIT_FILES["validation"], True, "load_valid"),
            ],
        ),
        "medbullets": (
            medbullets.MedBulletsDSPyScenario,
            [MirrorEntry("test (train/valid: holdout=)", medbullets.TEST_FILE, True, "get_instances")],
        ),
    }


def require_test_files(scenario: str) -> None:
    """Fail fast (one UserError) when a scenario's test file is missing, unreadable or not the upstream one.

    ``helm-run`` calls this while building run specs, so the error is one line before any run starts (no
    run folder), not a traceback from inside HELM's runner or a silently smaller test set. ``locate``
    verifies the file's sha256 and row count.
    """
    if mirror.data_dir() is None or scenario not in mirror_entries():
        return
    for entry in mirror_entries()[scenario][1]:
        if entry.needed and entry.split.startswith("test"):
            path = mirror.locate(entry.source)
            if entry.source.required_columns:
                mirror.check_csv_columns(entry.source, path)


def check_mirror(scenarios: list[str] | None = None) -> list[CheckRow]:
    """Load every mirrored split through the scenario classes; never raises for bad data."""
    root = mirror.data_dir()
    if root is None:
        raise UserError(f"no mirror to check: pass --data-dir DIR or set {mirror.DATA_DIR_ENV}")
    entries = mirror_entries()
    unknown = [name for name in scenarios or [] if name not in entries]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(entries)}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in scenarios or list(entries):
            scenario_class, files = entries[name]
            for entry in files:
                rows.append(_check_entry(name, scenario_class, entry, root, scratch))
    return rows


def _check_entry(name, scenario_class, entry: MirrorEntry, root, scratch) -> CheckRow:
    path = entry.source.mirror_path(root)
    row = CheckRow(name, entry.split, str(path), "ok", None, entry.needed)
    if not path.is_file():
        row.status = f"missing (upstream: {entry.source.url})" if entry.needed else "absent (optional)"
        if entry.needed:
            row.detail = f"missing mirror file {path}; download it from {entry.source.url}"
        return row
    try:
        found = mirror.verify(entry.source, path)
    except mirror.DataFileError as error:
        row.status, row.sha256, row.detail = error.kind, error.sha256, str(error)
        return row
    row.sha256 = found.sha256
    row.status = {
        "verified": "ok",
        "unverified": "unverified",
        "modified": f"modified (sha256 {found.sha256[:16]}...)",
    }[found.status]
    try:
        loaded = getattr(scenario_class(), entry.loader)(scratch)
        row.instances = len(loaded or [])
    except mirror.DataFileError as error:
        if str(path) in str(error):
            row.status, row.detail = error.kind, str(error)
        else:  # this split also reads another file (MedCalc's demos take questions from the test file)
            row.status = "not loaded (another file failed)"
    except UserError as error:
        row.status, row.detail = "malformed", str(error)
    return row


def format_rows(rows: list[CheckRow]) -> str:
    """The table, then the full message of each mismatched or malformed file, then what the statuses mean."""
    headers = ("scenario", "split", "instances", "status", "sha256", "file")
    table = [headers] + [
        (
            r.scenario,
            r.split,
            "-" if r.instances is None else str(r.instances),
            r.status,
            (r.sha256 or "-")[:16],
            r.file,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in table
    ]
    lines += [f"{r.scenario} {r.split}: {r.detail}" for r in rows if r.detail]
    lines.append(LEGEND.format(helm=HELM_VERSION, env=mirror.ALLOW_MODIFIED_ENV))
    return "\n".join(lines)


def failure_message(failed: list[CheckRow]) -> str:
    """One line for stderr: the first failed file's problem and remedy, and how many more there are."""
    first = failed[0]
    what = f"{first.scenario} {first.split}: {first.detail or f'{first.file}: {first.status}'}"
    if len(failed) == 1:
        return f"data check failed: {what}"
    return f"data check failed for {len(failed)} files (listed above); the first, {what}"
