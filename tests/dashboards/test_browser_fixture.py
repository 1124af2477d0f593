"""Without a browser the browser tests fail in CI (CI=true) and skip elsewhere, with a reason."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import ROOT


def _run_browser_test(ci: str | None):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["CRISIS_CHROMIUM"] = "/nonexistent/chromium"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
         "tests/dashboards/test_browser.py::test_report_shows_html_in_model_documentation_as_text"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_missing_browser_fails_in_ci():
    result = _run_browser_test("true")
    assert result.returncode == 1, result.stdout
    assert "CI=true and the browser tests cannot run" in result.stdout
    assert "/nonexistent/chromium" in result.stdout


def test_missing_browser_skips_with_a_reason_elsewhere():
    result = _run_browser_test(None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "chromium is not installed at /nonexistent/chromium" in result.stdout
