"""HTTPS for the VergeOS and Proxmox backends: certificate checks (a private CA through
``ca_file``), timeouts, and HTTP failures turned into errors that say what to do."""

from __future__ import annotations

from typing import Any

from taskengine_core.durations import parse_duration

from .model import AuthFailed, HostUnreachable, VmError

DEFAULT_TIMEOUT = 30.0


class Api:
    """A ``requests`` session bound to one host's base URL and credentials."""

    def __init__(self, host: str, kind: str, config: dict, headers: dict, auth=None) -> None:
        import requests

        self.host, self.kind = host, kind
        self.base = config["url"].rstrip("/")
        self.timeout = parse_duration(config.get("timeout", DEFAULT_TIMEOUT))
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.session.auth = auth
        self.session.trust_env = False  # no proxy or netrc from the environment: the host is named
        if config.get("verify_tls", True) is False:
            if not config.get("allow_insecure"):
                raise VmError(f"host {host!r}: verify_tls: false needs allow_insecure: true as "
                              f"well; better, give the server's CA as ca_file")
            self.session.verify = False
        elif config.get("ca_file"):
            self.session.verify = config["ca_file"]

    def request(self, method: str, path: str, *, what: str, ok=(200,), **kwargs) -> Any:
        """JSON of a 2xx response whose status is in ``ok``; the status itself for a non-2xx one when
        it is in ``ok``. Raises a VmError naming the host and ``what``."""
        import requests

        url = self.base + path
        try:
            response = self.session.request(method, url, timeout=self.timeout,
                                            allow_redirects=False, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise VmError(f"host {self.host!r} ({self.kind}): TLS check of {self.base} failed while "
                          f"{what} ({_short(exc)}); give the server's CA certificate as ca_file") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise HostUnreachable(f"host {self.host!r} ({self.kind}) is unreachable at {self.base} "
                                  f"while {what} ({_short(exc)}); check the URL and the network") from None
        status = response.status_code
        if status in ok:
            if status >= 300 or not response.content:
                return status
            try:
                return response.json()
            except ValueError:
                raise VmError(f"host {self.host!r} ({self.kind}): {what}: the answer is not JSON "
                              f"(HTTP {status}); is {self.base} really a {self.kind} API?") from None
        detail = _excerpt(response)
        if status in (401, 403):
            raise AuthFailed(f"host {self.host!r} ({self.kind}) refused our credentials while {what} "
                             f"(HTTP {status}{detail}); check the token in settings.vm.hosts."
                             f"{self.host} and that its user may do this")
        if status == 429 or status >= 500 or status == 408:
            raise HostUnreachable(f"host {self.host!r} ({self.kind}) answered HTTP {status} while "
                                  f"{what}{detail}; it is retried")
        if status == 507:
            raise VmError(f"host {self.host!r} ({self.kind}) has not enough resources for "
                          f"{what} (HTTP 507{detail}); free memory or cores, or pick another node",
                          retryable=True)
        raise VmError(f"host {self.host!r} ({self.kind}): {what} failed with HTTP {status}{detail}")


def _excerpt(response) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return f": {text[:200]}" if text else ""


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
