"""Shared test setup: offline switches, the real data mirror, and a helper to run commands."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _chromium() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Debian chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium not installed")
    return chromium


def leaderboard_tables(workspace: Path, suite: str, pages: dict[str, str]) -> dict[str, list[list[str]]]:
    """helm-server on 127.0.0.1; each page's first table as rows of cell texts, and a screenshot per page."""
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "helm-server"), "--suite", suite, "-p", str(port)],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    artifacts = Path(os.environ.get("HELM_DSPY_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[list[str]]] = {}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        flags += ["--disable-sync", "--no-first-run", "--disable-quic"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=flags)
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            for group, screenshot in pages.items():
                page.goto(f"http://127.0.0.1:{port}/#/leaderboard/{group}")
                page.wait_for_selector("table tbody tr", timeout=30000)
                table = page.locator("table").first
                found[group] = [
                    [cell.strip() for cell in row.locator("td").all_inner_texts()]
                    for row in table.locator("tbody tr").all()
                ]
                page.screenshot(path=str(artifacts / screenshot), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    for screenshot in pages.values():
        assert (artifacts / screenshot).stat().st_size > 10_000
    return found


def interruptible() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: a shell's background job (``cmd &``) ignores SIGINT, its
    children inherit that, and Python then never raises KeyboardInterrupt; the test must not depend on how
    pytest was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
