"""Named loops: the loops.toml beside a model, matched to the loops found."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ...compiler import CompiledModel
from ...errors import LoopsFileError, ParameterError
from .common import BALANCING, LOOPS_FILE, Loop, REINFORCING


@dataclass
class _NamedLoop:
    id: str
    title: str
    polarity: str | None
    variables: tuple[str, ...]
    names: tuple[str, ...]
    raw: dict = field(default_factory=dict)


_POLARITY_WORDS = {
    "r": REINFORCING, "+": REINFORCING, "reinforcing": REINFORCING, "positive": REINFORCING, "pos": REINFORCING,
    "b": BALANCING, "-": BALANCING, "balancing": BALANCING, "negative": BALANCING, "neg": BALANCING,
}


_VARIABLE_KEYS = ("variables", "path", "cycle", "loop", "links")


def _read_loops_file(path: Path) -> list[dict]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise LoopsFileError(f"loops file '{path}' cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoopsFileError(f"loops file '{path}' is not valid TOML: {exc}") from None
    entries: list[dict] = []

    def take(key: str | None, table: Any) -> None:
        if isinstance(table, Mapping) and any(k in table for k in _VARIABLE_KEYS):
            entry = dict(table)
            entry.setdefault("id", key or "")
            entries.append(entry)
        elif isinstance(table, Mapping):
            for sub_key, sub in table.items():
                take(sub_key, sub)
        elif isinstance(table, list):
            for item in table:
                take(None, item)

    for key, value in data.items():
        if isinstance(value, (Mapping, list)):
            take(key if isinstance(value, Mapping) else None, value)
    return entries


def named_entries(model: CompiledModel, names: str | os.PathLike | bool | None) -> list[_NamedLoop]:
    if names is False:
        return []
    if names is None or names is True:
        path = model.source.parent / LOOPS_FILE
        if not path.is_file():
            if names is True:
                raise LoopsFileError(f"model '{model.source.name}' has no {LOOPS_FILE} beside it ({path})")
            return []
    else:
        path = Path(names).expanduser()
        if not path.is_file():
            raise LoopsFileError(f"loops file '{path}' does not exist")
    out = []
    for entry in _read_loops_file(path):
        ident = str(entry.get("id") or "").strip()
        variables = next(entry[k] for k in _VARIABLE_KEYS if k in entry)
        if isinstance(variables, str):
            variables = [v for v in re.split(r"\s*(?:->|,)\s*", variables) if v.strip()]
        if not isinstance(variables, list) or len(variables) < 1 or not all(isinstance(v, str) for v in variables):
            raise LoopsFileError(
                f"loops file '{path}': loop '{ident}' must list its variables as a list of names in cycle order"
            )
        if len(variables) > 1 and variables[0].strip().lower() == variables[-1].strip().lower():
            variables = variables[:-1]  # written closed: a -> b -> a
        resolved = []
        for name in variables:
            try:
                element = model.resolve(name)
            except ParameterError as exc:
                raise LoopsFileError(f"loops file '{path}': loop '{ident}': {exc}") from None
            resolved.append(element)
        raw_polarity = entry.get("polarity", entry.get("type", entry.get("sign")))
        polarity = None
        if raw_polarity is not None:
            polarity = _POLARITY_WORDS.get(str(raw_polarity).strip().lower())
            if polarity is None:
                raise LoopsFileError(
                    f"loops file '{path}': loop '{ident}' has polarity {raw_polarity!r}; allowed: "
                    "R, B, +, -, reinforcing, balancing, positive, negative"
                )
        elif ident[:1].upper() in (REINFORCING, BALANCING) and ident[1:2].isdigit():
            polarity = ident[0].upper()
        title = str(entry.get("name", entry.get("title", entry.get("label", ""))) or "")
        out.append(_NamedLoop(ident, title, polarity, tuple(e.py_name for e in resolved),
                              tuple(e.name for e in resolved), entry))
    return out


def _follows(loop: Sequence[str], named: Sequence[str]) -> bool:
    """Whether the named variables lie on the loop in the same cyclic order."""
    if not named or len(set(named)) != len(named) or not set(named) <= set(loop):
        return False
    n = len(loop)
    start = loop.index(named[0])
    positions = [(loop.index(v) - start) % n for v in named]
    return all(a < b for a, b in zip(positions, positions[1:]))


def _rotate_to(variables: Sequence[str], first: str) -> int:
    return list(variables).index(first)


def assign_names(loops: list[Loop], named: list[_NamedLoop]) -> list[Loop]:
    chosen: dict[int, _NamedLoop] = {}
    members = [frozenset(loop.variables) for loop in loops] if named else []
    for entry in named:
        wanted = frozenset(entry.variables)
        matches = [i for i, loop in enumerate(loops)
                   if i not in chosen and wanted <= members[i] and _follows(loop.variables, entry.variables)]
        if not matches:
            continue
        exact = [i for i in matches if len(loops[i].variables) == len(entry.variables)]
        pool = exact or matches
        best = min(pool, key=lambda i: (loops[i].length, loops[i].polarity != entry.polarity, loops[i].describe()))
        chosen[best] = entry
    ordered: list[Loop] = []
    for entry in named:
        for i, e in chosen.items():
            if e is entry:
                loop = loops[i]
                k = _rotate_to(loop.variables, entry.variables[0])
                rot = lambda seq: tuple(seq[k:]) + tuple(seq[:k])  # noqa: E731
                ordered.append(Loop(id="", variables=rot(loop.variables), names=rot(loop.names),
                                    links=rot(loop.links), polarity=loop.polarity, name=entry.id,
                                    title=entry.title, partition=loop.partition))
    rest = sorted((loops[i] for i in range(len(loops)) if i not in chosen),
                  key=lambda lp: (lp.length, [n.lower() for n in lp.names]))
    result = []
    for number, loop in enumerate(ordered + rest, start=1):
        result.append(Loop(id=f"L{number}", variables=loop.variables, names=loop.names, links=loop.links,
                           polarity=loop.polarity, name=loop.name, title=loop.title, partition=loop.partition))
    return result


def match_report(entries: list[_NamedLoop], loops: Sequence[Loop]) -> list[dict]:
    by_name = {loop.name: loop for loop in loops if loop.name}
    report = []
    for entry in entries:
        loop = by_name.get(entry.id)
        report.append({
            "id": entry.id, "title": entry.title, "stated": entry.polarity or "",
            "variables": " -> ".join(entry.names),
            "found": loop is not None, "loop": loop.id if loop else "",
            "polarity": loop.polarity if loop else "",
            "agrees": bool(loop) and (entry.polarity is None or loop.polarity == entry.polarity),
        })
    return report
