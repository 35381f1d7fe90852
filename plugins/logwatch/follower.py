"""Following one log file by path, across rotation, truncation and restarts.

The position (:class:`Position`) says which file is being read (device and inode, plus a
fingerprint of its first bytes) and how far (the byte offset after the last complete line).
The source stores it in its durable state *after* emitting the events of the lines before it,
so a crash in between reads those lines again, under the same event ids (the inbox drops them).

What happens to the file:

* **not there yet**: wait; when it appears, read it from its start.
* **appended**: read complete lines; a partly written last line waits for its newline.
* **renamed away (rename rotation)** and a new file created at the path: finish the old file
  first (found again after a restart by device and inode among its siblings), then read the
  new one from its start. A last line the writer never ended is read once the old file has
  stopped changing.
* **copied and truncated (copytruncate)** or **truncated in place**: the offset is past the
  end or the first bytes changed. What was written between the last read and the copy is read
  from the copy (the sibling whose first bytes match), then the file from its start.

Event ids are ``<path hash>:<epoch>:<offset>``: the epoch counts the files seen at the path and
is stored with the offset, so a replay names each line as before, and a truncated file that
reaches the same offsets again does not collide with the old lines.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

HEAD_BYTES = 64
READ_BYTES = 1 << 20  # per read: bounds memory; a batch is at most this much text
ROTATION_SETTLE = 0.25  # a renamed file that stopped growing this long is finished
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")


@dataclass
class Position:
    dev: int | None = None  # None: the file did not exist; read it from the start when it does
    ino: int | None = None
    offset: int = 0
    head_len: int = 0
    head: str = ""  # sha256 of the file's first head_len bytes
    epoch: int = 0
    skip: bool = False  # inside an over-long line whose head was already read: drop to its newline
    lines: int = 0  # counters, for the operator
    cut: int = 0

    @classmethod
    def from_state(cls, value: dict | None) -> "Position | None":
        if not isinstance(value, dict):
            return None
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def as_state(self) -> dict:
        return asdict(self)


class Line(NamedTuple):
    text: str
    epoch: int
    offset: int
    cut: bool = False


@dataclass
class _Open:
    fd: int
    dev: int
    ino: int
    settled: tuple | None = None  # (size, since when) of a rotated file, to see it stop growing


class Follower:
    """Reads complete lines of the file at ``path``. Call :meth:`read` repeatedly; after the
    lines it returned are safely handled, call :meth:`commit` with the position it returned."""

    def __init__(self, path: str, position: Position | None, *, from_start: bool = False,
                 max_line: int = 8192) -> None:
        self.path = path
        self.key = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        self.max_line = max_line
        self.pos = position
        self.from_start = from_start
        self._current: _Open | None = None

    # -- public ----------------------------------------------------------------------------------

    def read(self) -> tuple[list[Line], Position]:
        """The next complete lines (possibly none) and the position after them, to be stored
        once the lines are handled (also when there are none: a first or a changed position)."""
        if self.pos is None:
            self.pos = self._first_position()
            return [], self.pos
        if self._current is None and not self._reopen():
            return [], self.pos
        lines, pos = self._read_current()
        if lines or pos != self.pos:
            return lines, pos
        return self._check_switch()

    def commit(self, pos: Position) -> None:
        if self._current is not None and (pos.dev, pos.ino) != (self._current.dev, self._current.ino):
            self.close()
        self.pos = pos

    def close(self) -> None:
        if self._current is not None:
            os.close(self._current.fd)
            self._current = None

    # -- where to start --------------------------------------------------------------------------

    def _first_position(self) -> Position:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return Position()  # read it from its start once it exists
        try:
            st = os.fstat(fd)
            offset = 0 if self.from_start else _after_last_newline(fd, st.st_size)
            head = os.pread(fd, HEAD_BYTES, 0)
        finally:
            os.close(fd)
        return Position(st.st_dev, st.st_ino, offset, len(head), _digest(head))

    def _reopen(self) -> bool:
        """Open the file the position names: at the path, or renamed next to it."""
        pos = self.pos
        if pos.dev is None:
            opened = self._open(self.path)
            if opened is None:
                return False
            self._current = opened
            self.pos = _replace(pos, dev=opened.dev, ino=opened.ino, offset=0, head_len=0, head="")
            return True
        for candidate in [self.path, *self._siblings()]:
            opened = self._open(candidate)
            if opened is None:
                continue
            if (opened.dev, opened.ino) == (pos.dev, pos.ino):
                self._current = opened
                return True
            os.close(opened.fd)
        # the file we were reading is gone: go on with whatever is at the path now
        opened = self._open(self.path)
        if opened is None:
            return False
        self._current = opened
        self.pos = _replace(pos, dev=opened.dev, ino=opened.ino, offset=0, head_len=0, head="",
                            epoch=pos.epoch + 1, skip=False)
        return True

    def _open(self, path: str) -> _Open | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        st = os.fstat(fd)
        return _Open(fd, st.st_dev, st.st_ino)

    def _siblings(self) -> list[str]:
        """Rotated copies: ``auth.log.1``, ``auth.log-20261204`` (not the compressed ones)."""
        directory, base = os.path.split(self.path)
        try:
            names = os.listdir(directory or ".")
        except OSError:
            return []
        found = [os.path.join(directory, n) for n in names
                 if n != base and (n.startswith(base + ".") or n.startswith(base + "-"))
                 and not n.endswith(COMPRESSED)]
        return sorted(found)

    # -- reading ---------------------------------------------------------------------------------

    def _read_current(self) -> tuple[list[Line], Position]:
        cur, pos = self._current, self.pos
        size = os.fstat(cur.fd).st_size
        if size < pos.offset or not self._head_matches(cur.fd, pos):
            return self._truncated(size)
        if size == pos.offset:
            return [], pos
        data = os.pread(cur.fd, min(READ_BYTES, size - pos.offset), pos.offset)
        return self._split(data, pos, final=False)

    def _split(self, data: bytes, pos: Position, *, final: bool) -> tuple[list[Line], Position]:
        """Complete lines in ``data`` (read at ``pos.offset``); ``final``: the file will not
        grow, so an unterminated last line counts as a line."""
        lines: list[Line] = []
        offset, skip, cut_count, epoch = pos.offset, pos.skip, pos.cut, pos.epoch
        start, end = 0, len(data)
        if skip:  # the rest of an over-long line whose head was already read
            newline = data.find(b"\n")
            if newline < 0:
                return [], _replace(pos, offset=offset + end)
            start, skip = newline + 1, False
            offset += start
        last = data.rfind(b"\n", start)
        if last >= 0:
            body = data[start:last]
            limit = self.max_line
            make = Line._make
            if body.isascii():  # the common case: characters are bytes, decode once
                for text in body.decode("ascii").split("\n"):
                    length = len(text)
                    if length > limit or text.endswith("\r"):
                        cut = length > limit
                        cut_count += cut
                        text = text[:limit].removesuffix("\r") if cut else text[:-1]
                        lines.append(make((text, epoch, offset, cut)))
                    else:
                        lines.append(make((text, epoch, offset, False)))
                    offset += length + 1
            else:
                for part in body.split(b"\n"):
                    length = len(part)
                    cut = length > limit
                    cut_count += cut
                    lines.append(make((_text(part[:limit]), epoch, offset, cut)))
                    offset += length + 1
            start = last + 1
        rest = end - start
        if rest > self.max_line:  # too long to wait for its end: cut it now, drop the rest later
            lines.append(Line(_text(data[start:start + self.max_line]), epoch, offset, True))
            cut_count += 1
            skip, offset = True, offset + rest
        elif rest and final:
            lines.append(Line(_text(data[start:end]), epoch, offset, False))
            offset += rest
        if pos.head_len < HEAD_BYTES and self._current is not None:
            pos = self._grow_head(pos)
        return lines, _replace(pos, offset=offset, skip=skip, lines=pos.lines + len(lines), cut=cut_count)

    def line_id(self, line: "Line") -> str:
        """The event id of a line: where it is, in which file seen at the path."""
        return f"{self.key}:{line.epoch}:{line.offset}"

    # -- changes of file -------------------------------------------------------------------------

    def _check_switch(self) -> tuple[list[Line], Position]:
        """At the end of the current file: has another file taken its place at the path? Then
        the rest of this one (an unterminated last line), and the position in the new one."""
        cur = self._current
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], self.pos
        if (st.st_dev, st.st_ino) == (cur.dev, cur.ino):
            return [], self.pos
        size = os.fstat(cur.fd).st_size
        now = time.monotonic()
        if cur.settled is None or cur.settled[0] != size:
            cur.settled = (size, now)
        if now - cur.settled[1] < ROTATION_SETTLE:
            return [], self.pos  # the writer may still be finishing the old file: look again
        lines: list[Line] = []
        if size > self.pos.offset:  # an unterminated last line: the writer has moved on
            data = os.pread(cur.fd, min(READ_BYTES, size - self.pos.offset), self.pos.offset)
            lines, _ = self._split(data, self.pos, final=True)
        return lines, _replace(self.pos, dev=st.st_dev, ino=st.st_ino, offset=0, head_len=0, head="",
                               epoch=self.pos.epoch + 1, skip=False, lines=self.pos.lines + len(lines))

    def _truncated(self, size: int) -> tuple[list[Line], Position]:
        """The file was truncated (copytruncate, or ``> file``): first read what its copy holds
        past our offset, then the file from its start, as a new epoch."""
        cur, pos = self._current, self.pos
        lines: list[Line] = []
        for sibling in self._siblings():
            copy = self._open(sibling)
            if copy is None:
                continue
            try:
                copy_size = os.fstat(copy.fd).st_size
                if copy_size >= pos.offset and self._head_matches(copy.fd, pos):
                    data = os.pread(copy.fd, min(READ_BYTES, copy_size - pos.offset), pos.offset)
                    lines, _ = self._split(data, pos, final=True)
                    break
            finally:
                os.close(copy.fd)
        new = _replace(pos, offset=0, head_len=0, head="", epoch=pos.epoch + 1, skip=False,
                       lines=pos.lines + len(lines))
        return lines, new

    def _head_matches(self, fd: int, pos: Position) -> bool:
        if pos.head_len == 0:
            return True
        return _digest(os.pread(fd, pos.head_len, 0)) == pos.head

    def _grow_head(self, pos: Position) -> Position:
        head = os.pread(self._current.fd, HEAD_BYTES, 0)
        if len(head) > pos.head_len and _digest(head[:pos.head_len]) == pos.head:
            return _replace(pos, head_len=len(head), head=_digest(head))
        return pos


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace(pos: Position, **changes) -> Position:
    return Position(**{**pos.as_state(), **changes})


def _after_last_newline(fd: int, size: int) -> int:
    """Where reading "from the end" starts: after the last complete line, so that a line being
    written at start-up is read whole."""
    back = min(size, 1 << 16)
    tail = os.pread(fd, back, size - back)
    newline = tail.rfind(b"\n")
    if newline >= 0:
        return size - back + newline + 1
    return 0 if back == size else size
