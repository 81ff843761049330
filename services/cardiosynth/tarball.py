"""A job's files as one uncompressed tar, written as a stream (pure: no Redis, no object store).

:func:`write_tar` takes ``(name, read)`` pairs and writes each member as it is read: only one member's
bytes are in memory at a time, and the tar goes straight to a file, so memory does not grow with the
number of members. The tar is reproducible: the same members in the same order give the same bytes
(fixed mtime, owner, mode and format), so a rebuilt archive has the checksum of the first one.

Uncompressed on purpose: a job's NIfTI files are gzip already, and a second compression would cost CPU
for a few percent.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

# Read one member's bytes (the object store's ``get_bytes`` of its key, say).
Read = Callable[[], bytes]
# Called after each member with (members written, bytes written so far).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TarMember:
    name: str
    size: int
    sha256: str


@dataclass
class TarSummary:
    """What was written: the tar's size and SHA-256, and every member in order with its own."""

    bytes: int = 0
    sha256: str = ""
    members: list[TarMember] = field(default_factory=list)


class _Hashing(io.RawIOBase):
    """A write-only stream that counts and hashes what passes through to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.hash, self.count = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = memoryview(data)
        self.out.write(view)
        self.hash.update(view)
        self.count += len(view)
        return len(view)


def check_name(name: str) -> str:
    """``name`` if it is a safe member name (relative, no ``..``, no empty part); ``ValueError`` naming it."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise ValueError(f"invalid tar member name {name!r}: use relative a/b/c names without '..'")
    return name


def write_tar(
    out: BinaryIO, members: Iterable[tuple[str, Read]], *, mtime: int = 0, progress: Progress | None = None
) -> TarSummary:
    """Write ``members`` (name, read) in the given order into ``out`` as one uncompressed POSIX tar;
    return its size, SHA-256 and each member's size and SHA-256. ``ValueError`` naming a member whose
    name is unsafe or repeated (nothing meaningful is left in ``out`` then: the caller discards it)."""
    if mtime < 0:
        raise ValueError(f"mtime must be >= 0, got {mtime}")
    sink = _Hashing(out)
    summary = TarSummary()
    seen: set[str] = set()
    # "w|": a pure stream (no seeks on ``out``); PAX keeps long names exact.
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, read in members:
            if check_name(name) in seen:
                raise ValueError(f"tar member {name!r} given twice")
            seen.add(name)
            data = read()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
            summary.members.append(TarMember(name, len(data), hashlib.sha256(data).hexdigest()))
            del data  # one member in memory at a time
            if progress is not None:
                progress(len(summary.members), sink.count)
    summary.bytes, summary.sha256 = sink.count, sink.hash.hexdigest()
    return summary
