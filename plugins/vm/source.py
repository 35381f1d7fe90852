"""The ``vm`` event source: one watcher thread per host of ``settings.vm.hosts``.

libvirt pushes lifecycle events through its event loop; VergeOS and Proxmox are polled (one
listing request per interval). On every (re)connect a watcher compares the live states with
the last ones it recorded and emits what changed meanwhile, marked ``reconciled: true``. A
lost host is retried with backoff and reported once as ``vm.host_unreachable``, then
``vm.host_reachable``.
"""

from __future__ import annotations

import logging
import queue
import threading

from taskengine_core.durations import parse_duration

from .events import from_libvirt
from .hosts import backend
from .model import HostUnreachable, VmError, VmInfo
from .schema import DEFAULT_POLL, MIN_VERGEOS_POLL
from .tracker import Tracker

log = logging.getLogger("taskengine.vm")
MAX_BACKOFF = 60.0
ALIVE_CHECK = 1.0  # seconds between connection checks while no event comes


def run_source(ctx) -> None:
    """The trigger's entry point: watch every host until the engine stops."""
    settings = ctx.settings or {}
    if settings.get("events") is False:
        return
    threads = []
    for name, config in sorted((settings.get("hosts") or {}).items()):
        watcher = (LibvirtWatcher if config.get("type") == "libvirt" else PollWatcher)(ctx, name, config)
        thread = threading.Thread(target=watcher.run, name=f"taskengine-vm-{name}", daemon=True)
        thread.start()
        threads.append(thread)
    ctx.stopping.wait()
    for thread in threads:
        thread.join(timeout=5)


class Watcher:
    def __init__(self, ctx, name: str, config: dict) -> None:
        self.ctx, self.name, self.config = ctx, name, config
        self.tracker = Tracker(ctx, name)

    def run(self) -> None:
        backoff = 1.0
        while not self.ctx.stopping.is_set():
            try:
                self.watch()  # returns when stopping; raises when the host is lost
                return
            except VmError as exc:
                log.warning("%s; retrying in %.0fs", exc, backoff)  # the message names the host
                self._report_lost(str(exc))
            except Exception:  # noqa: BLE001 - a bug must not end the watcher for good
                log.exception("VM host %s: watcher failed; retrying in %.0fs", self.name, backoff)
            self.ctx.stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _report_lost(self, error: str) -> None:
        try:
            self.tracker.unreachable(error)
        except Exception:  # noqa: BLE001 - the store is busy or gone: said again next round
            log.exception("VM host %s: could not record the lost connection", self.name)

    def watch(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class PollWatcher(Watcher):
    """VergeOS and Proxmox: list every VM each ``poll_interval`` (one request)."""

    def interval(self) -> float:
        kind = self.config.get("type")
        seconds = parse_duration(self.config.get("poll_interval", DEFAULT_POLL.get(kind) or 60))
        return max(seconds, MIN_VERGEOS_POLL) if kind == "vergeos" else max(seconds, 1.0)

    def watch(self) -> None:
        be = backend(self.name, self.config)
        reconciled = True  # the first listing after (re)connecting covers the time away
        while not self.ctx.stopping.is_set():
            vms = be.list_vms()
            self.tracker.reachable()
            self.tracker.reconcile(vms, reconciled=reconciled,
                                   reason="reconciled" if reconciled else "polled")
            reconciled = False
            self.ctx.stopping.wait(self.interval())


class LibvirtWatcher(Watcher):
    """libvirt: lifecycle callbacks on the shared connection, handled on this thread."""

    def __init__(self, ctx, name: str, config: dict) -> None:
        super().__init__(ctx, name, config)
        self.queue: queue.Queue = queue.Queue()

    def _callback(self, _conn, dom, event, detail, _opaque) -> None:
        self.queue.put((dom, event, detail))  # libvirt's loop thread: hand over, nothing more

    def watch(self) -> None:
        from . import libvirt_conn

        libvirt = libvirt_conn.libvirt_module()
        be = backend(self.name, self.config)
        conn = be.connection()
        try:
            callback = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                   self._callback, None)
        except libvirt.libvirtError as exc:
            libvirt_conn.forget(be.uri, conn)
            raise HostUnreachable(f"host {self.name!r}: cannot subscribe to libvirt events at "
                                  f"{be.uri} ({exc.get_error_message()})") from None
        try:
            # subscribed first, listed second: a change in between is both listed and queued,
            # and the tracker drops the queued copy
            vms = be.list_vms()
            self.tracker.reachable()
            self.tracker.reconcile(vms, reconciled=True)
            while not self.ctx.stopping.is_set():
                try:
                    dom, event, detail = self.queue.get(timeout=ALIVE_CHECK)
                except queue.Empty:
                    if not _alive(conn, libvirt):
                        libvirt_conn.forget(be.uri, conn)
                        raise HostUnreachable(f"host {self.name!r}: the connection to {be.uri} was lost")
                    continue
                self._handle(be, dom, event, detail)
        finally:
            try:
                conn.domainEventDeregisterAny(callback)
            except libvirt.libvirtError:
                pass

    def _handle(self, be, dom, event: int, detail: int) -> None:
        meaning = from_libvirt(event, detail)
        if meaning is None:
            return
        kind, state, reason = meaning
        name, uuid = dom.name(), dom.UUIDString()
        try:
            tags = be.tags(dom) if kind != "vm.undefined" else []
        except Exception:  # noqa: BLE001 - gone meanwhile: the record's tags are used
            tags = []
        if state is None and kind == "vm.defined":
            try:
                from .libvirt_backend import _STATES

                state = _STATES.get(dom.state()[0], "unknown")
            except Exception:  # noqa: BLE001
                state = None
        self.tracker.observe(kind, VmInfo(self.name, name, uuid, state or "", tags, ref=dom),
                             None if kind == "vm.undefined" else state, reason)


def _alive(conn, libvirt) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False
