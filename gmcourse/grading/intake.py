"""Which files are submissions, and whose: unique student ids, refusals with a reason.

- The student id is the file name's stem (``submissions/alice.ipynb`` -> ``alice``). When two
  files share a stem (``a/alice.ipynb``, ``b/alice.ipynb``), both get the name of their folder
  (``alice~a``, ``alice~b``); an id is never reused, whatever other files are called
  (``alice-2.ipynb`` stays ``alice-2``). Every path given gets exactly one row; the same file
  given twice is graded once, and the second mention gets a row that says so.
- A path that is a symbolic link (or reached through one), a directory, a FIFO, a device or
  anything but a regular file is refused with the reason, before anything reads it; so is a
  file larger than ``MAX_NOTEBOOK_BYTES``. The bytes are read once, through a descriptor opened
  with ``O_NOFOLLOW | O_NONBLOCK``.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_NOTEBOOK_BYTES = 20 * 2**20


@dataclass
class Entry:
    student: str
    path: Path
    data: bytes | None = None
    refusal: str = ""


def read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, or ValueError if it is not a plain file reached without a link."""
    try:
        info = os.lstat(path)
    except OSError as error:
        raise ValueError(f"cannot be read: {error.strerror}")
    if stat.S_ISLNK(info.st_mode):
        raise ValueError("is a symbolic link: submit the notebook file itself")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ValueError(f"is {kind}: submit one notebook file")
    absolute = Path(os.path.abspath(path))
    if Path(os.path.realpath(absolute.parent)) != absolute.parent:
        raise ValueError("is reached through a symbolic link: copy the notebooks into a plain folder")
    if info.st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise ValueError("changed while it was being read")
        chunks, size = [], 0
        while size <= MAX_NOTEBOOK_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _safe(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip() or "unnamed"


def student_ids(paths: list[Path]) -> list[str]:
    """One distinct id per path, in order (see the module docstring)."""
    stems = [_safe(Path(p).stem) for p in paths]
    count: dict[str, int] = {}
    for stem in stems:
        count[stem] = count.get(stem, 0) + 1
    taken = {stem for stem in stems if count[stem] == 1}
    ids = []
    for path, stem in zip(paths, stems):
        if count[stem] == 1:
            ids.append(stem)
            continue
        base = f"{stem}~{_safe(Path(os.path.abspath(path)).parent.name)}"
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}~{n}", n + 1
        taken.add(candidate)
        ids.append(candidate)
    return ids


def collect(paths: list[Path]) -> list[Entry]:
    """One entry per path given, each with its bytes or the reason it is refused."""
    entries, seen = [], {}
    for student, path in zip(student_ids(paths), paths):
        entry = Entry(student, Path(path))
        try:
            entry.data = read_regular_file(Path(path))
            key = os.stat(path).st_dev, os.stat(path).st_ino
            if key in seen:
                entry.data, entry.refusal = None, f"the same file as {seen[key]}'s, graded once there"
            else:
                seen[key] = student
        except ValueError as error:
            entry.refusal = f"refused: {Path(path).name} {error}"
        entries.append(entry)
    return entries
