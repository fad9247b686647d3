"""Append-only files that hold the spool's big event blobs, next to its SQLite file.

Only a blob over ``spool.INLINE_BYTES`` comes here; a smaller one stays in its row.
A big spooled batch is a few megabytes of events that usually live for a fraction of
a second, until the broker acknowledges them. Kept inside SQLite, each blob went
through the WAL, was copied into the database file by a checkpoint and fsynced
there (6-18 ms in whichever commit crossed the threshold, every few batches, and a
final checkpoint of tens of megabytes at close), and was freed moments later. In a
file of their own they cost one ``write`` each, and a file whose blobs are all
acknowledged is unlinked, so most of them never reach the disk.

The spool's rows point into these files (``BlobRef``: segment, offset, length,
CRC-32). A blob is written before the row pointing to it is committed, so a crash
in between leaves bytes no row points to; the next open deletes every file no row
points to. With ``sync=True`` each blob is fsynced before its row is committed.
Without it, a power cut can keep a committed row whose blob never reached the
disk (SQLite's own commits are not fsynced either then); the CRC tells, and
``damaged`` names such blobs instead of their events being sent damaged.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

SEGMENT_BYTES = 64 << 20  # a new file once the active one is this long


class BlobRef(NamedTuple):
    segment: int
    offset: int
    length: int
    crc: int


class DamagedBlob(RuntimeError):
    """A spooled blob does not read back as written (a power cut, a damaged disk)."""


class Segments:
    """Not thread-safe: the spool calls it under its lock."""

    def __init__(self, directory: Path, live: Iterable[int], sync: bool = False) -> None:
        """``live``: the segment of every blob a row still points to; other files go."""
        self.directory = directory
        self._sync = sync
        directory.mkdir(exist_ok=True)
        self._live: Counter[int] = Counter(live)
        numbers = [self._live_or_remove(path) for path in directory.glob("*.seg")]
        self._readers: dict[int, int] = {}
        self._active = max([0, *numbers, *self._live]) + 1
        self._fd = self._create(self._active)
        self._size = 0

    def _live_or_remove(self, path: Path) -> int:
        number = int(path.stem) if path.stem.isdigit() else 0
        if number not in self._live:
            path.unlink()
        return number

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:08d}.seg"

    def _create(self, segment: int) -> int:
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self._sync:  # the new name must survive as well as what is written into it
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return fd

    def write(self, blob: bytes) -> BlobRef:
        """Append ``blob``; the caller commits a row with the returned ref, or ``release``s it."""
        if self._size and self._size + len(blob) > SEGMENT_BYTES:
            self._rotate()
        ref = BlobRef(self._active, self._size, len(blob), zlib.crc32(blob))
        try:
            view, written = memoryview(blob), 0
            while written < len(blob):
                written += os.write(self._fd, view[written:])
            if self._sync:
                os.fsync(self._fd)
        except OSError:
            self._rotate()  # part of the blob may be in the file: nothing more goes there
            raise
        self._size += len(blob)
        self._live[self._active] += 1
        return ref

    def read(self, ref: BlobRef) -> bytes:
        fd = self._readers.get(ref.segment)
        if fd is None:
            fd = self._readers[ref.segment] = os.open(self._path(ref.segment), os.O_RDONLY)
        data = os.pread(fd, ref.length, ref.offset)
        if len(data) != ref.length or zlib.crc32(data) != ref.crc:
            raise DamagedBlob(
                f"{self._path(ref.segment)} at {ref.offset}: {len(data)} of {ref.length} bytes "
                "read back, or not as written"
            )
        return data

    def damaged(self, ref: BlobRef) -> bool:
        try:
            self.read(ref)
        except (DamagedBlob, FileNotFoundError):
            return True
        return False

    def release(self, segment: int) -> None:
        """A blob of ``segment`` is no longer pointed to; the file goes with its last blob."""
        self._live[segment] -= 1
        if self._live[segment] <= 0 and segment != self._active:
            self._remove(segment)

    def _rotate(self) -> None:
        os.close(self._fd)
        old, self._active, self._size = self._active, self._active + 1, 0
        self._fd = self._create(self._active)
        if self._live[old] <= 0:
            self._remove(old)

    def _remove(self, segment: int) -> None:
        self._live.pop(segment, None)
        fd = self._readers.pop(segment, None)
        if fd is not None:
            os.close(fd)
        self._path(segment).unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._fd)
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        if self._live[self._active] <= 0:
            self._path(self._active).unlink(missing_ok=True)
