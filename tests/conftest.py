"""Shared test setup: offline switches, the real data mirror, and a helper to run commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
os.environ.update(OFFLINE_ENV)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MIRROR = REPO_ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent


def _mirror_dir() -> Path | None:
    configured = os.environ.get("HELM_DSPY_DATA_DIR")
    path = Path(configured).expanduser() if configured else DEFAULT_MIRROR
    if not path.is_absolute():
        path = (REPO_ROOT / path).resolve()
    return path if (path / "medec").is_dir() else None


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The real offline mirror; skipped when absent, a failure in CI (CI=true)."""
    path = _mirror_dir()
    if path is None:
        message = "data mirror not found: set HELM_DSPY_DATA_DIR to the shared data folder"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def use_mirror(mirror_dir, monkeypatch) -> Path:
    """Point the product at the real mirror for this test."""
    monkeypatch.setenv("HELM_DSPY_DATA_DIR", str(mirror_dir))
    return mirror_dir


def run_command(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900):
    """Run one of the installed console scripts (helm-run, helm-dspy, ...) with the offline switches."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    executable = str(BIN / args[0]) if (BIN / args[0]).exists() else args[0]
    return subprocess.run(
        [executable, *args[1:]], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
