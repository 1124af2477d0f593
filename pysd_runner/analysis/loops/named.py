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


def _load_toml(path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise LoopsFileError(f"loops file '{path}' cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoopsFileError(f"loops file '{path}' is not valid TOML: {exc}") from None


def _read_loops_file(path: Path) -> list[dict]:
    data = {k: v for k, v in _load_toml(path).items() if k != EXCLUDE_KEY}
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


def _loops_file(model: CompiledModel, names: str | os.PathLike | bool | None) -> Path | None:
    if names is False:
        return None
    if names is None or names is True:
        path = model.source.parent / LOOPS_FILE
        if not path.is_file():
            if names is True:
                raise LoopsFileError(f"model '{model.source.name}' has no {LOOPS_FILE} beside it ({path})")
            return None
        return path
    path = Path(names).expanduser()
    if not path.is_file():
        raise LoopsFileError(f"loops file '{path}' does not exist")
    return path


def _resolve_cycle(model: CompiledModel, path: Path, what: str, variables: Any) -> list:
    """The elements of a cycle written in a loops file (a list, or ``a -> b -> c``)."""
    if isinstance(variables, str):
        variables = [v for v in re.split(r"\s*(?:->|,)\s*", variables) if v.strip()]
    if not isinstance(variables, list) or len(variables) < 1 or not all(isinstance(v, str) for v in variables):
        raise LoopsFileError(f"loops file '{path}': {what} must list its variables as a list of names in cycle order")
    if len(variables) > 1 and variables[0].strip().lower() == variables[-1].strip().lower():
        variables = variables[:-1]  # written closed: a -> b -> a
    resolved = []
    for name in variables:
        try:
            resolved.append(model.resolve(name))
        except ParameterError as exc:
            raise LoopsFileError(f"loops file '{path}': {what}: {exc}") from None
    return resolved


#: Key of the loops file's table of loops left out of the dominance analysis.
EXCLUDE_KEY = "exclude"


@dataclass(frozen=True)
class Exclusion:
    """A loop the model leaves out of loop dominance, with the reason (``[exclude.KEY]``)."""

    key: str
    variables: tuple[str, ...]
    names: tuple[str, ...]
    reason: str


def excluded_entries(model: CompiledModel, names: str | os.PathLike | bool | None) -> list[Exclusion]:
    """The ``[exclude.KEY]`` tables (or ``[[exclude]]`` array) of a model's loops file.

    Each names one loop by its variables in cycle order, exactly (the loop has no other
    variables), and gives the ``reason`` it is left out, e.g. exogenous growth::

        [exclude.labour_force_growth]
        variables = ["labour force", "labour force growth"]
        reason = "exogenous growth of the labour force, not a feedback of the argument"
    """
    path = _loops_file(model, names)
    if path is None:
        return []
    table = _load_toml(path).get(EXCLUDE_KEY, {})
    if isinstance(table, list):
        items = [(str(item.get("id", i + 1)) if isinstance(item, Mapping) else str(i + 1), item)
                 for i, item in enumerate(table)]
    elif isinstance(table, Mapping):
        items = list(table.items())
    else:
        raise LoopsFileError(f"loops file '{path}': '{EXCLUDE_KEY}' must be a table of tables, each with "
                             "'variables' and 'reason'")
    out = []
    for key, item in items:
        what = f"excluded loop '{key}'"
        if not isinstance(item, Mapping) or "variables" not in item:
            raise LoopsFileError(f"loops file '{path}': {what} needs 'variables' (the loop in cycle order) and "
                                 "'reason'")
        reason = str(item.get("reason") or "").strip()
        if not reason:
            raise LoopsFileError(f"loops file '{path}': {what} needs a 'reason': say why the loop is left out "
                                 "(e.g. exogenous growth)")
        unknown = sorted(set(item) - {"id", "variables", "reason"})
        if unknown:
            raise LoopsFileError(f"loops file '{path}': {what} has unknown key(s) {unknown}; allowed: "
                                 "'variables', 'reason'")
        resolved = _resolve_cycle(model, path, what, item["variables"])
        out.append(Exclusion(str(key), tuple(e.py_name for e in resolved), tuple(e.name for e in resolved),
                             reason))
    return out


def path_id(variables: Sequence[str], digits: int = 8) -> str:
    """A loop id derived from its path: the same loop has the same id in every run.

    The cycle is rotated to start at its alphabetically first variable (Python names), so
    the id does not depend on where a search entered the loop; then hashed. Knock-outs, other
    scenarios and other length bounds give a loop the same id.
    """
    import hashlib

    k = min(range(len(variables)), key=lambda i: variables[i])
    canonical = " -> ".join(tuple(variables[k:]) + tuple(variables[:k]))
    return "L" + hashlib.sha1(canonical.encode()).hexdigest()[:digits]


def named_entries(model: CompiledModel, names: str | os.PathLike | bool | None) -> list[_NamedLoop]:
    path = _loops_file(model, names)
    if path is None:
        return []
    out = []
    for entry in _read_loops_file(path):
        ident = str(entry.get("id") or "").strip()
        variables = next(entry[k] for k in _VARIABLE_KEYS if k in entry)
        resolved = _resolve_cycle(model, path, f"loop '{ident}'", variables)
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


def assign_names(loops: list[Loop], named: list[_NamedLoop], excluded: Sequence[Exclusion] = ()) -> list[Loop]:
    """Named loops first (in the file's order, with the file's id), then the rest by length.

    Unnamed loops get an id derived from their path (:func:`path_id`); a loop that an
    exclusion names exactly carries its reason in ``excluded``.
    """
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
    reasons = {frozenset(e.variables): e for e in excluded}
    ids = _unique_path_ids([loop.variables for loop in rest])
    result = []
    for loop, ident in zip(ordered + rest, [loop.name or path_id(loop.variables) for loop in ordered] + ids):
        exclusion = reasons.get(frozenset(loop.variables))
        reason = ""
        if exclusion is not None and len(exclusion.variables) == loop.length and _follows(loop.variables,
                                                                                          exclusion.variables):
            reason = exclusion.reason
        result.append(Loop(id=ident, variables=loop.variables, names=loop.names, links=loop.links,
                           polarity=loop.polarity, name=loop.name, title=loop.title, partition=loop.partition,
                           excluded=reason))
    return result


def _unique_path_ids(cycles: Sequence[Sequence[str]]) -> list[str]:
    """Path ids, lengthened where two loops' short ids collide (same result in every run)."""
    ids = [path_id(c) for c in cycles]
    seen: dict[str, int] = {}
    for ident in ids:
        seen[ident] = seen.get(ident, 0) + 1
    return [path_id(c, 16) if seen[ident] > 1 else ident for c, ident in zip(cycles, ids)]


def exclusion_report(excluded: Sequence[Exclusion], loops: Sequence[Loop]) -> list[dict]:
    """One dict per exclusion: ``key``, ``variables``, ``reason``, ``loop`` (its id, "" if not found)."""
    report = []
    for entry in excluded:
        match = next((loop for loop in loops if loop.excluded and frozenset(loop.variables) == frozenset(entry.variables)),
                     None)
        report.append({"key": entry.key, "variables": " -> ".join(entry.names), "reason": entry.reason,
                       "loop": match.id if match else ""})
    return report


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
