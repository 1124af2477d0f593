"""Running generated JavaScript under Node (Debian's ``nodejs``) from the tests.

In CI (``CI=true``) a missing Node fails the tests that need it; elsewhere they skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .dashboards.browser import in_ci

DRIVER = Path(__file__).with_name("node_driver.js")


def node() -> str:
    """The ``node`` executable, or a skip (a failure under CI=true)."""
    found = shutil.which("node") or shutil.which("nodejs")
    if found is None:
        if in_ci():
            pytest.fail("CI=true and Node is missing: the JavaScript engine tests cannot run (apt-get install nodejs)")
        pytest.skip("Node is not installed: JavaScript engine tests skipped")
    return found


def run_engines(cases: list[dict], workdir: Path) -> list[dict]:
    """Run each case (``engine`` source text, ``options``, ``want``) and return the results,
    values as float arrays (NaN and infinities restored)."""
    files = {}
    for case in cases:
        source = case["engine"]
        if source not in files:
            path = workdir / f"engine_{len(files)}.js"
            path.write_text(source)
            files[source] = str(path)
    payload = [{"engine": files[c["engine"]], "options": c.get("options", {}), "want": c.get("want")} for c in cases]
    spec = workdir / "cases.json"
    spec.write_text(json.dumps(payload))
    done = subprocess.run([node(), str(DRIVER), str(spec)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"node failed: {done.stderr[-2000:]}"
    results = json.loads(done.stdout)
    for result in results:
        result["time"] = np.asarray(result["time"], dtype=float)
        result["values"] = {k: np.asarray([float(v) for v in col]) for k, col in result["values"].items()}
    return results
