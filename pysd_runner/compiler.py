"""Translate Vensim/XMILE files with PySD once per file content, and describe the result.

Translation is cached by the sha256 of the file's bytes (and the PySD version) in a user
cache directory, never beside the source: PySD writes the translated ``.py`` next to the
file it translates, so the runner translates a private copy inside the cache.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelCompileError, ModelFileError, ParameterError, did_you_mean

__all__ = ["compile_model", "CompiledModel", "Element", "cache_dir", "control_inputs", "control_values"]

#: Extensions PySD can translate, and the translator used for each.
SUPPORTED_EXTENSIONS = {".mdl": "vensim", ".xmile": "xmile", ".xml": "xmile", ".stmx": "xmile"}

#: Environment variable that overrides the translation cache directory.
CACHE_ENV = "CRISIS_CACHE_DIR"

CONTROL_NAMES = ("initial_time", "final_time", "time_step", "saveper")


def pysd_module():
    """Import PySD with exactly the third-party warnings known to be noise filtered."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="chardet.universaldetector is deprecated", category=DeprecationWarning
        )
        import pysd
    return pysd


def cache_dir() -> Path:
    """Directory holding translated models (``$CRISIS_CACHE_DIR`` or the user cache)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crisis-dynamics"


@dataclass(frozen=True)
class Element:
    """One model element as declared in the model file."""

    name: str
    py_name: str
    kind: str  # stock, flow, auxiliary, constant, lookup, data, stateful
    subtype: str
    units: str
    comment: str
    limits: tuple[float | None, float | None]
    step: float | None = None
    subscripts: tuple[str, ...] = ()
    default: float | None = None  # a constant's value in the model file (None if subscripted)

    @property
    def range_text(self) -> str:
        """The Vensim range as text, ``[min, max]`` with ``?`` for an open end."""
        lo, hi = self.limits
        if lo is None and hi is None:
            return ""
        fmt = lambda v: "?" if v is None else f"{v:g}"  # noqa: E731
        return f"[{fmt(lo)}, {fmt(hi)}]"

    def check_value(self, value: float, *, what: str = "value") -> None:
        """Raise :class:`ParameterError` if ``value`` is outside the Vensim range."""
        lo, hi = self.limits
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ParameterError(
                f"{what} {value:g} for '{self.name}' is outside its Vensim range "
                f"{self.range_text}; give a value within the range, or widen the range in the model file"
            )


@dataclass
class CompiledModel:
    """A translated model: where it came from, its elements and its default time settings."""

    source: Path
    sha256: str
    py_file: Path
    pysd_version: str
    elements: dict[str, Element]
    subscripts: dict[str, list[str]]
    dependencies: dict[str, Any]
    control: dict[str, float]
    uses_random: bool
    from_cache: bool
    translation_warnings: list[str] = field(default_factory=list)
    time_units: str = ""
    #: Each time setting defined by an expression (``SAVEPER = TIME STEP``), as the Python
    #: source PySD generated for it; literal settings are absent.
    control_exprs: dict[str, str] = field(default_factory=dict)
    #: Time settings whose expression reads Time or a model variable, so that PySD
    #: evaluates them again at every step (``FINAL TIME = IF THEN ELSE(x > 50, Time, 100)``);
    #: ``control`` then holds their values at the start of the run.
    control_dynamic: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.source.stem

    @property
    def scenario_dir(self) -> Path:
        return self.source.parent / "scenarios"

    def _of_kind(self, *kinds: str) -> list[Element]:
        return [e for e in self.elements.values() if e.kind in kinds]

    @property
    def variables(self) -> list[Element]:
        """Every model element except the time settings and lookups."""
        return [e for e in self.elements.values() if e.kind != "lookup"]

    @property
    def stocks(self) -> list[Element]:
        return self._of_kind("stock")

    @property
    def flows(self) -> list[Element]:
        return self._of_kind("flow")

    @property
    def auxiliaries(self) -> list[Element]:
        return self._of_kind("auxiliary", "stateful")

    @property
    def constants(self) -> list[Element]:
        return self._of_kind("constant")

    def resolve(self, name: str, *, kinds: tuple[str, ...] | None = None, role: str = "variable") -> Element:
        """Find an element by Vensim or Python name (case-insensitive).

        Raises :class:`ParameterError` naming close matches when the name is unknown, or
        when the element is not of one of ``kinds``.
        """
        key = str(name).strip()
        found = self.elements.get(key)
        if found is None:
            lowered = key.lower()
            for element in self.elements.values():
                if element.name.lower() == lowered or element.py_name == lowered:
                    found = element
                    break
            else:
                # Vensim names are insensitive to spaces vs underscores too.
                normal = re.sub(r"[\s_]+", "_", lowered)
                for element in self.elements.values():
                    if element.py_name == normal:
                        found = element
                        break
        if found is not None and (kinds is None or found.kind in kinds):
            return found
        pool = [e for e in self.elements.values() if kinds is None or e.kind in kinds]
        if found is None:
            names = [e.name for e in pool] + [e.py_name for e in pool]
            raise ParameterError(
                f"unknown {role} '{name}' in model '{self.source.name}'."
                f"{did_you_mean(key, names)} Known {role}s: {', '.join(sorted(e.name for e in pool))}"
            )
        if kinds is not None and found.kind not in kinds:
            raise ParameterError(
                f"'{found.name}' in model '{self.source.name}' is a {found.kind}, not a {role}; "
                f"only {' or '.join(kinds)}s can be set. Known {role}s: "
                f"{', '.join(sorted(e.name for e in pool))}"
            )
        return found

    def load(self, py_file: Path | None = None):
        """A fresh PySD model object (each run gets its own, so no state leaks).

        ``py_file`` loads a rewritten translation of this model (a knock-out) instead.
        """
        pysd = pysd_module()
        pysd_model = pysd.load(str(py_file or self.py_file), initialize=False)
        # The translation lives in the cache, but the data files a model reads (GET XLS
        # DATA, ...) sit beside the model file: resolve them from there.
        for external in getattr(pysd_model, "_external_elements", ()):
            if hasattr(external, "root"):
                external.root = self.source.parent
        return pysd_model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compile_model(path: str | os.PathLike) -> CompiledModel:
    """Translate a Vensim (.mdl) or XMILE (.xmile, .xml, .stmx) model with PySD.

    The translation is cached by the file's sha256: compiling an unchanged file again
    loads the cached translation without translating.

    Parameters
    ----------
    path : str or path-like
        The model file.

    Returns
    -------
    CompiledModel

    Raises
    ------
    ModelFileError
        The file does not exist or its extension is not one PySD translates.
    ModelCompileError
        The file does not parse (the message names the element and line), or it uses
        Vensim functions PySD does not implement (every such element is listed).

    Examples
    --------
    >>> model = compile_model("models/goodwin/goodwin.mdl")
    >>> [s.name for s in model.stocks]
    ['employment rate', 'wage share']
    """
    source = Path(path).expanduser()
    if source.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ModelFileError(
            f"model file '{source}' has extension '{source.suffix}', which cannot be translated; "
            f"allowed extensions: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not source.is_file():
        raise ModelFileError(f"model file '{source}' does not exist")
    source = source.resolve()
    pysd = pysd_module()
    sha = _sha256(source)
    entry = cache_dir() / f"pysd-{pysd.__version__}" / sha
    suffix = source.suffix.lower()
    py_file = entry / "model.py"
    meta_file = entry / "translation.json"
    from_cache = meta_file.is_file() and py_file.is_file()
    if not from_cache:
        _translate(source, suffix, entry, pysd)
    meta = json.loads(meta_file.read_text())
    _raise_unimplemented(source, py_file, meta)
    return _describe(source, sha, py_file, pysd, from_cache, meta.get("warnings", []))


def _translate(source: Path, suffix: str, entry: Path, pysd) -> None:
    """Translate a private copy of ``source`` into a temporary folder, then move it into place."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
    try:
        copy = staging / f"model{suffix}"
        shutil.copyfile(source, copy)
        reader = pysd.read_vensim if SUPPORTED_EXTENSIONS[suffix] == "vensim" else pysd.read_xmile
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                reader(str(copy), initialize=False)
            except Exception as exc:  # PySD raises parsimonious errors, ValueError, KeyError...
                # GET DIRECT SUBSCRIPT reads a data file while translating, relative to the
                # model file: try again with the model's folder visible beside the copy.
                linked = _link_siblings(source, staging)
                try:
                    if not linked:
                        raise
                    reader(str(copy), initialize=False)
                except Exception:  # noqa: BLE001 - the first failure is the one to report
                    raise ModelCompileError(_describe_parse_failure(source, copy, suffix, exc)) from None
                finally:
                    for link in linked:
                        link.unlink(missing_ok=True)
        messages = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
        meta = {"source": str(source), "pysd_version": pysd.__version__, "warnings": messages}
        (staging / "translation.json").write_text(json.dumps(meta, indent=1))
        try:
            staging.rename(entry)
        except OSError:
            # Another process translated the same content first; its result is identical.
            if not (entry / "translation.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _link_siblings(source: Path, staging: Path, limit: int = 1000) -> list[Path]:
    """Symlink the entries of the model file's folder into ``staging`` (none if it is huge)."""
    try:
        entries = [p for p in source.parent.iterdir() if p.name != source.name]
    except OSError:
        return []
    if len(entries) > limit:
        return []
    links = []
    for entry in entries:
        link = staging / entry.name
        if link.exists() or link.is_symlink():
            continue
        try:
            link.symlink_to(entry)
        except OSError:
            continue
        links.append(link)
    return links


def _describe_parse_failure(source: Path, copy: Path, suffix: str, exc: Exception) -> str:
    """Name the element (and line) of ``source`` that PySD failed to parse."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if SUPPORTED_EXTENSIONS[suffix] != "vensim":
        return _describe_xmile_failure(source, copy, detail)
    from pysd.translators.vensim.vensim_file import VensimFile

    try:
        vfile = VensimFile(copy)
        vfile.parse(parse_all=False)
    except Exception as inner:
        first = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
        return f"model file '{source}' is not a readable Vensim file: {first}"
    text = source.read_text(errors="replace").splitlines()
    for section in vfile.sections:
        try:
            section.parse(parse_all=False)
        except Exception as inner:
            return f"model file '{source}': section '{section.name}' does not parse: {inner}"
        for element in section.elements:
            try:
                component = element.parse()
                if hasattr(component, "parse"):
                    component.parse()
            except Exception as inner:
                lhs = re.split(r"[=(:\[]", element.equation, maxsplit=1)[0].strip()
                line = _line_of(text, lhs)
                where = f", line {line}" if line else ""
                reason = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
                return (
                    f"model file '{source}'{where}: the equation of '{lhs}' does not parse "
                    f"({reason}). Equation: {element.equation.strip()[:200]}"
                )
    return f"model file '{source}' could not be translated by PySD: {detail}"


def _describe_xmile_failure(source: Path, copy: Path, detail: str) -> str:
    """Name the XMILE element (and its line in the file) that PySD failed to parse."""
    from pysd.translators.xmile.xmile_file import XmileFile

    try:
        xfile = XmileFile(copy)
        xfile.parse(parse_all=False)
        for section in xfile.sections:
            section.parse(parse_all=False)
            for component in section.components:
                try:
                    component.parse(section.behaviors)
                except Exception as inner:
                    line = getattr(component.node, "sourceline", None)
                    where = f", line {line}" if line else ""
                    reason = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
                    return f"model file '{source}'{where}: the equation of '{component.name}' does not parse ({reason})"
    except Exception as inner:
        first = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
        return f"model file '{source}' is not a readable XMILE file: {first}"
    return f"model file '{source}' could not be translated by PySD: {detail}"


def _line_of(lines: list[str], name: str) -> int | None:
    pattern = re.compile(r"^\s*" + re.escape(name) + r"\s*(\[|=|\(|:)", re.IGNORECASE)
    for number, line in enumerate(lines, start=1):
        if pattern.match(line):
            return number
    return None


def component_functions(tree: ast.Module) -> dict[str, tuple[str, ast.FunctionDef]]:
    """Map Python names of generated component functions to (Vensim name, node)."""
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "add":
                for kw in deco.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                        found[node.name] = (kw.value.value, node)
    return found


def _unimplemented_calls(node: ast.AST) -> list[str]:
    calls = []
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Call)
            and getattr(sub.func, "id", None) == "not_implemented_function"
        ):
            first = sub.args[0] if sub.args else None
            calls.append(first.value if isinstance(first, ast.Constant) else "?")
    return calls


def _raise_unimplemented(source: Path, py_file: Path, meta: dict) -> None:
    """Turn PySD's 'not implemented' translation warnings into one error listing every element."""
    tree = ast.parse(py_file.read_text())
    functions = component_functions(tree)
    offending: dict[str, set[str]] = {}
    for vensim_name, node in functions.values():
        calls = _unimplemented_calls(node)
        if calls:
            offending.setdefault(vensim_name, set()).update(calls)
    # Stateful helpers (e.g. ``_integ_x = Integ(lambda: ..., ...)``) live at module level;
    # attribute them to the component function that reads them.
    for node in tree.body:
        if isinstance(node, ast.Assign) and (calls := _unimplemented_calls(node)):
            helper = node.targets[0].id if isinstance(node.targets[0], ast.Name) else "?"
            owners = [
                vname for vname, fnode in functions.values()
                if any(isinstance(n, ast.Name) and n.id == helper for n in ast.walk(fnode))
            ] or [helper]
            for owner in owners:
                offending.setdefault(owner, set()).update(calls)
    if offending:
        lines = "\n".join(
            f"  - '{name}' uses {', '.join(sorted(funcs))}" for name, funcs in sorted(offending.items())
        )
        raise ModelCompileError(
            f"model file '{source}' uses Vensim functions that PySD {meta.get('pysd_version', '')} "
            f"does not implement, in {len(offending)} element(s):\n{lines}\n"
            "Rewrite these equations with supported functions."
        )


_KIND_OF_TYPE = {"Constant": "constant", "Auxiliary": "auxiliary", "Lookup": "lookup", "Data": "data"}


def _limits(raw) -> tuple[tuple[float | None, float | None], float | None]:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return (None, None), None
    values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in raw]
    values += [None] * (3 - len(values))
    return (values[0], values[1]), values[2]


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _describe(source: Path, sha: str, py_file: Path, pysd, from_cache: bool, messages: list[str]) -> CompiledModel:
    model = pysd.load(str(py_file), initialize=False)
    dependencies = dict(model.dependencies)
    # Flows: elements read by the step equation of an INTEG.
    flow_names: set[str] = set()
    for key, deps in dependencies.items():
        if key.startswith("_integ_") and isinstance(deps, dict):
            flow_names.update((deps.get("step") or {}).keys())
    elements: dict[str, Element] = {}
    time_units = ""
    for row in model.doc.itertuples(index=False):
        py_name = row[1]
        if py_name == "time_step":
            time_units = _text(row[3])
        if py_name == "time" or py_name in CONTROL_NAMES:
            continue
        ctype, subtype = _text(row[5]), _text(row[6])
        if ctype == "Stateful":
            kind = "stock" if subtype == "Integ" else "stateful"
        else:
            kind = _KIND_OF_TYPE.get(ctype, "auxiliary")
        if kind == "auxiliary" and py_name in flow_names:
            kind = "flow"
        limits, step = _limits(row[4])
        subs = row[2]
        default = None
        if kind == "constant":
            try:
                value = getattr(model.components, py_name)()
                default = float(value) if np.ndim(value) == 0 else None
            except Exception:  # an expression PySD can only evaluate once initialised
                default = None
        elements[py_name] = Element(
            name=str(row[0]),
            py_name=py_name,
            kind=kind,
            subtype=subtype,
            units=_text(row[3]),
            comment=_text(row[7]).strip(),
            limits=limits,
            step=step,
            subscripts=tuple(subs) if isinstance(subs, (list, tuple)) else (),
            default=default,
        )
    control_exprs = _control_expressions(py_file)
    constants = {k for k, e in elements.items() if e.kind == "constant"}
    dynamic = tuple(
        key for key in CONTROL_NAMES
        if key in control_exprs and not _names_in(control_exprs[key]) <= set(CONTROL_NAMES) | constants | {"np"}
    )
    control = _pysd_control_values(model, {}, {})
    text = py_file.read_text()
    return CompiledModel(
        source=source,
        sha256=sha,
        py_file=py_file,
        pysd_version=pysd.__version__,
        elements=elements,
        subscripts={k: list(v) for k, v in model.subscripts.items()},
        dependencies=dependencies,
        control=control,
        uses_random="np.random" in text,
        from_cache=from_cache,
        translation_warnings=messages,
        time_units=time_units,
        control_exprs=control_exprs,
        control_dynamic=dynamic,
    )


# --------------------------------------------------------------------------- time settings

def _control_expressions(py_file: Path) -> dict[str, str]:
    """The non-literal entries of the generated ``_control_vars`` table, as Python source."""
    tree = ast.parse(py_file.read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_control_vars" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            out = {}
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Lambda):
                    body = value.body
                    literal = isinstance(body, ast.Constant) or (
                        isinstance(body, ast.UnaryOp) and isinstance(body.operand, ast.Constant)
                    )
                    if not literal:
                        out[str(key.value)] = ast.unparse(body)
            return out
    return {}


def _pysd_control_values(pysd_model, params: dict[str, Any], given: dict[str, float]) -> dict[str, float]:
    """Evaluate the four time settings exactly as PySD does before a run.

    ``params`` are constants set on the model (by Python name) and ``given`` are time
    settings set directly; a setting defined by an expression of others (Vensim's default
    ``SAVEPER = TIME STEP``) follows what it depends on.
    """
    clock = pysd_model.time
    pysd_model.components._init_outer_references({"scope": pysd_model, "time": clock})
    if params:
        pysd_model.set_components(params)
    if given:
        clock.set_control_vars(**given)
    out = {}
    for key in CONTROL_NAMES:
        try:
            if clock._time is None:
                # A setting that reads Time is taken at the initial time (which may itself
                # read Time: two rounds settle it).
                clock._time = 0.0
                clock._time = float(clock.initial_time())
                clock._time = float(clock.initial_time())
            out[key] = float(getattr(clock, key)())
        except Exception as exc:  # noqa: BLE001 - PySD raises whatever the expression raises
            raise ModelCompileError(
                f"the time setting '{key}' of model '{getattr(pysd_model, 'py_model_file', '')}' "
                f"cannot be evaluated: {type(exc).__name__}: {exc}"
            ) from None
    return out


def _names_in(source: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(source, mode="eval")) if isinstance(n, ast.Name)}


def control_inputs(model: CompiledModel) -> set[str]:
    """Constants (by Python name) that the model's time settings are computed from."""
    names: set[str] = set()
    for source in model.control_exprs.values():
        names.update(_names_in(source))
    return {n for n in names if n in model.elements and model.elements[n].kind == "constant"}


def control_values(
    model: CompiledModel, params: dict[str, Any] | None = None, given: dict[str, float] | None = None
) -> dict[str, float]:
    """The model's time settings under ``params`` (constants by Python name) and ``given``.

    Settings given directly win. A setting defined by an expression is evaluated again
    from what it depends on: ``SAVEPER = TIME STEP`` follows a new time step, and
    ``FINAL TIME = horizon`` follows a new value of the constant ``horizon``. Simple
    expressions of the other settings and of scalar constants are evaluated here; anything
    else goes through PySD itself.
    """
    params = dict(params or {})
    given = {k: float(v) for k, v in (given or {}).items() if v is not None}
    exprs = {k: v for k, v in model.control_exprs.items() if k not in given}
    if not exprs:
        return {**model.control, **given}
    names: set[str] = set()
    for source in exprs.values():
        names.update(_names_in(source))
    constants = {n for n in names if n in model.elements and model.elements[n].kind == "constant"}
    simple = names <= set(CONTROL_NAMES) | constants | {"np"} and all(
        np.ndim(params.get(n, 0.0)) == 0 and not isinstance(params.get(n), tuple)
        and (n in params or model.elements[n].default is not None)
        for n in constants
    )
    if not simple:
        return _pysd_control_values(model.load(), {k: v for k, v in params.items()}, given)
    values: dict[str, float] = {}
    busy: set[str] = set()

    def value_of(key: str) -> float:
        if key in values:
            return values[key]
        if key in given:
            values[key] = given[key]
        elif key not in exprs:
            values[key] = float(model.control[key])
        else:
            if key in busy:
                raise ModelCompileError(f"the time settings of model '{model.source.name}' refer to each other in a circle ({key})")
            busy.add(key)
            namespace: dict[str, Any] = {"np": np, "__builtins__": {}}
            for name in names:
                if name in CONTROL_NAMES:
                    namespace[name] = (lambda k: lambda: value_of(k))(name)
                elif name in constants:
                    v = float(params[name]) if name in params else float(model.elements[name].default)
                    namespace[name] = (lambda v: lambda: v)(v)
            values[key] = float(eval(exprs[key], namespace))  # noqa: S307 - PySD's own generated source
        return values[key]

    return {key: value_of(key) for key in CONTROL_NAMES}
