"""Mirror files are checked against the upstream versions HELM 0.5.16 evaluates (issue 10).

A cut, mis-encoded, truncated or edited mirror file must stop ``data check``, ``optimize`` and ``helm-run`` with
one ``helm-dspy: error:`` line before anything runs, unless the user opts in with HELM_DSPY_ALLOW_MODIFIED_DATA=1;
then it runs and the run records the file's sha256.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_command

from helm_dspy.data import mirror
from helm_dspy.data.known_files import KNOWN_FILES, UNVERIFIED_FILES
from helm_dspy.scenarios import head_qa, medbullets, medcalc_bench, medec
from helm_dspy.scenarios import mirror_check as check

MEDEC_TEST = "MEDEC-MS-TestSet-with-GroundTruth-and-ErrorType.csv"
CASES = {
    # case: (scenario, source file, what the error line must say)
    "medbullets_cut_in_half": ("medbullets", medbullets.TEST_FILE, "has 153 rows (the last one cut off)"),
    "medec_invalid_utf8": ("medec", medec.TEST_FILE, "is not valid UTF-8 (byte 0xff at offset 5,000)"),
    "head_qa_truncated_json": ("head_qa", head_qa.HF_SPLIT_FILES["test"], "is not valid JSON"),
    "medcalc_value_changed": ("medcalc_bench", medcalc_bench.TEST_FILE, "is not the upstream file HELM 0.5.16"),
}


def corrupt(mirror_dir: Path, tmp_path: Path, case: str) -> Path:
    """A mirror copy (only the case's scenario folder) with one file damaged as in the issue; returns its root."""
    scenario, source, _ = CASES[case]
    root = tmp_path / "mirror"
    shutil.copytree(mirror_dir / scenario, root / scenario)
    path = source.mirror_path(root)
    data = path.read_bytes()
    if case in ("medbullets_cut_in_half", "head_qa_truncated_json"):
        data = data[: len(data) // 2]
    elif case == "medec_invalid_utf8":
        data = data[:5000] + b"\xff\xfe" + data[5000:]
    else:  # one row's answer changed: same row count, different bytes
        first = next(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
        old = f",{first['Ground Truth Answer']},".encode()
        assert data.count(old) == 1
        data = data.replace(old, b",99999.5,")
    path.write_bytes(data)
    return root


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("helm-dspy: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


# --- the shipped table -------------------------------------------------------------------------


def test_shipped_table_matches_real_mirror(mirror_dir):
    """Every known file's sha256, size and row count are those of the real mirror (upstream) bytes."""
    for (scenario, relative), known in KNOWN_FILES.items():
        data = (mirror_dir / scenario / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == known.sha256, relative
        assert len(data) == known.size, relative
        source = mirror.SourceFile(scenario, relative, "upstream")
        assert mirror._count_rows(source, mirror_dir / scenario / relative, data)[0] == known.rows, relative


def test_every_mirror_file_is_known():
    """Every file a scenario reads from the mirror is in the table, verified or explicitly unverified."""
    for _, entries in check.mirror_entries().values():
        for entry in entries:
            key = (entry.source.scenario, entry.source.relative_path)
            assert (key in KNOWN_FILES) != (key in UNVERIFIED_FILES), key
    assert all(known.evaluated for key, known in KNOWN_FILES.items() if "test" in key[1].lower())


def test_data_check_real_mirror_all_verified(use_mirror):
    rows = check.check_mirror()
    needed = [row for row in rows if row.needed]
    assert needed and all(row.status == "ok" and not row.failed for row in needed), rows
    for row in rows:
        if row.sha256:
            relative = str(Path(row.file).relative_to(use_mirror))
            scenario, rest = relative.split("/", 1)
            assert row.sha256 == KNOWN_FILES[(scenario, rest)].sha256


def test_hash_is_cached_per_path_size_mtime(use_mirror, monkeypatch):
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or original(self))
    source = medbullets.TEST_FILE
    first = mirror.verify(source, source.mirror_path(use_mirror))
    second = mirror.verify(source, source.mirror_path(use_mirror))
    assert first == second and first.status == "verified" and len(reads) <= 1
    assert mirror.file_record("medbullets")["medbullets/medbullets_op5.csv"] == {
        "sha256": KNOWN_FILES[("medbullets", "medbullets_op5.csv")].sha256,
        "size": 1_217_131,
        "rows": 308,
        "status": "verified",
    }


# --- each corruption, in process ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_corrupt_file_is_one_user_error(mirror_dir, tmp_path, monkeypatch, case):
    scenario, source, expected = CASES[case]
    root = corrupt(mirror_dir, tmp_path, case)
    monkeypatch.setenv(mirror.DATA_DIR_ENV, str(root))
    monkeypatch.delenv(mirror.ALLOW_MODIFIED_ENV, raising=False)
    with pytest.raises(mirror.DataFileError) as raised:
        check.require_test_files(scenario)
    message = str(raised.value)
    assert expected in message and str(source.mirror_path(root)) in message and "\n" not in message
    assert "replace it with the upstream file from" in message
    modified = case in ("medbullets_cut_in_half", "medcalc_value_changed")
    assert raised.value.kind == ("mismatch" if modified else "malformed")
    assert (mirror.ALLOW_MODIFIED_ENV in message) == modified  # unreadable files cannot be opted into

    monkeypatch.setenv(mirror.ALLOW_MODIFIED_ENV, "1")
    if not modified:
        with pytest.raises(mirror.DataFileError):
            check.require_test_files(scenario)
        return
    check.require_test_files(scenario)
    record = mirror.file_record(scenario)[f"{scenario}/{source.relative_path}"]
    assert record["status"] == "modified"
    assert record["sha256"] == hashlib.sha256(source.mirror_path(root).read_bytes()).hexdigest()


def test_unverified_optional_file(mirror_dir, tmp_path, monkeypatch):
    """MedCalc's train CSV has no known upstream hash: recorded and shown 'unverified'; bad UTF-8 still fails."""
    root = tmp_path / "mirror"
    shutil.copytree(mirror_dir / "medcalc_bench", root / "medcalc_bench")
    train = medcalc_bench.TRAIN_FILE.mirror_path(root)
    shutil.copy(medcalc_bench.TEST_FILE.mirror_path(root), train)
    monkeypatch.setenv(mirror.DATA_DIR_ENV, str(root))
    monkeypatch.delenv(mirror.ALLOW_MODIFIED_ENV, raising=False)
    rows = {(row.split, Path(row.file).name): row for row in check.check_mirror(["medcalc_bench"])}
    row = rows[("train", "train_data.csv")]
    assert row.status == "unverified" and row.instances == 1047 and not row.failed
    assert mirror.file_record("medcalc_bench")["medcalc_bench/train_data.csv"]["status"] == "unverified"

    train.write_bytes(train.read_bytes()[:100] + b"\xc3\x28" + train.read_bytes()[100:])
    row = {(r.split, Path(r.file).name): r for r in check.check_mirror(["medcalc_bench"])}[("train", "train_data.csv")]
    assert row.failed and row.status == "malformed" and "not valid UTF-8 (byte 0xc3 at offset 100)" in row.detail


# --- helm-dspy data check and optimize ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_data_check_fails_in_one_line(mirror_dir, tmp_path, case):
    scenario, _, expected = CASES[case]
    root = corrupt(mirror_dir, tmp_path, case)
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = ["helm-dspy", "data", "check", "--data-dir", str(root), "--scenario", scenario]
    result = run_command(args, cwd=workdir, env={mirror.ALLOW_MODIFIED_ENV: ""})
    assert result.returncode == 1, result.stdout + result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"helm-dspy: error: data check failed: {scenario} ") and expected in line
    assert list(workdir.iterdir()) == []


def test_data_check_allow_modified(mirror_dir, tmp_path):
    root = corrupt(mirror_dir, tmp_path, "medbullets_cut_in_half")
    sha = hashlib.sha256(medbullets.TEST_FILE.mirror_path(root).read_bytes()).hexdigest()
    args = ["helm-dspy", "data", "check", "--data-dir", str(root), "--scenario", "medbullets", "--allow-modified-data"]
    result = run_command(args, cwd=tmp_path, env={mirror.ALLOW_MODIFIED_ENV: ""})
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("medbullets"))
    assert " 153 " in row and f"modified (sha256 {sha[:16]}...)" in row


@pytest.mark.parametrize("case", ["medbullets_cut_in_half", "medec_invalid_utf8"])
def test_optimize_stops_in_one_line(mirror_dir, tmp_path, case):
    scenario, _, expected = CASES[case]
    root = corrupt(mirror_dir, tmp_path, case)
    args = ["helm-dspy", "optimize", "--scenario", scenario, "--model", "simple/model1"]
    args += ["--optimizer", "zeroshot-predict", "--data-dir", str(root), "--dry-run"]
    result = run_command(args, cwd=tmp_path, env={mirror.ALLOW_MODIFIED_ENV: ""})
    assert result.returncode != 0
    assert expected in one_error_line(result.stderr)
    assert not (tmp_path / "agents").exists()


def test_optimize_manifest_records_modified_file(mirror_dir, tmp_path, monkeypatch):
    """With the opt-in, optimizing on the cut file works and the manifest names the bytes it used."""
    from test_optimize import write_deployment

    from helm_dspy.core.methods import MethodSettings
    from helm_dspy.optimize.run import OptimizeOptions, optimize

    root = corrupt(mirror_dir, tmp_path, "medbullets_cut_in_half")
    monkeypatch.setenv(mirror.ALLOW_MODIFIED_ENV, "1")
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    write_deployment(tmp_path / "prod_env", "scripted/right", answers, mode="always_right")
    options = OptimizeOptions(
        scenario="medbullets:holdout=0.2",
        model="scripted/right",
        optimizer="zeroshot-predict",
        agents_dir=str(tmp_path / "agents"),
        local_path=str(tmp_path / "prod_env"),
        data_dir=str(root),
        output_path=str(tmp_path / "benchmark_output"),
        max_train=2,
        max_val=2,
        settings=MethodSettings(num_threads=1, seed=1),
    )
    manifest = optimize(options, out=lambda line: None).manifest
    path = medbullets.TEST_FILE.mirror_path(root)
    assert manifest["data_files"] == {
        "medbullets/medbullets_op5.csv": {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size,
            "rows": 153,
            "status": "modified",
        }
    }
    assert sum(manifest["available_split_sizes"].values()) == 153  # the holdout is carved from the 153 rows


# --- helm-run ----------------------------------------------------------------------------------


def _helm_run(entry: str, workdir: Path, root: Path, max_eval: int = 2, allow: str = ""):
    args = ["helm-run", "--run-entries", f"{entry}:model=simple/model1", "--suite", "s"]
    args += ["--max-eval-instances", str(max_eval)]
    env = {mirror.DATA_DIR_ENV: str(root), mirror.ALLOW_MODIFIED_ENV: allow}
    return run_command(args, cwd=workdir, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_helm_run_stops_before_any_run(mirror_dir, tmp_path, case):
    scenario, _, expected = CASES[case]
    root = corrupt(mirror_dir, tmp_path, case)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = _helm_run(scenario, workdir, root)
    assert result.returncode != 0
    assert expected in one_error_line(result.stderr)
    runs = workdir / "benchmark_output" / "runs" / "s"
    assert not runs.exists() or list(runs.iterdir()) == []


@pytest.mark.slow
def test_helm_run_allow_modified_records_hash(mirror_dir, tmp_path):
    from helm.benchmark.scenarios.medbullets_scenario import MedBulletsScenario

    root = corrupt(mirror_dir, tmp_path, "medbullets_cut_in_half")
    path = medbullets.TEST_FILE.mirror_path(root)
    expected = len(MedBulletsScenario().process_csv(str(path), "test"))  # what HELM's reader finds: 153
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = _helm_run("medbullets", workdir, root, max_eval=1000, allow="1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "benchmark_output" / "runs" / "s" / "medbullets:model=simple_model1"
    assert len(json.loads((run / "per_instance_stats.json").read_text())) == expected == 153
    description = json.loads((run / "scenario.json").read_text())["description"]
    assert mirror.recorded_files(description) == {
        "medbullets/medbullets_op5.csv": {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size,
            "rows": 153,
            "status": "modified",
        }
    }
