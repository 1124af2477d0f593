"""After the peer suite runs, one line saying which engines reproduced how many models."""

from __future__ import annotations

from collections import Counter


def pytest_terminal_summary(terminalreporter):
    from .test_peer_suite import ENGINES_USED

    if not ENGINES_USED:
        return
    counts = Counter(engine for used in ENGINES_USED.values() for engine in used)
    parts = ", ".join(f"{engine} {count}" for engine, count in sorted(counts.items()))
    terminalreporter.write_line(f"peer suite (SDXorg/test-models): {len(ENGINES_USED)} models matched; {parts}")
