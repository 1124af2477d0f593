"""Driving Debian's chromium with Playwright, for the browser tests and the benchmarks.

Never ``playwright install``: the tests use the system browser (``apt-get install -y
chromium``) at :data:`CHROMIUM`, with the switches that keep it from reaching any network
on its own (updates, sync, background requests).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

#: Debian's chromium; CRISIS_CHROMIUM overrides it (the tests use that to check that a
#: missing browser fails in CI).
CHROMIUM = Path(os.environ.get("CRISIS_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Screenshots for reviewers (gitignored).
OUTPUT = Path(__file__).resolve().parents[1] / "output"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package 'playwright' is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


@dataclass
class Watch:
    """Console errors, uncaught page errors and every request a page makes."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page) -> "Watch":
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        return self


@contextlib.contextmanager
def serve(dash_app):
    """Serve a Dash app on a free loopback port in a thread; yields its base address."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, dash_app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
