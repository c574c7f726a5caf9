"""Without the playwright package (a pip install of requirements.txt alone), ``pytest tests/``
still collects: the browser tests skip with the reason, except under CI, where they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_e2e_without_playwright(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    hidden = tmp_path / "hide" / "playwright"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("playwright hidden by the test")\n')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(hidden.parent)
    if ci:
        env["CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_browser_tests_skip_with_the_reason(tmp_path: Path) -> None:
    done = run_e2e_without_playwright(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the playwright package is not installed" in done.stdout
    assert "5 skipped" in done.stdout and "error" not in done.stdout.lower(), done.stdout
    assert "SKIPPED [1] tests/e2e/test_dashboard.py: the playwright package" in done.stdout


def test_under_ci_a_missing_playwright_fails(tmp_path: Path) -> None:
    done = run_e2e_without_playwright(tmp_path, ci=True)
    assert done.returncode != 0, done.stdout
    assert "playwright hidden by the test" in done.stdout
