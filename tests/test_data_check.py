"""``helm-dspy data check`` and the one-line errors for bad mirrors and bad names."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_command
from helm.benchmark.scenarios.medbullets_scenario import MedBulletsScenario
from helm.benchmark.scenarios.medec_scenario import MedecScenario

from helm_dspy.scenarios.medbullets import MedBulletsDSPyScenario
from helm_dspy.scenarios.medec import MedecDSPyScenario


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_check_real_mirror(mirror_dir, tmp_path):
    result = run_command(["helm-dspy", "data", "check", "--data-dir", str(mirror_dir)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for scenario, split, count in [
        ("medcalc_bench", "test", 1047),
        ("medec", "test", 597),
        ("medec", "valid", 574),
        ("head_qa", "test", 2675),
        ("head_qa", "train", 2589),
        ("head_qa", "valid", 1336),
        ("medbullets", "test", 308),
    ]:
        pattern = rf"^{scenario}\s+{split}\b.*?\s{count}\s+ok\s"
        assert any(re.match(pattern, line) for line in lines), (scenario, split)
    assert any("absent (optional)" in line and "train_data.csv" in line for line in lines)
    assert _files(tmp_path) == []


def test_missing_needed_file(mirror_dir, tmp_path):
    partial = tmp_path / "mirror"
    shutil.copytree(mirror_dir / "medbullets", partial / "medbullets")
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_command(["helm-dspy", "data", "check", "--data-dir", str(partial)], cwd=workdir)
    assert result.returncode == 1
    medec_row = next(line for line in result.stdout.splitlines() if line.startswith("medec") and " test " in line)
    assert "missing (upstream: https://raw.githubusercontent.com/abachaa/MEDEC/" in medec_row
    assert _one_line_error(result).startswith("helm-dspy: error: data check failed")
    assert _files(workdir) == []


def test_csv_missing_column_is_named(mirror_dir, tmp_path):
    bad = tmp_path / "mirror" / "medbullets"
    bad.mkdir(parents=True)
    with open(mirror_dir / "medbullets" / "medbullets_op5.csv", encoding="utf-8", newline="") as source:
        rows = list(csv.reader(source))
    rows[0] = ["answer_letter" if column == "answer_idx" else column for column in rows[0]]
    with open(bad / "medbullets_op5.csv", "w", encoding="utf-8", newline="") as target:
        csv.writer(target).writerows(rows)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_command(
        ["helm-dspy", "data", "check", "--data-dir", str(tmp_path / "mirror"), "--scenario", "medbullets"], cwd=workdir
    )
    assert result.returncode == 1
    assert "malformed" in result.stdout and "lacks required column 'answer_idx'" in result.stdout
    assert _one_line_error(result).startswith("helm-dspy: error: data check failed")
    assert _files(workdir) == []


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--scenario", "medqa_nope"], "unknown scenario 'medqa_nope'"),
        (["--data-dir", "/nonexistent/mirror"], "does not exist"),
    ],
)
def test_bad_arguments_one_line(mirror_dir, tmp_path, args, expected):
    base = ["helm-dspy", "data", "check"] + ([] if "--data-dir" in args else ["--data-dir", str(mirror_dir)])
    result = run_command(base + args, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in _one_line_error(result)
    assert _files(tmp_path) == []


def test_version_flag(tmp_path):
    from helm_dspy import __version__

    result = run_command(["helm-dspy", "--version"], cwd=tmp_path)
    assert result.returncode == 0 and __version__ in result.stdout


@pytest.mark.parametrize(
    "ours,helms,mirror_file,cache_name",
    [
        (
            MedecDSPyScenario,
            MedecScenario,
            "medec/MEDEC-MS-TestSet-with-GroundTruth-and-ErrorType.csv",
            "medec_test.csv",
        ),
        (MedBulletsDSPyScenario, MedBulletsScenario, "medbullets/medbullets_op5.csv", "medbullets_op5.csv"),
    ],
)
def test_same_test_instances_as_helm(use_mirror, tmp_path, ours, helms, mirror_file, cache_name):
    """HELM's own class, given the file in its download cache, yields exactly our instances."""
    helm_dir = tmp_path / "helm"
    helm_dir.mkdir()
    shutil.copy(use_mirror / mirror_file, helm_dir / cache_name)  # an existing file skips HELM's download
    helm_instances = helms().get_instances(str(helm_dir))
    our_instances = ours().get_instances(str(tmp_path / "ours"))
    assert [(i.input, i.references, i.split) for i in helm_instances] == [
        (i.input, i.references, i.split) for i in our_instances
    ]
    assert [i.id for i in our_instances] == [f"id{n}" for n in range(len(helm_instances))]  # HELM's numbering


def _written_files(folder: Path) -> list[str]:
    """Files (not folders: helm-run itself creates an empty benchmark_output/ before it reads run entries)."""
    return [name for name in _files(folder) if (folder / name).is_file()]


def test_helm_run_with_missing_mirror_file_stops_in_one_line(mirror_dir, tmp_path):
    partial = tmp_path / "mirror"
    shutil.copytree(mirror_dir / "medbullets", partial / "medbullets")
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = ["helm-run", "--run-entries", "medec:model=simple/model1", "--max-eval-instances", "1", "--suite", "m"]
    result = run_command(args, cwd=workdir, env={"HELM_DSPY_DATA_DIR": str(partial)})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("helm-dspy: error: medec: missing mirror file") and "upstream: https://" in last
    assert "Traceback" not in result.stderr
    assert _written_files(workdir) == []


def test_helm_run_with_missing_column_stops_in_one_line(mirror_dir, tmp_path):
    bad = tmp_path / "mirror" / "medbullets"
    bad.mkdir(parents=True)
    header, *rows = (mirror_dir / "medbullets" / "medbullets_op5.csv").read_text(encoding="utf-8").splitlines(True)
    (bad / "medbullets_op5.csv").write_text(header.replace("answer_idx", "answer_letter") + "".join(rows))
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = ["helm-run", "--run-entries", "medbullets:model=simple/model1", "--max-eval-instances", "1", "--suite", "m"]
    result = run_command(args, cwd=workdir, env={"HELM_DSPY_DATA_DIR": str(tmp_path / "mirror")})
    assert result.returncode != 0
    assert "lacks required column 'answer_idx'" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert _written_files(workdir) == []
