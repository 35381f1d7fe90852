"""One libvirt connection per URI per process, and libvirt's event loop thread.

Sharing matters twice: libvirt's test driver gives every connection its own private copy of
the node file (an action on one connection would be invisible to another, and its events
fire only there), and a production ``qemu:///system`` needs no second socket to libvirtd for
the source and each action.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from .model import HostUnreachable, VmError

INSTALL_HINT = ("the libvirt Python binding is not installed: run "
                "\"pip install 'taskengine-core[libvirt]'\" (it builds against libvirt's headers: "
                "apt-get install libvirt-dev, or dnf install libvirt-devel, first)")
LOOP_TICK_MS = 200  # the loop wakes at least this often, so stopping it is prompt

_lock = threading.Lock()
_connections: dict[str, Any] = {}
_loop_thread: threading.Thread | None = None
_loop_stop = threading.Event()


def libvirt_module():
    """``import libvirt``, or a clear error saying what to install."""
    try:
        import libvirt
    except ImportError:
        raise VmError(INSTALL_HINT) from None
    return libvirt


def ensure_event_loop() -> None:
    """Start libvirt's default event loop in a daemon thread (once per process). It must be
    registered before the first connection is opened, or events cannot be subscribed to."""
    global _loop_thread
    libvirt = libvirt_module()
    with _lock:
        if _loop_thread is not None and _loop_thread.is_alive():
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors raise; no stderr noise
        libvirt.virEventRegisterDefaultImpl()
        libvirt.virEventAddTimeout(LOOP_TICK_MS, lambda _timer, _opaque: None, None)
        _loop_stop.clear()
        _loop_thread = threading.Thread(target=_run_loop, args=(libvirt,),
                                        name="taskengine-libvirt-events", daemon=True)
        _loop_thread.start()


def close_all() -> None:
    """Stop the event loop and close every connection (at exit: libvirt's own finalisers
    would otherwise run after the module is torn down and print tracebacks)."""
    _loop_stop.set()
    if _loop_thread is not None:
        _loop_thread.join(timeout=1)
    with _lock:
        connections = list(_connections.values())
        _connections.clear()
    for conn in connections:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing at exit: nothing left to tell
            pass


atexit.register(close_all)


def _run_loop(libvirt) -> None:
    while not _loop_stop.is_set():
        libvirt.virEventRunDefaultImpl()


def connection(uri: str, host: str):
    """The process's connection to ``uri`` (opened on first use, reopened when it died)."""
    libvirt = libvirt_module()
    ensure_event_loop()
    with _lock:
        conn = _connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            _connections.pop(uri, None)
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise connect_error(host, uri, exc) from None
        try:
            conn.setKeepAlive(5, 3)  # notice a dead libvirtd; the test driver does not support it
        except libvirt.libvirtError:
            pass
        _connections[uri] = conn
        return conn


def forget(uri: str, conn) -> None:
    """Drop a broken connection so the next use opens a new one."""
    with _lock:
        if _connections.get(uri) is conn:
            del _connections[uri]


def connect_error(host: str, uri: str, exc) -> VmError:
    from .libvirt_errors import AUTH_CODES

    code = exc.get_error_code()
    text = exc.get_error_message() or str(exc)
    if code in AUTH_CODES or "Permission denied" in text:
        from .model import AuthFailed

        return AuthFailed(f"host {host!r}: libvirt refused the connection to {uri} (error {code}: "
                          f"{text}); run taskengine as a member of the 'libvirt' group, or fix "
                          f"the URI's credentials")
    return HostUnreachable(f"host {host!r}: cannot connect to libvirt at {uri} (error {code}: "
                           f"{text}); check that libvirtd runs there and the URI is right")
