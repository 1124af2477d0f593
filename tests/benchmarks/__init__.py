"""Speed measurements, run by hand or by `make benchmark`; not collected by pytest."""

import json
from pathlib import Path


def print_and_save(rows: list[tuple[str, str, str]], results: dict, output: Path) -> None:
    """Print ``(measure, value, note)`` rows as an aligned table and write the results as JSON."""
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>9}  {note}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Wrote {output}")
