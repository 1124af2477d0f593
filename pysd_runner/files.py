"""Files written by the toolkit: every write is atomic, and output paths are checked first.

A result, a report, a cache entry or a checkpoint is written under a temporary name in
its folder and renamed into place, so an interrupted write never leaves a half-written
file or destroys an earlier one. :func:`check_output` checks a path before any work
starts; every failure is an :class:`~pysd_runner.errors.OutputError` naming the path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError

__all__ = ["check_output", "atomic_output", "atomic_write"]


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None, *, what: str = "output") -> Path:
    """Check, before any work, that a result can be written at ``path``; return it.

    The extension must be one of ``suffixes``; the path must not be a folder; its folder
    is created if missing and must take a new file. Raises :class:`OutputError` naming the
    path, what is wrong and what is allowed.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        allowed = f" ending in {' or '.join(suffixes)}" if suffixes else ""
        raise OutputError(f"{what} '{target}' is a folder; give a file name{allowed}")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise OutputError(
            f"{what} '{target}' has extension '{target.suffix}'; allowed: {', '.join(suffixes)}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{what} '{target}' cannot be written: {reason} ('{exc.filename or target.parent}')") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{what} '{target}' cannot be written: the file exists and is read-only")
    return target


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class atomic_output:
    """``with atomic_output(path) as tmp:`` write ``tmp``; it replaces ``path`` on success.

    Nothing is left behind on failure or interruption (an earlier file at ``path`` stays
    whole), and the file gets the mode a plain ``open`` would give (the umask's).
    """

    def __init__(self, path: str | os.PathLike, what: str = "output"):
        self.target = Path(path).expanduser()
        self.what = what
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        except OSError as exc:
            raise OutputError(f"{self.what} '{self.target}' cannot be written: {exc.strerror or exc}") from None
        os.close(handle)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, kind, value, tb) -> bool:
        assert self.tmp is not None
        if kind is None:
            try:
                os.chmod(self.tmp, _umask_mode())
                os.replace(self.tmp, self.target)
                return False
            except OSError as exc:
                self.tmp.unlink(missing_ok=True)
                raise OutputError(f"{self.what} '{self.target}' cannot be written: {exc.strerror or exc}") from None
        self.tmp.unlink(missing_ok=True)
        if isinstance(value, OSError) and not isinstance(value, OutputError):
            raise OutputError(
                f"{self.what} '{self.target}' cannot be written: {value.strerror or value}"
            ) from None
        return False


def atomic_write(path: str | os.PathLike, data: str | bytes, *, what: str = "file", fsync: bool = False) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; return the path.

    With ``fsync`` the data reach the disk before the rename (checkpoints that must
    survive a power cut). Raises :class:`OutputError` naming ``what`` and the path.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "note.txt", "kept whole").read_text()
    'kept whole'
    """
    with atomic_output(path, what) as tmp:
        with open(tmp, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
    return Path(path).expanduser()
