"""Waking the source when a watched file changes, instead of at the next poll.

inotify on the directories that hold the watched files (through libc with ctypes: no extra
package), plus the journalctl pipe, are only a wake-up: the source still looks at every file at
each poll, so a missed or unsupported notification (another OS, a network file system, a
directory created later) costs at most one poll interval.
"""

from __future__ import annotations

import ctypes
import os
import select

# from <sys/inotify.h>
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
SETTLE = 0.01  # after a wake-up, let a writer finish its burst so it is read in one batch


class Wakeup:
    def __init__(self, directories) -> None:
        self.fd: int | None = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return  # not Linux: poll only
        if fd < 0:
            return
        for directory in dict.fromkeys(directories):
            libc.inotify_add_watch(fd, os.fsencode(directory), MASK)  # a missing directory: poll only
        self.fd = fd

    def wait(self, stopping, timeout: float, pipes=()) -> None:
        """Until something changed, ``timeout`` passed or ``stopping`` is set (then within
        ``timeout``)."""
        fds = ([self.fd] if self.fd is not None else []) + [p for p in pipes if p is not None]
        if not fds:
            stopping.wait(timeout)
            return
        ready, _, _ = select.select(fds, [], [], timeout)
        if self.fd is not None and self.fd in ready:
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass
        if ready:
            stopping.wait(SETTLE)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
