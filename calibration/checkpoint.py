"""Checkpoints: every finished batch of model evaluations is kept, so a killed fit resumes.

The optimisers are deterministic given the seed, so a resumed fit replays the same
sequence of calls: every batch already evaluated is answered from the checkpoint (checked
to be the very same parameter rows), and model runs start again exactly where the killed
process stopped. Nothing finished is lost and the final result equals an uninterrupted
run's.

On disk, beside the output (``fit.nc.checkpoint/``):

- ``meta.json``: a fingerprint of the spec, data, model and seed (written atomically);
- ``journal.bin``: one record per batch appended and flushed as soon as it is computed
  (length and CRC per record, so a record torn by a kill is detected and dropped);
- ``snapshot.npz``: every batch so far, rewritten atomically at regular intervals (the
  journal then restarts), so the journal stays short.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from pysd_runner import atomic_write

from .errors import CheckpointError

_MAGIC = b"CDCK"
_HEADER = struct.Struct("<4sIIIIIII")  # magic, seq, tag, n, p, k, crc, reserved


class Store:
    """Batches of (tag, X, Y) in call order, optionally persisted to a checkpoint folder."""

    def __init__(self, folder: str | os.PathLike | None = None, *, fingerprint: dict | None = None,
                 resume: bool = False, interval: float = 5.0):
        self.folder = Path(folder) if folder is not None else None
        self.records: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.position = 0          # next call index
        self.replayed = 0          # batches answered from the checkpoint
        self.interval = interval
        self._journal = None
        self._last_snapshot = time.monotonic()
        self._snapshot_count = 0
        self.fingerprint = fingerprint or {}
        if self.folder is None:
            return
        meta_path = self.folder / "meta.json"
        if resume and meta_path.is_file():
            try:
                stored = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"checkpoint '{self.folder}' is unreadable ({exc}); start again with --force")
            if stored.get("fingerprint") != self.fingerprint:
                changed = sorted(k for k in set(stored.get("fingerprint", {})) | set(self.fingerprint)
                                 if stored.get("fingerprint", {}).get(k) != self.fingerprint.get(k))
                raise CheckpointError(
                    f"checkpoint '{self.folder}' belongs to a different fit (changed: {', '.join(changed)}); "
                    "run without --resume and with --force to start again"
                )
            self._load()
        else:
            if self.folder.exists():
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
            atomic_write(meta_path, json.dumps({"fingerprint": self.fingerprint, "created": time.time()}),
                         what="checkpoint", fsync=True)
        self._journal = open(self.folder / "journal.bin", "ab")

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        snapshot = self.folder / "snapshot.npz"
        if snapshot.is_file():
            with np.load(snapshot) as data:
                count = int(data["count"])
                for i in range(count):
                    self.records.append((int(data[f"tag{i}"]), data[f"x{i}"], data[f"y{i}"]))
        self._snapshot_count = len(self.records)
        journal = self.folder / "journal.bin"
        if journal.is_file():
            raw = journal.read_bytes()
            offset = 0
            while offset + _HEADER.size <= len(raw):
                magic, seq, tag, n, p, k, crc, _ = _HEADER.unpack_from(raw, offset)
                size = 8 * n * (p + k)
                body = raw[offset + _HEADER.size: offset + _HEADER.size + size]
                if magic != _MAGIC or len(body) < size or zlib.crc32(body) != crc:
                    break  # a record torn by the kill: everything before it is intact
                offset += _HEADER.size + size
                if seq < len(self.records):
                    continue  # already in the snapshot
                if seq != len(self.records):
                    break
                values = np.frombuffer(body, dtype="<f8")
                self.records.append((tag, values[: n * p].reshape(n, p).copy(), values[n * p:].reshape(n, k).copy()))
            # Drop a torn tail so new records follow the last good one.
            with open(journal, "r+b") as handle:
                handle.truncate(offset)

    # ------------------------------------------------------------------ the memo
    def call(self, tag: int, x: np.ndarray, compute) -> np.ndarray:
        """``compute(x)`` for the next batch, or its stored answer when replaying."""
        x = np.ascontiguousarray(x, dtype="<f8")
        if self.position < len(self.records):
            stored_tag, stored_x, stored_y = self.records[self.position]
            if stored_tag != tag or stored_x.shape != x.shape or not np.array_equal(stored_x, x):
                raise CheckpointError(
                    f"checkpoint '{self.folder}' does not match this run at batch {self.position} (the optimiser "
                    "asked for different parameters); run without --resume and with --force to start again"
                )
            self.position += 1
            self.replayed += 1
            return stored_y.copy()
        y = np.ascontiguousarray(compute(x), dtype="<f8")
        if y.ndim == 1:
            y = y[:, None]
        self.records.append((tag, x.copy(), y.copy()))
        self.position += 1
        if self._journal is not None:
            body = x.tobytes() + y.tobytes()
            header = _HEADER.pack(_MAGIC, len(self.records) - 1, tag, x.shape[0], x.shape[1], y.shape[1],
                                  zlib.crc32(body), 0)
            self._journal.write(header + body)
            self._journal.flush()
            if time.monotonic() - self._last_snapshot >= self.interval:
                self.snapshot()
        return y

    def snapshot(self) -> None:
        """Write every batch so far atomically, then restart the journal."""
        if self.folder is None:
            return
        arrays = {"count": np.array(len(self.records))}
        for i, (tag, x, y) in enumerate(self.records):
            arrays[f"tag{i}"] = np.array(tag)
            arrays[f"x{i}"] = x
            arrays[f"y{i}"] = y
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self.folder / "snapshot.npz", buffer.getvalue(), what="checkpoint", fsync=True)
        self._snapshot_count = len(self.records)
        self._journal.close()
        self._journal = open(self.folder / "journal.bin", "wb")
        self._last_snapshot = time.monotonic()

    @property
    def evaluations(self) -> int:
        return int(sum(x.shape[0] for _, x, _ in self.records))

    def close(self, *, remove: bool = False) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if remove and self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder)
