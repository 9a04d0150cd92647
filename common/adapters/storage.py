"""Where job outputs live: archive paths under one storage root.

Archive paths look absolute (``/products/v2/...``, as in the original catalog) but
are always taken relative to the configured root. Every path is confined to that
root: ``..`` components are refused outright, and a path that *resolves* outside
the root (through a symlink) is refused too, so a crafted archive path can neither
read nor write elsewhere on the machine.

Listing streams with ``os.scandir`` (no whole-tree lists in memory) and never
follows symlinks, so a link inside an archive cannot pull in files from outside it.
Checksums are read the same way: streamed, and never through a symlink.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelinejobs.errors import ValidationError


@dataclass(frozen=True)
class FileEntry:
    """One regular file found under an archive path."""

    relative: str  #: path relative to the archive path, with ``/`` separators
    size: int
    mtime: float
    #: where the file is on this machine (for reading its contents)
    path: str = ""


#: Bytes read at a time when hashing: big enough to be fast, small enough that a
#: huge output never sits whole in a worker's memory.
CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's contents, hex, read in chunks. ``O_NOFOLLOW``: a file
    swapped for a symlink after it was listed is refused (OSError), not followed
    out of the archive."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    digest = hashlib.sha256()
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb", buffering=0) as fh:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while n := fh.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


class LocalStorage:
    """Archive paths in a local directory."""

    def __init__(self, root: str | os.PathLike[str], system: str = "local") -> None:
        self.root = Path(root)
        self.system = system

    @staticmethod
    def normalise(archive_path: str) -> str:
        """``/a/b`` form of an archive path; ValidationError for ``..`` or empty parts."""
        if not isinstance(archive_path, str) or not archive_path.strip("/"):
            raise ValidationError(
                "an archive path must name a directory under the storage "
                "root, e.g. /products/v2/...",
                path="archive_path",
            )
        if "\x00" in archive_path or "\\" in archive_path:
            raise ValidationError(
                f"archive path {archive_path!r} has a forbidden character", path="archive_path"
            )
        parts = PurePosixPath(archive_path).parts
        if ".." in parts:
            raise ValidationError(
                f"archive path {archive_path!r} may not contain '..'", path="archive_path"
            )
        return "/" + "/".join(p for p in parts if p not in ("/", "."))

    def resolve(self, archive_path: str) -> Path:
        """The local directory for ``archive_path``, guaranteed inside the root."""
        clean = self.normalise(archive_path)
        root = self.root.resolve()
        target = (root / clean.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise ValidationError(
                f"archive path {archive_path!r} leads outside the storage root", path="archive_path"
            )
        return target

    def makedirs(self, archive_path: str) -> Path:
        target = self.resolve(archive_path)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, archive_path: str, relative: str, content: bytes) -> Path:
        """Write one file under an archive path (used by the inline launcher)."""
        base = self.makedirs(archive_path)
        rel = self.normalise(relative).lstrip("/")
        target = (base / rel).resolve()
        if not target.is_relative_to(base):
            raise ValidationError(
                f"output {relative!r} leads outside the archive path", path="outputs"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        return target

    def count_files(
        self, archive_path: str, stop: Callable[[], bool] = lambda: False
    ) -> int | None:
        """How many regular files :meth:`walk` would list under ``archive_path`` — the
        same rules (symlinks not followed), no ``stat`` of each file, so it runs well
        ahead of a walk that reads sizes and contents. None if ``stop()`` said so first
        (it is asked once per directory and every 1,000 entries)."""
        base = self.resolve(archive_path)
        if not base.is_dir():
            return 0
        count, looked, stack = 0, 0, [base]
        while stack:
            if stop():
                return None
            folder = stack.pop()
            try:
                entries = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            with entries:
                for entry in entries:
                    looked += 1
                    if looked % 1000 == 0 and stop():
                        return None
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            count += 1
                    except OSError:  # gone between the listing and the look
                        continue
        return count

    def walk(self, archive_path: str) -> Iterator[FileEntry]:
        """Every regular file under ``archive_path``, streamed, symlinks not followed."""
        base = self.resolve(archive_path)
        if not base.is_dir():
            return
        stack = [(base, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                entries = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            with entries:
                for entry in entries:
                    rel = f"{prefix}{entry.name}"
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), rel + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        yield FileEntry(rel, info.st_size, info.st_mtime, entry.path)
