"""libvirt error codes (``virErrorNumber``) turned into messages that say what to do."""

from __future__ import annotations

from .model import AuthFailed, HostUnreachable, VmError, VmVanished

NO_DOMAIN = 42          # VIR_ERR_NO_DOMAIN
OPERATION_INVALID = 55  # VIR_ERR_OPERATION_INVALID: e.g. destroy of a domain that is off
OPERATION_DENIED = 29   # VIR_ERR_OPERATION_DENIED: read-only connection
NO_SUPPORT = 3          # VIR_ERR_NO_SUPPORT
AUTH_CODES = (45, 46, 86, 87)  # AUTH_FAILED, AUTH_CANCELLED, AUTH_UNAVAILABLE, ACCESS_DENIED
BROKEN_CODES = (38, 39)  # SYSTEM_ERROR (socket), RPC: the connection is gone
NO_METADATA = 80        # VIR_ERR_NO_DOMAIN_METADATA


def action_error(exc, *, host: str, vm: str, what: str) -> VmError:
    """The error of ``what`` (``start``, ``shutdown``, ...) on ``vm``, from a libvirtError."""
    code = exc.get_error_code()
    text = exc.get_error_message() or str(exc)
    where = f"VM {vm!r} on host {host!r}"
    if code == NO_DOMAIN:
        return VmVanished(f"{where} vanished during the run (libvirt error {code}: {text}); "
                          f"it was undefined or renamed meanwhile: check 'virsh list --all'")
    if code in AUTH_CODES or code == OPERATION_DENIED:
        return AuthFailed(f"{where}: libvirt denied {what} (error {code}: {text}); the connection "
                          f"is read-only or the user lacks rights: use a read-write URI and run "
                          f"taskengine as a member of the 'libvirt' group")
    if code in BROKEN_CODES:
        return HostUnreachable(f"{where}: the connection to libvirt broke during {what} "
                               f"(error {code}: {text}); it is retried")
    if code == NO_SUPPORT:
        return VmError(f"{where}: this hypervisor does not support {what} (libvirt error {code}: "
                       f"{text}); choose another state")
    return VmError(f"{where}: {what} failed (libvirt error {code}: {text}); see the hypervisor's "
                   f"log (journalctl -u libvirtd) for the cause", retryable=True)
