"""The child side of :mod:`taskengine_core.plugin_processes`: ``python -P -m`` this module.

Its standard input brings, first, one JSON line: ``entry`` ("module:function"), ``name``,
``database`` (a path or a ``postgresql://`` URL), ``listen`` and ``log_level``. Then one JSON
line per wake-up, ``{"wake": HINT}`` (``null``: look at everything). End of input (the engine
stopped or died) or SIGTERM stops it: the work's ``stop()`` is called and the process exits 0.
It exits 2 when the work cannot start (the engine logs that and starts it again later).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("taskengine.processes")


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to act on
    header = _header()
    if header is None:
        return 0  # the engine stopped before it said anything
    from taskengine_core.secrets import RedactingFilter

    secrets = _secrets()
    logging.basicConfig(level=header.get("log_level", logging.INFO),
                        format=f"%(asctime)s %(levelname)s %(name)s [{header['name'].replace('%', '%%')} "
                               f"pid {os.getpid()}]: %(message)s")
    for handler in logging.getLogger().handlers:  # what it logs never shows a secret
        handler.addFilter(RedactingFilter(secrets.redactor))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        work = _entry(header["entry"])(_engine_info(header, secrets))
    except Exception:  # noqa: BLE001 - said in the log; the engine starts the process again
        log.exception("%s could not start %s", header["name"], header["entry"])
        return 2
    reader = threading.Thread(target=_read_wakes, args=(work, stop), daemon=True)
    reader.start()
    while not stop.wait(1.0):  # a timed wait lets SIGTERM's handler run
        pass
    work.stop()
    return 0


def _header() -> dict | None:
    """The first line, read a byte at a time: what follows it is the wake-ups' reader's."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            return None
        line += byte
    return json.loads(line)


def _secrets():
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.secrets import SecretResolver

    return SecretResolver(get_plugin_manager().hook)


def _entry(entry: str):
    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)


def _engine_info(header: dict, secrets):
    """What ``engine_started`` gets in the engine, on the same database, from this process."""
    from taskengine_core.context import EngineInfo
    from taskengine_core.deliveries import open_deliveries
    from taskengine_core.events import Event, insert_events
    from taskengine_core.model import load_settings
    from taskengine_core.wakeup import poke

    deliveries = open_deliveries(header["database"])

    def emit(type: str, data: dict | None = None, *, source: str = "api",  # noqa: A002
             id: str | None = None) -> str:  # noqa: A002
        store = deliveries.store()
        [event_id] = insert_events(store, [Event(type, data or {}, source=source, source_id=id)])
        poke(store)  # the engine evaluates it now, not at its next poll
        return event_id

    settings = load_settings(deliveries.store())
    return EngineInfo(listen=header.get("listen"), emit=emit, settings=settings,
                      resolve=secrets.resolve, redact=secrets.redactor.scrub, deliveries=deliveries)


def _read_wakes(work, stop: threading.Event) -> None:
    # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader makes the
    # interpreter abort at exit (the reader's lock is held), after a SIGTERM say
    pending = b""
    try:
        while chunk := os.read(0, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                try:
                    hint = json.loads(line).get("wake")
                except (ValueError, AttributeError):
                    log.warning("ignored a malformed wake-up line from the engine")
                    continue
                work.wake(hint if isinstance(hint, str) else None)
    finally:
        stop.set()  # end of input: the engine stopped, or died


if __name__ == "__main__":
    sys.exit(main())
